"""Argument handling shared by the three API surfaces, exactly as TF's Python layer does it.

TF's own helpers are reused where they are the behaviour being reproduced: the `dim`/`axis`
lookup (`deprecated_argument_lookup`, docs/tf_behaviour.md#signatures), the once-per-process
deprecation log lines
(`deprecation.deprecated` / `deprecated_args`, docs/tf_behaviour.md#deprecation-log-lines) and the
keyword checking of
`dispatch.add_dispatch_support` (docs/tf_behaviour.md#signatures: its `TypeError`s are worded
differently from
CPython's).
"""

from __future__ import annotations

from tensorflow.python.util import deprecation, dispatch

# nn_ops.py's _XENT_DEPRECATION, word for word: the v1 dense function logs it
# (docs/tf_behaviour.md#deprecation-log-lines).
XENT_DEPRECATION = """
Future major versions of TensorFlow will allow gradients to flow
into the labels input on backprop by default.

See `tf.nn.softmax_cross_entropy_with_logits_v2`.
"""

DIM_DEPRECATION = "dim is deprecated, use axis instead"

lookup_axis = deprecation.deprecated_argument_lookup
dispatch_support = dispatch.add_dispatch_support
deprecated_v1_dense = deprecation.deprecated(date=None, instructions=XENT_DEPRECATION)
deprecated_dim = deprecation.deprecated_args(None, DIM_DEPRECATION, "dim")


def ensure_xent_args(name: str, labels: object, logits: object) -> None:
    """TF ≥ 2.12's `_ensure_xent_args`, including its missing space
    (docs/tf_behaviour.md#summary)."""
    if labels is None or logits is None:
        raise ValueError(
            f"Both `labels` and `logits` must be provided for {name}"
            f"Received: labels={labels} and logits={logits}"
        )


def ensure_named_xent_args(name: str, sentinel: object, labels: object, logits: object) -> None:
    """The TF 1.x–2.11 guard kept by tfxent's top-level contract (docs/design.md): a positional
    call could be a TF 0.x `(logits, labels)` call that TF ≥ 2.12 would silently swap."""
    if sentinel is not None:
        raise ValueError(f"Only call `{name}` with named arguments (labels=..., logits=..., ...)")
    if labels is None or logits is None:
        raise ValueError("Both labels and logits must be provided.")
