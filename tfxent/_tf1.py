"""The top-level TF 1.15 contract: `tfxent.softmax_cross_entropy_with_logits` and friends.

Legacy code was written against TF 1.15's `tf.nn`, whose v1 functions were keyword-only
behind a `_sentinel` guard; these keep that guard and otherwise call
`tfxent.compat.v1.nn` (docs/tf_behaviour.md#signatures). TensorFlow is imported on the
first call, not here, so `import tfxent` stays TF-free.
"""

from __future__ import annotations


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
    from tfxent import _args
    from tfxent.compat.v1 import nn as v1_nn

    dim = _args.lookup_axis("axis", axis, "dim", dim)
    _args.ensure_named_xent_args("softmax_cross_entropy_with_logits", _sentinel, labels, logits)
    return v1_nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits, dim=dim, name=name)


def softmax_cross_entropy_with_logits_v2(labels, logits, axis=None, name=None, dim=None):
    """TF 1.15's `tf.nn.softmax_cross_entropy_with_logits_v2`: labels' gradient flows.

    Same as `tfxent.compat.v1.nn.softmax_cross_entropy_with_logits_v2`.
    """
    from tfxent.compat.v1 import nn as v1_nn

    return v1_nn.softmax_cross_entropy_with_logits_v2(
        labels=labels, logits=logits, axis=axis, name=name, dim=dim
    )


def sparse_softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, name=None):
    """TF 1.15's `tf.nn.sparse_softmax_cross_entropy_with_logits`, keyword-only by contract.

    Same as `tfxent.compat.v1.nn.sparse_softmax_cross_entropy_with_logits` after the
    `_sentinel` guard.
    """
    from tfxent import _args
    from tfxent.compat.v1 import nn as v1_nn

    _args.ensure_named_xent_args(
        "sparse_softmax_cross_entropy_with_logits", _sentinel, labels, logits
    )
    return v1_nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits, name=name)
