"""Determinism: outputs and gradients are bit-identical run to run and for 1, 2 and 8
intra-op threads.

Each thread count runs in a fresh interpreter, because TF fixes its intra-op pool when the
first op runs (`tf.config.threading.set_intra_op_parallelism_threads(n)` comes before any op).
The shapes include rows longer than the kernels' 32768-class chunk (each row is then split
over several work units whose statistics are merged in a fixed order) and few rows with a
million classes, where a row-per-thread split would leave threads idle and a naive class
split would reduce in a thread-dependent order. The child also repeats every call to check
run-to-run identity within one process; two children with 8 threads check it across
processes. Every child asserts that its graphs contain tfxent's op.
"""

from __future__ import annotations

import pytest
from conftest_helpers import child_env, last_json, run_python

_CHILD = """
import hashlib, json, sys
n = int(sys.argv[1])
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(n)
import numpy as np
import tfxent
from tfxent.parity.runner import determinism

assert tf.config.threading.get_intra_op_parallelism_threads() == n
BF16 = tf.bfloat16.as_numpy_dtype

def dense_inputs(seed, shape, dtype, label_shape=None, axis=-1):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(shape) * 5).astype(dtype)
    raw = np.exp(rng.standard_normal(label_shape or shape))
    labels = (raw / raw.sum(axis=axis, keepdims=True)).astype(dtype)
    return tf.constant(labels), tf.constant(logits)

def sparse_inputs(seed, shape, dtype, index=np.int64):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(shape) * 5).astype(dtype)
    labels = rng.integers(0, shape[-1], size=shape[:-1]).astype(index)
    return tf.constant(labels), tf.constant(logits)

CASES = [
    # name, inputs, sparse, axis, deterministic
    ("dense_f32_64x1000", dense_inputs(1, (64, 1000), np.float32), False, -1, False),
    ("dense_f32_3x70001_chunked", dense_inputs(2, (3, 70001), np.float32), False, -1, False),
    ("dense_f32_8x1e6", dense_inputs(3, (8, 10**6), np.float32), False, -1, False),
    ("dense_f32_8x1e6_determinism", dense_inputs(3, (8, 10**6), np.float32), False, -1, True),
    ("dense_f16_4x40000", dense_inputs(4, (4, 40000), np.float16), False, -1, False),
    ("dense_bf16_4x40000", dense_inputs(5, (4, 40000), BF16), False, -1, False),
    ("dense_f64_16x33000", dense_inputs(6, (16, 33000), np.float64), False, -1, False),
    ("dense_f32_1xC_labels", dense_inputs(7, (64, 40000), np.float32, (1, 40000)), False, -1,
     False),
    ("dense_f32_axis1_rank3", dense_inputs(8, (5, 300, 7), np.float32, axis=1), False, 1, False),
    ("dense_f32_4096x37", dense_inputs(9, (4096, 37), np.float32), False, -1, False),
    ("sparse_f32_8x1e6", sparse_inputs(10, (8, 10**6), np.float32), True, -1, False),
    ("sparse_bf16_5x70001", sparse_inputs(11, (5, 70001), BF16, np.int32), True, -1, False),
    ("sparse_f16_256x1000", sparse_inputs(12, (256, 1000), np.float16), True, -1, False),
    ("sparse_f64_64x1000_determinism", sparse_inputs(13, (64, 1000), np.float64), True, -1, True),
    ("sparse_f32_4096x37", sparse_inputs(14, (4096, 37), np.float32), True, -1, False),
]

def step(labels, logits, sparse, axis):
    weights = tf.cast(tf.range(1, 1 + tf.reduce_prod(tf.shape(logits)[:-1])), logits.dtype)
    # Broadcast labels have no gradient in TF (docs/tf_behaviour.md#summary): only full-shape
    # labels are watched.
    watch_labels = not sparse and labels.shape == logits.shape
    with tf.GradientTape() as tape:
        tape.watch(logits)
        if watch_labels:
            tape.watch(labels)
        if sparse:
            loss = tfxent.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        else:
            loss = tfxent.nn.softmax_cross_entropy_with_logits(labels, logits, axis=axis)
        target = tf.reduce_sum(tf.reshape(loss, [-1]) * weights[: tf.size(loss)])
    grads = tape.gradient(target, [logits, labels] if watch_labels else [logits])
    return [loss, *grads]

def digest(tensors):
    return [hashlib.sha256(t.numpy().tobytes()).hexdigest() for t in tensors]

report = {}
for name, (labels, logits), sparse, axis, deterministic in CASES:
    with determinism(deterministic):
        eager = digest(step(labels, logits, sparse, axis))
        assert digest(step(labels, logits, sparse, axis)) == eager, f"{name}: eager run to run"
        graph_fn = tf.function(lambda a, b: step(a, b, sparse, axis))
        graph = digest(graph_fn(labels, logits))
        assert digest(graph_fn(labels, logits)) == graph, f"{name}: graph run to run"
        graph_def = graph_fn.get_concrete_function(labels, logits).graph
        ops = {op.type for op in graph_def.get_operations()}
        for sub in graph_def._functions.values():
            ops |= {node.op for node in sub.definition.node_def}
        assert any(op.startswith("Tfxent") for op in ops), f"{name}: no tfxent op in {ops}"
    report[name] = {"eager": eager, "graph": graph}
print(json.dumps({"threads": n, "report": report}))
"""


def _run(threads: int) -> dict:
    done = run_python(_CHILD, threads, env=child_env(), timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    result = last_json(done.stdout)
    assert result["threads"] == threads
    return result["report"]


@pytest.mark.slow
def test_outputs_and_gradients_are_bit_identical_for_1_2_and_8_threads_and_run_to_run():
    runs = {threads: _run(threads) for threads in (1, 2, 8)}
    again = _run(8)
    reference = runs[1]
    assert len(reference) == 15
    differences = [
        f"{name} ({kind}) with {threads} threads"
        for threads, report in [*runs.items(), ("8, second process", again)]
        for name, digests in report.items()
        for kind in ("eager", "graph")
        if digests[kind] != reference[name][kind]
    ]
    assert not differences, differences
