"""Property tests (hypothesis) over random shapes, dtypes, axes and values.

Each property compares against the installed tf.nn at run time or against an identity the
mathematics guarantees (shift invariance, sparse = dense one-hot, axis = moving the axis
last, gradient rows summing to 0), with row lengths around the SIMD widths.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfxent
from tfxent.parity.tolerance import tolerance

FLOATS = {
    "float16": np.float16,
    "bfloat16": tf.bfloat16.as_numpy_dtype,
    "float32": np.float32,
    "float64": np.float64,
}
# Around the vector widths (8/16 floats) and the kernels' block sizes.
CLASS_COUNTS = st.one_of(
    st.sampled_from([1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 255, 256, 257, 1001]),
    st.integers(1, 64),
)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# Shifting a row by these offsets is exact only in float32/float64 arithmetic.
WIDE = ("float32", "float64")


@st.composite
def dense_inputs(draw, dtypes: tuple[str, ...] = tuple(sorted(FLOATS))):
    dtype = draw(st.sampled_from(dtypes))
    classes = draw(CLASS_COUNTS)
    outer = draw(st.lists(st.integers(0, 4), min_size=0, max_size=2))
    shape = (*outer, classes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0, 60.0]))
    logits = (rng.standard_normal(shape) * scale).astype(FLOATS[dtype])
    raw = rng.random(shape) ** draw(st.sampled_from([1.0, 4.0]))
    labels = (raw / np.maximum(raw.sum(-1, keepdims=True), 1e-12)).astype(FLOATS[dtype])
    return dtype, labels, logits


def _close(ours, theirs, dtype, sparse=False):
    tol = tolerance(tf.as_dtype(dtype), sparse=sparse)
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max(initial=0)))


@PROPERTY
@given(dense_inputs())
def test_dense_values_and_gradients_match_tf(inputs):
    dtype, labels, logits = inputs

    def run(module):
        x, y = tf.constant(logits), tf.constant(labels)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([x, y])
            loss = module.nn.softmax_cross_entropy_with_logits(y, x)
        return loss, tape.gradient(loss, x), tape.gradient(loss, y)

    for ours, theirs in zip(run(tfxent), run(tf), strict=True):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        _close(ours, theirs, dtype)


@PROPERTY
@given(dense_inputs(), st.data())
def test_sparse_matches_tf_and_dense_one_hot(inputs, data):
    dtype, _, logits = inputs
    if dtype == "bfloat16":
        # TF's sparse bf16 computes in bf16 (docs/tf_behaviour.md#dtypes): compared in parity tests
        dtype = "float32"
        logits = logits.astype(np.float32)
    classes = logits.shape[-1]
    labels = np.asarray(
        data.draw(
            st.lists(
                st.integers(0, classes - 1),
                min_size=logits[..., 0].size,
                max_size=logits[..., 0].size,
            )
        ),
        np.int64,
    ).reshape(logits.shape[:-1])
    ours = tfxent.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    _close(ours, tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits), dtype, True)
    one_hot = np.eye(classes, dtype=logits.dtype)[labels]
    _close(ours, tfxent.nn.softmax_cross_entropy_with_logits(one_hot, logits), dtype, True)


@PROPERTY
@given(dense_inputs(WIDE), st.sampled_from([-8.0, 64.0, 1024.0]))
def test_loss_is_invariant_to_shifting_a_row(inputs, offset):
    dtype, labels, logits = inputs
    shifted = logits + logits.dtype.type(offset)
    base = tfxent.nn.softmax_cross_entropy_with_logits(labels, logits).numpy()
    moved = tfxent.nn.softmax_cross_entropy_with_logits(labels, shifted).numpy()
    # Shifting rounds each logit relative to |offset|; the loss moves by that much at most.
    bound = 8 * np.finfo(logits.dtype).eps * (abs(offset) + np.abs(logits).max(initial=0))
    np.testing.assert_allclose(moved, base, rtol=0, atol=bound)


@PROPERTY
@given(dense_inputs(WIDE))
def test_gradient_rows_sum_to_zero_when_labels_sum_to_one(inputs):
    dtype, labels, logits = inputs
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tfxent.nn.softmax_cross_entropy_with_logits(labels, x)
    row_sums = tape.gradient(loss, x).numpy().sum(-1)
    classes = logits.shape[-1]
    np.testing.assert_allclose(row_sums, 0.0, atol=64 * classes * np.finfo(logits.dtype).eps)


@PROPERTY
@given(dense_inputs(), st.data())
def test_axis_k_equals_moving_that_axis_last(inputs, data):
    dtype, labels, logits = inputs
    axis = data.draw(st.integers(0, logits.ndim - 1))
    moved = np.moveaxis(logits, -1, axis), np.moveaxis(labels, -1, axis)
    along_axis = tfxent.nn.softmax_cross_entropy_with_logits(moved[1], moved[0], axis=axis)
    last = tfxent.nn.softmax_cross_entropy_with_logits(labels, logits)
    _close(along_axis, last, dtype)
    _close(
        along_axis, tf.nn.softmax_cross_entropy_with_logits(moved[1], moved[0], axis=axis), dtype
    )
