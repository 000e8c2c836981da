"""Bit-identity of tfxent's custom op with the installed TF's own xent kernels.

For float32 and float64, and for sparse bfloat16 (which TF's sparse kernel and its determinism
path compute in bfloat16), determinism off and on, every loss and every gradient with respect
to the logits must have exactly TF's bits (docs/exactness.md): over the parity catalogue in
eager, tf.function and Session modes, and over random shapes (hypothesis), with ragged
packet tails, long rows that Eigen's reducer splits, and labels that do and do not sum to 1.
The catalogue test covers every path tfxent takes (its custom op, and the composite it
builds from TF ops for the few determinism-mode broadcasts); the random test checks that
tfxent's custom op is in the graph it ran. CI runs 30 random examples;
`TFXENT_BITS_PROFILE=long` runs 10^4.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfxent
from tfxent.parity import differences, runner
from tfxent.parity.cases import catalogue

EXACT_DTYPES = (np.float32, np.float64)
# Sparse bfloat16 stays bfloat16 in TF (only float16 is widened), and the op computes it so.
EXACT_SPARSE_DTYPES = (*EXACT_DTYPES, tf.bfloat16.as_numpy_dtype)
EXACT_VALUES = ("loss", "grad_logits")
_COMMON = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
settings.register_profile("tfxent-bits-fast", max_examples=30, **_COMMON)
settings.register_profile("tfxent-bits-long", max_examples=10_000, **_COMMON)
LONG = os.environ.get("TFXENT_BITS_PROFILE") == "long"


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view({2: np.int16, 4: np.int32, 8: np.int64}[a.itemsize])


def assert_same_bits(name: str, ours: np.ndarray, theirs: np.ndarray) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
    diff = _bits(ours).astype(np.int64) - _bits(theirs).astype(np.int64)
    where = np.flatnonzero(diff)
    assert where.size == 0, (
        f"{name}: {where.size} of {diff.size} elements differ from TF, up to "
        f"{np.abs(diff).max()} ulp (first at flat index {where[0]})"
    )


def _exact_case(case) -> bool:
    sparse = case.api.endswith("sparse")
    return (
        isinstance(case.logits, np.ndarray)
        and case.logits.dtype in (EXACT_SPARSE_DTYPES if sparse else EXACT_DTYPES)
        and case.logits.size > 0
        and (sparse or np.asarray(case.labels).dtype == case.logits.dtype)
    )


# Every (case, mode, determinism) but the documented differences of compat_matrix.md, which
# their own tests pin (tfxent/parity/differences.py).
CASES = [
    pytest.param(c, mode, det, id=f"{c.id}-{mode}-{'determinism' if det else 'kernel'}")
    for c in catalogue()
    if _exact_case(c)
    for mode in ("eager", "function", "session")
    for det in (False, True)
    if not differences.applicable(c, mode, det)
]
XENT_OPS = {"TfxentSoftmaxXent", "TfxentSparseSoftmaxXent"}


@pytest.mark.parametrize(("case", "mode", "deterministic"), CASES)
def test_catalogue_bit_identical(case, mode, deterministic):
    ours_fn, tf_fn = runner.surfaces(case.api)
    with runner.determinism(deterministic):
        theirs = runner.run(tf_fn, case, mode)
        ours = runner.run(ours_fn, case, mode)
    # Where TF raises, tfxent raises the same class (test_parity_* compares the messages).
    assert type(ours.error) is type(theirs.error), (ours.error, theirs.error)
    assert type(ours.grad_error) is type(theirs.grad_error), (ours.grad_error, theirs.grad_error)
    for key in EXACT_VALUES:
        if theirs.values.get(key) is not None:
            assert_same_bits(f"{case.id} {mode} {key}", ours.values[key], theirs.values[key])


def _loss_and_grad(fn):
    def run(labels, logits, upstream):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = fn(labels=labels, logits=logits)
        return loss, tape.gradient(loss, logits, output_gradients=upstream)

    return tf.function(run, autograph=False, reduce_retracing=True)


_FUNCTIONS = {
    (kind, side): _loss_and_grad(fn)
    for kind, pair in {
        "dense": (
            tfxent.nn.softmax_cross_entropy_with_logits,
            tf.nn.softmax_cross_entropy_with_logits,
        ),
        "sparse": (
            tfxent.nn.sparse_softmax_cross_entropy_with_logits,
            tf.nn.sparse_softmax_cross_entropy_with_logits,
        ),
    }.items()
    for side, fn in zip(("ours", "theirs"), pair, strict=True)
}


@st.composite
def inputs(draw):
    sparse = draw(st.booleans())
    dtype = draw(st.sampled_from(EXACT_SPARSE_DTYPES if sparse else EXACT_DTYPES))
    rows = draw(st.integers(1, 64))
    # Ragged tails around the packet widths, and rows past Eigen's 1024-packet leaf.
    classes = draw(st.one_of(st.integers(1, 80), st.integers(8000, 9000), st.integers(9000, 70000)))
    if rows * classes > 1_200_000 and not LONG:
        rows = max(1, 1_200_000 // classes)
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.1, 3.0, 30.0]))
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((rows, classes)) * scale).astype(dtype)
    if sparse:
        labels = rng.integers(0, classes, rows)
    else:
        labels = rng.random((rows, classes)).astype(dtype)
        if draw(st.booleans()):
            labels /= labels.sum(axis=1, keepdims=True)  # probabilities; else they do not sum to 1
    upstream = rng.uniform(0.5, 1.5, rows).astype(dtype)
    return sparse, draw(st.booleans()), labels, logits, upstream


@settings(settings.get_profile("tfxent-bits-long" if LONG else "tfxent-bits-fast"))
@given(data=inputs())
def test_random_inputs_bit_identical(data):
    sparse, deterministic, labels, logits, upstream = data
    kind = "sparse" if sparse else "dense"
    args = (tf.constant(labels), tf.constant(logits), tf.constant(upstream))
    with runner.determinism(deterministic):
        # Eager calls, so that each side reads the determinism switch at every call.
        ours = _FUNCTIONS[kind, "ours"].python_function(*args)
        theirs = _FUNCTIONS[kind, "theirs"].python_function(*args)
    graph = _FUNCTIONS[kind, "ours"].get_concrete_function(*args).graph
    assert {op.type for op in graph.get_operations()} & XENT_OPS
    for name, a, b in zip(("loss", "grad_logits"), ours, theirs, strict=True):
        what = f"{kind} {logits.dtype} {logits.shape} determinism={deterministic} {name}"
        assert_same_bits(what, a.numpy(), b.numpy())


# Sparse bfloat16 rows on each side of Eigen's bfloat16 reduction leaf (128 packets of 8, so
# rows past 1024 classes are summed as a tree), with ragged packet tails, in both modes.
@pytest.mark.parametrize("deterministic", [False, True], ids=["kernel", "determinism"])
@pytest.mark.parametrize("shape", [(5, 7), (9, 1000), (3, 1027), (2, 2059), (4, 70001)])
def test_sparse_bfloat16_bit_identical(shape, deterministic):
    rng = np.random.default_rng(shape[1])
    bf16 = tf.bfloat16.as_numpy_dtype
    labels = tf.constant(rng.integers(0, shape[1], shape[0]))
    logits = tf.constant((rng.standard_normal(shape) * 3.0).astype(bf16))
    upstream = tf.constant(rng.uniform(0.5, 1.5, shape[0]).astype(bf16))
    with runner.determinism(deterministic):
        ours = _FUNCTIONS["sparse", "ours"].python_function(labels, logits, upstream)
        theirs = _FUNCTIONS["sparse", "theirs"].python_function(labels, logits, upstream)
    graph = _FUNCTIONS["sparse", "ours"].get_concrete_function(labels, logits, upstream).graph
    assert "TfxentSparseSoftmaxXent" in {op.type for op in graph.get_operations()}
    for name, a, b in zip(("loss", "grad_logits"), ours, theirs, strict=True):
        assert_same_bits(f"sparse bfloat16 {shape} {name}", a.numpy(), b.numpy())
