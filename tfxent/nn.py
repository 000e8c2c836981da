"""Mirror of `tf.nn`'s two softmax cross-entropy functions (the TF 2 API,
docs/tf_behaviour.md#signatures)."""

from __future__ import annotations

from tfxent import _args, _xent
from tfxent.compat.v1 import nn as _v1

# The functions carry no annotations: their inspect.signature must equal TF's
# (docs/tf_behaviour.md#signatures).
__all__ = ["softmax_cross_entropy_with_logits", "sparse_softmax_cross_entropy_with_logits"]


@_args.dispatch_support
def softmax_cross_entropy_with_logits(labels, logits, axis=-1, name=None):
    """Softmax cross entropy between `logits` and `labels` along `axis`.

    Reproduces `tf.nn.softmax_cross_entropy_with_logits` of the installed TF
    (docs/tf_behaviour.md#signatures, docs/tf_behaviour.md#dense-forward,
    docs/tf_behaviour.md#gradients).
    mᵢ = maxⱼ xᵢⱼ; lseᵢ = mᵢ + log Σⱼ exp(xᵢⱼ − mᵢ); lossᵢ = Σⱼ yᵢⱼ (lseᵢ − xᵢⱼ). The logits'
    gradient is pᵢⱼ − yᵢⱼ with determinism off (TF's kernel), which is *not* the true
    gradient when a row of y does not sum to 1; with determinism on it is pᵢⱼ·Σₖyᵢₖ − yᵢⱼ
    (docs/tf_behaviour.md#summary, docs/tf_behaviour.md#gradients,
    docs/tf_behaviour.md#determinism). The labels' gradient is −g·log_softmax(logits).

    Args:
      labels: `[..., C, ...]`, any dtype castable to the logits' dtype (not validated).
      logits: `[..., C, ...]` float16, bfloat16, float32 or float64.
      axis: the class axis: −1 or 0..rank−1 (other negative values fail as in TF).
      name: name scope, default `softmax_cross_entropy_with_logits`.

    Returns:
      `logits.shape` without the class axis, in the logits' dtype.

    Raises:
      InvalidArgumentError: `logits and labels must be broadcastable: ...`, integer logits
        (`Value for attr 'T' of int32 is not in the list of allowed values: ...`), an axis
        outside −1, 0..rank−1 (`Requires start <= limit ...`) — docs/tf_behaviour.md#errors.

    Differences from TF: none (see compat_matrix.md).

    >>> import tensorflow as tf, tfxent
    >>> labels, logits = [[0.0, 1.0]], [[1.0, 2.0]]
    >>> float(tfxent.nn.softmax_cross_entropy_with_logits(labels, logits)[0]) == float(
    ...     tf.nn.softmax_cross_entropy_with_logits(labels, logits)[0])
    True
    """
    return _xent.dense(labels, logits, axis, name)


@_args.dispatch_support
def sparse_softmax_cross_entropy_with_logits(labels, logits, name=None):
    """Softmax cross entropy against integer class indices along the last axis.

    Reproduces `tf.nn.sparse_softmax_cross_entropy_with_logits` (docs/tf_behaviour.md#signatures,
    docs/tf_behaviour.md#sparse-forward): lossᵢ =
    lseᵢ − xᵢ,labelᵢ. Out-of-range labels raise TF's `InvalidArgumentError` on CPU.

    Differences from TF: bfloat16 rounding (compat_matrix.md).
    """
    return _v1.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits, name=name)
