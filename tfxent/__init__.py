"""tfxent: TensorFlow-exact softmax cross-entropy on tfxent's own compiled custom ops.

Three surfaces, one core (docs/design.md):

* this module: the TF 1.15 `tf.nn` contract that legacy code was written against, with its
  `_sentinel` guard against positional calls;
* `tfxent.nn`: `tf.nn` of the installed TF;
* `tfxent.compat.v1.nn`: `tf.compat.v1.nn` of the installed TF.
"""

from __future__ import annotations

try:
    import tensorflow as _tf  # noqa: F401
except ImportError as _err:  # pragma: no cover - exercised in a TF-free environment
    raise ImportError(
        "tfxent needs TensorFlow 2.12-2.21, which is an optional extra so that it never "
        "installs a second TF: pip install 'tfxent[tensorflow]' or 'tfxent[tensorflow-cpu]'"
    ) from _err

# audit: tfxent.audit(), the runtime migration audit (also TFXENT_AUDIT=1).
from tfxent import _args, _backend, audit, compat, fused, nn, saved_model  # noqa: E402, F401
from tfxent.patch import patch, patched, unpatch  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "audit",
    "compat",
    "nn",
    "patch",
    "patched",
    "saved_model",
    "softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits_v2",
    "sparse_softmax_cross_entropy_with_logits",
    "unpatch",
]

# Register the ops with TF at import (building them on first use), so that `import tfxent`
# is all a SavedModel using them needs before `tf.saved_model.load`. A build failure warns
# here and calls fall back to the composite path (or it raises with TFXENT_REQUIRE_OP=1).
_backend.preload()


def softmax_cross_entropy_with_logits(
    _sentinel=None, labels=None, logits=None, dim=-1, name=None, axis=None
):
    """TF 1.15's `tf.nn.softmax_cross_entropy_with_logits`: labels' gradient stopped.

    Keyword-only by contract: a positional call raises TF 1.x's ValueError ("Only call
    `softmax_cross_entropy_with_logits` with named arguments ...") instead of silently
    swapping a TF 0.x `(logits, labels)` call. Otherwise identical to
    `tfxent.compat.v1.nn.softmax_cross_entropy_with_logits`.

    Differences from TF: the `_sentinel` guard is the intended difference from TF ≥ 2.12
    (compat_matrix.md).
    """
    dim = _args.lookup_axis("axis", axis, "dim", dim)
    _args.ensure_named_xent_args("softmax_cross_entropy_with_logits", _sentinel, labels, logits)
    return compat.v1.nn.softmax_cross_entropy_with_logits(
        labels=labels, logits=logits, dim=dim, name=name
    )


def softmax_cross_entropy_with_logits_v2(labels, logits, axis=None, name=None, dim=None):
    """TF 1.15's `tf.nn.softmax_cross_entropy_with_logits_v2`: labels' gradient flows.

    Same as `tfxent.compat.v1.nn.softmax_cross_entropy_with_logits_v2`.
    """
    return compat.v1.nn.softmax_cross_entropy_with_logits_v2(
        labels=labels, logits=logits, axis=axis, name=name, dim=dim
    )


def sparse_softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, name=None):
    """TF 1.15's `tf.nn.sparse_softmax_cross_entropy_with_logits`, keyword-only by contract.

    Same as `tfxent.compat.v1.nn.sparse_softmax_cross_entropy_with_logits` after the
    `_sentinel` guard.
    """
    _args.ensure_named_xent_args(
        "sparse_softmax_cross_entropy_with_logits", _sentinel, labels, logits
    )
    return compat.v1.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits, name=name
    )
