"""Vectorization: `vectorized_map`, `jacobian` and `batch_jacobian` over tfxent's functions.

TF's xent ops have pfor converters, so per-example losses and gradients vectorize into one
batched call; tfxent's converters (tfxent/_pfor.py) must do the same. Every case runs with
`fallback_to_while_loop=False` (a missing converter raises), is compared with the installed
TF function under the same transformation (values and gradients), and its graph must contain
tfxent's ops and no while loop.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config

import tfxent

LOOPS = {"While", "StatelessWhile"}
TF_XENT = {"SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"}

# (surface, whether its labels are dense, the tfxent function, the TF function)
SURFACES = {
    "nn.dense": (
        True,
        tfxent.nn.softmax_cross_entropy_with_logits,
        tf.nn.softmax_cross_entropy_with_logits,
    ),
    "nn.sparse": (
        False,
        tfxent.nn.sparse_softmax_cross_entropy_with_logits,
        tf.nn.sparse_softmax_cross_entropy_with_logits,
    ),
    "v1.dense": (
        True,
        tfxent.compat.v1.nn.softmax_cross_entropy_with_logits,
        tf.compat.v1.nn.softmax_cross_entropy_with_logits,
    ),
    "v1.dense_v2": (
        True,
        tfxent.compat.v1.nn.softmax_cross_entropy_with_logits_v2,
        tf.compat.v1.nn.softmax_cross_entropy_with_logits_v2,
    ),
    "v1.sparse": (
        False,
        tfxent.compat.v1.nn.sparse_softmax_cross_entropy_with_logits,
        tf.compat.v1.nn.sparse_softmax_cross_entropy_with_logits,
    ),
    "top.dense": (
        True,
        tfxent.softmax_cross_entropy_with_logits,
        tf.compat.v1.nn.softmax_cross_entropy_with_logits,
    ),
}
BATCH, ROWS, CLASSES = 6, 3, 5


@pytest.fixture(params=[False, True], ids=["kernel", "determinism"])
def deterministic(request):
    if request.param:
        config.enable_op_determinism()
    try:
        yield request.param
    finally:
        config.disable_op_determinism()


def _inputs(dense: bool, dtype: tf.DType, rows: tuple[int, ...]) -> tuple[tf.Tensor, tf.Tensor]:
    rng = np.random.default_rng(7)
    logits = tf.constant(rng.normal(size=(BATCH, *rows, CLASSES)) * 3, dtype)
    if dense:
        labels = tf.nn.softmax(tf.constant(rng.normal(size=(BATCH, *rows, CLASSES)), dtype))
    else:
        labels = tf.constant(rng.integers(0, CLASSES, size=(BATCH, *rows)), tf.int32)
    return logits, labels


def op_types(function: tf.types.experimental.ConcreteFunction) -> set[str]:
    """Every op type in a traced function, nested functions (pfor's, cond's) included."""
    graph_def = function.graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for nested in graph_def.library.function:
        types |= {node.op for node in nested.node_def}
    return types


def _per_example(fn, dense: bool):
    """Per-example loss and gradients (logits, and dense labels) through vectorized_map."""

    @tf.function
    def run(logits, labels):
        def body(example):
            x, y = example
            with tf.GradientTape() as tape:
                tape.watch([x, y] if dense else x)
                loss = fn(labels=y, logits=x)
            grads = tape.gradient(loss, [x, y] if dense else [x])
            return [loss] + [tf.zeros_like(x) if g is None else g for g in grads]

        return tf.vectorized_map(body, (logits, labels), fallback_to_while_loop=False)

    return run


def _assert_close(ours, theirs, dtype: tf.DType) -> None:
    rtol = 1e-5 if dtype == tf.float32 else 1e-12
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.dtype == reference.dtype and mine.shape == reference.shape
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=rtol, atol=rtol)


CASES = [(s, rows, tf.float32) for s in sorted(SURFACES) for rows in ((), (ROWS,))] + [
    (s, (ROWS,), tf.float64) for s in ("nn.dense", "nn.sparse")
]


@pytest.mark.parametrize(
    ("surface", "rows", "dtype"),
    CASES,
    ids=[f"{s}-{'rows' if r else 'one_row'}-{d.name}" for s, r, d in CASES],
)
def test_vectorized_map_without_fallback_matches_tf(surface, rows, dtype, deterministic):
    # rows=(): each example is one rank-1 [C] row, which the functions reshape to [1, C].
    dense, ours, theirs = SURFACES[surface]
    logits, labels = _inputs(dense, dtype, rows)
    run_ours, run_tf = _per_example(ours, dense), _per_example(theirs, dense)
    _assert_close(run_ours(logits, labels), run_tf(logits, labels), dtype)
    types = op_types(run_ours.get_concrete_function(logits, labels))
    kind = "TfxentSoftmaxXent" if dense else "TfxentSparseSoftmaxXent"
    assert {kind, kind + "Grad"} <= types
    assert not types & (LOOPS | TF_XENT)


def test_vectorized_map_with_broadcast_labels_matches_tf_per_example():
    # Inside the loop, labels [1, C] broadcast against logits [n, C]: the converters must not
    # merge B label rows against B·n logits rows. The reference is TF, one example at a time.
    # (Only the logits' gradient: with broadcast labels TF's labels gradient fails,
    # docs/tf_behaviour.md#dense-values-and-broadcasting.)
    logits, labels = _inputs(True, tf.float32, (ROWS,))
    labels = labels[:, :1]

    def loss_and_grad(fn, x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = fn(labels=y, logits=x)
        return [loss, tape.gradient(loss, x)]

    ours = tf.function(
        lambda x, y: tf.vectorized_map(
            lambda e: loss_and_grad(tfxent.nn.softmax_cross_entropy_with_logits, *e),
            (x, y),
            fallback_to_while_loop=False,
        )
    )
    tf_fn = tf.nn.softmax_cross_entropy_with_logits
    examples = [loss_and_grad(tf_fn, logits[i], labels[i]) for i in range(BATCH)]
    reference = [tf.stack(column) for column in zip(*examples, strict=True)]
    _assert_close(ours(logits, labels), reference, tf.float32)
    assert "TfxentSoftmaxXentGrad" in op_types(ours.get_concrete_function(logits, labels))


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_jacobian_and_batch_jacobian_are_loop_free(surface, deterministic):
    dense, ours, theirs = SURFACES[surface]
    logits, labels = _inputs(dense, tf.float32, ())

    def jacobians(fn):
        @tf.function
        def run(x, y):
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x)
                loss = fn(labels=y, logits=x)
                rows = tf.reshape(loss, [-1, 1])
            return (
                tape.jacobian(loss, x, experimental_use_pfor=True),
                tape.batch_jacobian(rows, x, experimental_use_pfor=True),
            )

        return run

    run_ours, run_tf = jacobians(ours), jacobians(theirs)
    _assert_close(run_ours(logits, labels), run_tf(logits, labels), tf.float32)
    types = op_types(run_ours.get_concrete_function(logits, labels))
    assert "TfxentSoftmaxXentGrad" in types or "TfxentSparseSoftmaxXentGrad" in types
    assert not types & (LOOPS | TF_XENT)
