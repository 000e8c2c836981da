"""The unfused TF reference of the fused head, dtype-derived tolerances, and a check that
tfxent's ops ran (tests/fused)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfxent.fused import _api

KERNEL_OPS = {"TfxentSparseSoftmaxXent", "TfxentFusedLogitGradient", "TfxentFusedAddColumns"}


def reference(
    hidden,
    kernel,
    labels,
    bias=None,
    *,
    ignore_index=None,
    label_smoothing=0.0,
    z_loss=0.0,
    logit_soft_cap=None,
):
    """The unfused head: tf.matmul, then tf.nn's sparse xent (or tf.keras.losses' smoothed
    categorical xent), PaLM's z-loss and the soft cap, masked where labels == ignore_index."""
    logits = tf.matmul(hidden, kernel)
    if bias is not None:
        logits = logits + bias
    if logit_soft_cap is not None:
        logits = logit_soft_cap * tf.tanh(logits / logit_soft_cap)
    valid = tf.ones_like(labels, tf.bool)
    if ignore_index is not None:
        valid = tf.not_equal(labels, ignore_index)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    if label_smoothing:
        onehot = tf.one_hot(safe, tf.shape(kernel)[1], dtype=logits.dtype)
        loss = tf.keras.losses.categorical_crossentropy(
            onehot, logits, from_logits=True, label_smoothing=label_smoothing
        )
    else:
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(safe, logits)
    if z_loss:
        loss = loss + z_loss * tf.square(tf.reduce_logsumexp(logits, axis=-1))
    return tf.where(valid, loss, tf.zeros_like(loss))


def tolerance(dtype: tf.DType, hidden_size: int, vocab: int) -> float:
    """Relative tolerance for two float computations of the same head in `dtype` that sum in
    different orders: a few ulps per √(terms) of the D-long dot products and V-long sums."""
    eps = float(np.finfo(dtype.as_numpy_dtype).eps) if dtype != tf.bfloat16 else 2.0**-7
    return 8.0 * eps * (np.sqrt(hidden_size) + np.sqrt(vocab))


def assert_close(actual, expected, rtol: float, what: str) -> None:
    actual = np.asarray(tf.cast(actual, tf.float64))
    expected = np.asarray(tf.cast(expected, tf.float64))
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def graph_op_types(graph_def) -> set[str]:
    """Op types of a GraphDef and every function in its library (loop bodies included)."""
    types = {n.op for n in graph_def.node}
    for fn in graph_def.library.function:
        types |= {n.op for n in fn.node_def}
    return types


def eager_runner_op_types() -> dict[bool, set[str]]:
    """Op types of the chunk loops eager calls ran since `_api._RUNNERS` was cleared, keyed by
    whether the loop computed gradients; asserts every one ran on the op backend."""
    found: dict[bool, set[str]] = {}
    for ((*_terms, composite), grads, *_), fn in _api._RUNNERS.items():
        assert not composite, "an eager call ran the composite path"
        for concrete in fn._list_all_concrete_functions():
            found.setdefault(grads, set()).update(graph_op_types(concrete.graph.as_graph_def()))
    return found
