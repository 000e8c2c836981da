"""Mirror of `tf.compat.v1.nn`'s three softmax cross-entropy functions
(docs/tf_behaviour.md#signatures).

Signatures, argument quirks (v1's `dim=-1` default that makes any `axis` an error), the
missing-argument messages and the deprecation log lines are those of the installed TF
2.12–2.21; no `_sentinel` (that contract lives at tfxent's top level).
"""

from __future__ import annotations

from tfxent import _args, _xent

# The functions carry no annotations: their inspect.signature must equal TF's
# (docs/tf_behaviour.md#signatures).
__all__ = [
    "softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits_v2",
    "sparse_softmax_cross_entropy_with_logits",
]


@_args.dispatch_support
@_args.deprecated_v1_dense
def softmax_cross_entropy_with_logits(labels=None, logits=None, dim=-1, name=None, axis=None):
    """Softmax cross entropy whose labels receive no gradient (TF 1.x semantics).

    Reproduces `tf.compat.v1.nn.softmax_cross_entropy_with_logits` of the installed TF
    (docs/tf_behaviour.md#signatures–docs/tf_behaviour.md#dense-forward,
    docs/tf_behaviour.md#gradients). lossᵢ = Σⱼ yᵢⱼ (lseᵢ − xᵢⱼ) with lseᵢ = log Σⱼ exp xᵢⱼ along
    `dim`;
    the logits' gradient is pᵢⱼ − yᵢⱼ (TF's kernel; pᵢⱼ·Σₖyᵢₖ − yᵢⱼ with determinism on),
    the labels' gradient is None (`stop_gradient`).

    Args:
      labels: `[..., C, ...]`, cast to the logits' dtype; rows need not sum to 1.
      logits: `[..., C, ...]` float16, bfloat16, float32 or float64.
      dim: the class axis, default −1. Because it defaults to −1, passing `axis` also
        requires `dim=None` (TF's quirk, docs/tf_behaviour.md#summary).
      name: name scope, default `softmax_cross_entropy_with_logits_sg`.
      axis: alias of `dim`.

    Returns:
      `logits.shape` without the class axis, in the logits' dtype.

    Raises:
      ValueError: `Cannot specify both 'dim' and 'axis'.`; `Both \\`labels\\` and
        \\`logits\\` must be provided for softmax_cross_entropy_with_logitsReceived: ...`.
      InvalidArgumentError: shapes that do not broadcast, integer logits
      (docs/tf_behaviour.md#errors).

    Differences from TF: the deprecation line names `tfxent.compat.v1.nn` (compat_matrix.md).
    """
    dim = _args.lookup_axis("axis", axis, "dim", dim)
    _args.ensure_xent_args("softmax_cross_entropy_with_logits", labels, logits)
    return _xent.dense_stopped(labels, logits, dim, name)


@_args.dispatch_support
@_args.deprecated_dim
def softmax_cross_entropy_with_logits_v2(labels, logits, axis=None, name=None, dim=None):
    """Softmax cross entropy whose labels receive a gradient.

    Reproduces `tf.compat.v1.nn.softmax_cross_entropy_with_logits_v2`
    (docs/tf_behaviour.md#signatures, docs/tf_behaviour.md#dense-forward,
    docs/tf_behaviour.md#gradients):
    as the v1 function, but the labels' gradient is −g·log_softmax(logits), `axis`
    defaults to −1 and `dim` is a deprecated alias (logged in graph mode only,
    docs/tf_behaviour.md#deprecation-log-lines).

    Differences from TF: the `dim` deprecation line names this function and module
    instead of `nn_ops.softmax_cross_entropy_with_logits_v2_helper` (compat_matrix.md).
    """
    axis = _args.lookup_axis("axis", axis, "dim", dim)
    return _xent.dense(labels, logits, axis, name)


@_args.dispatch_support
def sparse_softmax_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """Softmax cross entropy against integer class indices.

    Reproduces `tf.compat.v1.nn.sparse_softmax_cross_entropy_with_logits`
    (docs/tf_behaviour.md#dtypes, docs/tf_behaviour.md#sparse-forward):
    lossᵢ = lseᵢ − xᵢ,labelᵢ over the last axis; labels `[...]` int32/int64 in `[0, C)`
    (an `InvalidArgumentError` on CPU otherwise, with TF's message); f16 logits are computed
    in f32, bf16 in bf16 by TF (in f32 by tfxent, see compat_matrix.md).

    Differences from TF: bfloat16 rounding (compat_matrix.md).
    """
    _args.ensure_xent_args("sparse_softmax_cross_entropy_with_logits", labels, logits)
    return _xent.sparse(labels, logits, name)
