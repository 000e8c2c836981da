"""The op-definition dtype checks of the TF ops whose errors tfxent reproduces
(docs/tf_behaviour.md#dtypes, docs/tf_behaviour.md#determinism).

TF raises these from the op it builds: a `TypeError` naming the op's parameter while
building a graph, an `InvalidArgumentError` naming the dtype attribute when executing
eagerly. Where tfxent builds a different op (the composite path; determinism mode, where
TF builds LogSoftmax and GatherV2 instead of the xent kernels), it checks first with these.
"""

from __future__ import annotations

import tensorflow as tf

# Machine epsilon of each float dtype: the unit of the parity tolerances and the audit's
# thresholds.
EPSILON = {tf.float16: 2.0**-10, tf.bfloat16: 2.0**-7, tf.float32: 2.0**-23, tf.float64: 2.0**-52}

FLOATS = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
XENT_INDICES = (tf.int32, tf.int64)
GATHER_INDICES = (tf.int16, tf.int32, tf.int64)

# TF's C++ spelling of dtypes in the eager message ("half, bfloat16, float, double").
_CPP_NAMES = {tf.float16: "half", tf.float32: "float", tf.float64: "double"}


def check(tensor: tf.Tensor, parameter: str, attr: str, allowed: tuple[tf.DType, ...]) -> None:
    """Raise TF's error if `tensor`'s dtype is not allowed for this op parameter."""
    if tensor.dtype in allowed:
        return
    if tf.executing_eagerly():
        names = ", ".join(_CPP_NAMES.get(d, d.name) for d in allowed)
        found = _CPP_NAMES.get(tensor.dtype, tensor.dtype.name)
        raise tf.errors.InvalidArgumentError(
            None,
            None,
            f"Value for attr '{attr}' of {found} is not in the list of allowed values: {names}",
        )
    raise TypeError(
        f"Value passed to parameter '{parameter}' has DataType {tensor.dtype.name} not in "
        f"list of allowed values: {', '.join(d.name for d in allowed)}"
    )
