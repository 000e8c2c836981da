"""Input checks of the fused head, with TF's exception classes: `ValueError` for static
shapes and options, `TypeError` for dtypes (what TF raises while building ops), and
`InvalidArgumentError` for what only the values show (docs/tf_behaviour.md#errors)."""

from __future__ import annotations

import tensorflow as tf

FLOATS = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
INDICES = (tf.int32, tf.int64)
GRADIENT_MODES = ("auto", "forward", "recompute")

_FN = "linear_sparse_softmax_cross_entropy"


def tensors(
    hidden: tf.Tensor, kernel: tf.Tensor, labels: tf.Tensor, bias: tf.Tensor | None
) -> None:
    """Dtypes and static shapes: hidden [..., D], kernel [D, V], labels [...], bias [V]."""
    if hidden.dtype not in FLOATS:
        raise TypeError(f"{_FN}: hidden must be a floating tensor, got {hidden.dtype.name}")
    for what, t in (("kernel", kernel), ("bias", bias)):
        if t is not None and t.dtype != hidden.dtype:
            raise TypeError(
                f"{_FN}: {what} has dtype {t.dtype.name} but hidden has {hidden.dtype.name}; "
                "they must match (cast them, as tf.matmul would need)"
            )
    if labels.dtype not in INDICES:
        raise TypeError(
            f"{_FN}: labels must be int32 or int64 class indices, got {labels.dtype.name} "
            "(for probability labels use tfxent.nn.softmax_cross_entropy_with_logits)"
        )
    if hidden.shape.rank is None or labels.shape.rank is None:
        raise ValueError(f"{_FN}: hidden and labels need a known rank")
    if hidden.shape.rank < 1 or labels.shape.rank != hidden.shape.rank - 1:
        raise ValueError(
            f"{_FN}: hidden must be [..., D] and labels [...] with one dimension fewer; got "
            f"hidden {hidden.shape} and labels {labels.shape}"
        )
    if not labels.shape.is_compatible_with(hidden.shape[:-1]):
        raise ValueError(
            f"{_FN}: labels {labels.shape} do not match hidden's leading dimensions "
            f"{hidden.shape[:-1]}"
        )
    if kernel.shape.rank != 2:
        raise ValueError(f"{_FN}: kernel must be [D, V], got shape {kernel.shape}")
    if not hidden.shape[-1:].is_compatible_with(kernel.shape[:1]):
        raise ValueError(
            f"{_FN}: hidden's last dimension {hidden.shape[-1]} must equal kernel's first "
            f"dimension {kernel.shape[0]} (D)"
        )
    if bias is not None and (
        bias.shape.rank != 1 or not bias.shape.is_compatible_with(kernel.shape[1:])
    ):
        raise ValueError(f"{_FN}: bias must be [V] = {kernel.shape[1:]}, got {bias.shape}")


def options(
    label_smoothing: float,
    z_loss: float,
    soft_cap: float | None,
    chunk_size: int | None,
    gradient: str,
) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{_FN}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if z_loss < 0.0:
        raise ValueError(f"{_FN}: z_loss must be >= 0, got {z_loss}")
    if soft_cap is not None and not soft_cap > 0.0:
        raise ValueError(f"{_FN}: logit_soft_cap must be > 0 or None, got {soft_cap}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"{_FN}: chunk_size must be a positive int or None, got {chunk_size}")
    if gradient not in GRADIENT_MODES:
        raise ValueError(f"{_FN}: gradient must be one of {GRADIENT_MODES}, got {gradient!r}")


def label_range(labels: tf.Tensor, vocab: tf.Tensor) -> list[tf.Operation]:
    """Run-time range check for the composite path outside XLA (the row kernels check their
    own): TF's sparse xent rejects a label outside [0, V) (docs/tf_behaviour.md#sparse-forward)."""
    message = f"{_FN}: every label must be in [0, V) or equal ignore_index"
    return [
        tf.debugging.assert_non_negative(labels, message=message),
        tf.debugging.assert_less(labels, tf.cast(vocab, labels.dtype), message=message),
    ]
