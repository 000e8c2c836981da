"""The core: TF's Python layer of the xent functions, with tfxent's backends underneath.

`dense` reproduces nn_ops.softmax_cross_entropy_with_logits_v2_helper and `sparse`
reproduces nn_ops.sparse_softmax_cross_entropy_with_logits
(docs/tf_behaviour.md#dense-forward–docs/tf_behaviour.md#sparse-forward,
docs/tf_behaviour.md#determinism) statement by
statement, with the same TF primitives around the kernel, so that conversion, dtype rules,
axis handling, flattening, static shapes, name scopes and every error they raise are TF's.
Only the kernel call is replaced: by tfxent's custom op, or by the composite path where the
op cannot run (see _backend.choose).
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.eager import context
from tensorflow.python.framework import config, ops
from tensorflow.python.ops import array_ops, check_ops, math_ops

from tfxent import _backend, _composite, _dtypes, _hooks, _ops, _versions


def _flatten_outer_dims(x: tf.Tensor) -> tf.Tensor:
    """nn_ops._flatten_outer_dims: reshape to [-1, last] and keep a static shape in graphs."""
    rank = array_ops.rank(x)
    last_dim_size = array_ops.slice(array_ops.shape(x), [math_ops.subtract(rank, 1)], [1])
    output = array_ops.reshape(x, array_ops.concat([[-1], last_dim_size], 0))
    if not context.executing_eagerly():
        shape = x.get_shape()
        if shape is not None and shape.dims is not None:
            dims = shape.as_list()
            if all(d is not None for d in dims[:-1]):
                product = 1
                for d in dims[:-1]:
                    product *= d
                output.set_shape([product, dims[-1]])
    return output


def _both_matrices(logits: tf.Tensor, labels: tf.Tensor) -> bool:
    """Non-empty [N, C] logits and labels of the same shape. (With an empty dimension TF's
    final reshape is not an identity, [0, 0] fails there; with broadcast labels its gradient
    fails in the flattening's Reshape, docs/tf_behaviour.md#dense-values-and-broadcasting.)"""
    return logits.shape.rank == 2 and logits.shape == labels.shape and 0 not in logits.shape


def _move_dim_to_end(x: tf.Tensor, dim_index: int, rank: tf.Tensor) -> tf.Tensor:
    """TF's transpose that moves `dim_index` last; a negative index other than −1 fails in
    its Range op exactly as TF's does (docs/tf_behaviour.md#summary)."""
    return array_ops.transpose(
        x,
        array_ops.concat(
            [math_ops.range(dim_index), math_ops.range(dim_index + 1, rank), [dim_index]], 0
        ),
    )


def _dense_kernel(
    logits: tf.Tensor, labels: tf.Tensor, choice: _backend.Choice, name: str
) -> tf.Tensor:
    """The [N, C] kernel call that TF makes to SoftmaxCrossEntropyWithLogits."""
    deterministic = config.is_op_determinism_enabled()
    if deterministic:
        # TF's determinism path starts with LogSoftmax(logits): its dtype check
        # (docs/tf_behaviour.md#determinism).
        _dtypes.check(logits, "logits", "T", _dtypes.FLOATS)
    if choice.backend == _backend.OP and not (
        deterministic and _logits_broadcast_over_classes(logits, labels)
    ):
        return _ops.dense_loss(logits, labels, deterministic, name)
    return _composite.dense(logits, labels, deterministic, choice.xla)


def _logits_broadcast_over_classes(logits: tf.Tensor, labels: tf.Tensor) -> bool:
    """Logits [N, 1] against labels [N, C]: TF's determinism path takes log_softmax over the
    single class before broadcasting (loss 0), not after as the kernel does; only the
    composite path reproduces that."""
    return logits.shape[-1] == 1 and labels.shape[-1] not in (1,)


def dense_stopped(labels: object, logits: object, axis: object, name: str | None) -> tf.Tensor:
    """nn_ops.softmax_cross_entropy_with_logits (v1) after its argument checks: the labels'
    gradient is stopped inside TF's `_sg` scope, then the v2 path runs in that scope."""
    if _hooks.observers:
        _hooks.notify(_hooks.XentCall("dense", labels, logits, axis, labels_stopped=True))
    with ops.name_scope(name, "softmax_cross_entropy_with_logits_sg", [logits, labels]) as name:
        labels = array_ops.stop_gradient(labels, name="labels_stop_gradient")
    return _dense(labels, logits, axis, name)


def dense(labels: object, logits: object, axis: object, name: str | None) -> tf.Tensor:
    """softmax_cross_entropy_with_logits_v2_helper after the `dim`/`axis` lookup."""
    if _hooks.observers:
        _hooks.notify(_hooks.XentCall("dense", labels, logits, axis, labels_stopped=False))
    return _dense(labels, logits, axis, name)


def _dense(labels: object, logits: object, axis: object, name: str | None) -> tf.Tensor:
    if axis is None:
        axis = -1
    with ops.name_scope(name, "softmax_cross_entropy_with_logits", [logits, labels]) as name:
        logits = ops.convert_to_tensor(logits, name="logits")
        labels = ops.convert_to_tensor(labels, name="labels")
        choice = _backend.choose(logits)
        _backend.describe(choice)
        widen = logits.dtype in (tf.float16, tf.bfloat16)
        # Cast f16/bf16 to f32 as TF does, so the op runs TF's float32 arithmetic bit for bit
        # (docs/exactness.md).
        precise_logits = math_ops.cast(logits, tf.float32) if widen else logits
        label_dtype = tf.float32 if widen else precise_logits.dtype
        if not label_dtype.is_floating and labels.dtype != tf.string:
            # Leave numeric labels castable so that the op's dtype check names the logits
            # ('T'), as TF's single-dtype op does (docs/tf_behaviour.md#dtypes). String labels keep
            # TF's cast to
            # the logits' dtype, whose error names that dtype.
            label_dtype = tf.float32
        labels = math_ops.cast(labels, label_dtype)
        if axis == -1 and _both_matrices(precise_logits, labels) and context.executing_eagerly():
            # Eagerly, TF's flattening and final reshape of [N, C] inputs are identities whose
            # ~15 small ops cost more than the kernel below ~10^6 elements (README,
            # Performance); the result, errors and gradients are the same without them.
            cost = _dense_kernel(precise_logits, labels, choice, name)
            return math_ops.cast(cost, logits.dtype) if widen else cost
        input_rank = array_ops.rank(precise_logits)
        shape = logits.get_shape()
        if axis != -1:
            precise_logits = _move_dim_to_end(precise_logits, axis, input_rank)
            labels = _move_dim_to_end(labels, axis, input_rank)
        input_shape = array_ops.shape(precise_logits)
        precise_logits = _flatten_outer_dims(precise_logits)
        labels = _flatten_outer_dims(labels)
        cost = _dense_kernel(precise_logits, labels, choice, name)
        output_shape = array_ops.slice(input_shape, [0], [math_ops.subtract(input_rank, 1)])
        cost = array_ops.reshape(cost, output_shape)
        if not context.executing_eagerly() and shape is not None and shape.dims is not None:
            static = shape.as_list()
            del static[axis]
            cost.set_shape(static)
        return math_ops.cast(cost, logits.dtype) if widen else cost


def _flattened_rows(shape: tf.TensorShape) -> int | None:
    """Rows of reshape(logits, [-1, C]) when the shape is static. With C = 0 TF's Reshape
    gives the product of the non-zero dimensions ([0, 4, 1, 2, 0] → [8, 0]), not 0."""
    if not shape.is_fully_defined():
        return None
    dims = shape.as_list()
    if dims[-1] != 0:
        return shape[:-1].num_elements()
    rows = 1
    for d in dims[:-1]:
        rows *= d or 1
    return rows


def _sparse_kernel(
    logits: tf.Tensor, labels: tf.Tensor, choice: _backend.Choice, name: str, rows: int | None
):
    """The [N, C] kernel call TF makes to SparseSoftmaxCrossEntropyWithLogits."""
    deterministic = config.is_op_determinism_enabled()
    if deterministic:
        # TF's determinism path: LogSoftmax(logits), then GatherV2(indices=labels)
        # (docs/tf_behaviour.md#determinism).
        _dtypes.check(logits, "logits", "T", _dtypes.FLOATS)
        _dtypes.check(labels, "indices", "Tindices", _dtypes.GATHER_INDICES)
        if labels.dtype == tf.int16:
            if not _versions.has("gather_int16_indices"):
                # No int16 GatherV2 kernel on this TF: its formula fails as TF's does.
                precise = (
                    math_ops.cast(logits, tf.float32) if logits.dtype == tf.float16 else logits
                )
                return _composite.sparse(precise, labels, deterministic, choice.xla, rows)
            labels = math_ops.cast(labels, tf.int32)
    if deterministic and labels.shape.rank is None:
        # Labels whose rank is known only at run time (an unknown-rank `TensorSpec`, a v1
        # placeholder): TF gathers with `batch_dims=1`, which takes labels of any rank ≥ 1
        # (labels [N, k] give a loss [N, k]) and rejects scalars in GatherV2
        # (docs/tf_behaviour.md#determinism). The op needs rank 1, so TF's formula runs, with
        # TF's graph nodes and so TF's error messages.
        return _composite.sparse(logits, labels, deterministic, choice.xla, rows)
    if choice.backend == _backend.OP:
        return _ops.sparse_loss(logits, labels, deterministic, name)
    return _composite.sparse(logits, labels, deterministic, choice.xla, rows)


def sparse(labels: object, logits: object, name: str | None) -> tf.Tensor:
    """nn_ops.sparse_softmax_cross_entropy_with_logits after `_ensure_xent_args`."""
    if _hooks.observers:
        _hooks.notify(_hooks.XentCall("sparse", labels, logits, -1, labels_stopped=False))
    with ops.name_scope(name, "SparseSoftmaxCrossEntropyWithLogits", [labels, logits]):
        labels = ops.convert_to_tensor(labels)
        logits = ops.convert_to_tensor(logits)
        choice = _backend.choose(logits)
        _backend.describe(choice)
        # TF upcasts only float16 here; bfloat16 stays bfloat16 (docs/tf_behaviour.md#dtypes).
        # The same cast gives the op TF's float32 arithmetic bit for bit (docs/exactness.md).
        is_half = logits.dtype == tf.float16
        precise_logits = math_ops.cast(logits, tf.float32) if is_half else logits

        labels_static_shape = labels.get_shape()
        logits_shape = logits.get_shape()
        static_shapes_fully_defined = (
            labels_static_shape.is_fully_defined() and logits_shape[:-1].is_fully_defined()
        )
        if logits_shape.ndims is not None and logits_shape.ndims == 0:
            raise ValueError(f"`logits` cannot be a scalar. Received logits={logits}`")
        if (
            logits_shape.ndims is not None
            and labels_static_shape.ndims is not None
            and labels_static_shape.ndims != logits_shape.ndims - 1
        ):
            raise ValueError(
                "`labels.shape.rank` must equal `logits.shape.rank - 1`. "
                f"Received: labels.shape={labels_static_shape} of rank "
                f"{labels_static_shape.rank} and logits.shape={logits_shape} "
                f"of rank {logits_shape.rank}"
            )
        if static_shapes_fully_defined and labels_static_shape != logits_shape[:-1]:
            raise ValueError(
                "`labels.shape` must equal `logits.shape` except for "
                f"the last dimension. Received: labels.shape={labels_static_shape} "
                f"and logits.shape={logits_shape}"
            )
        if logits_shape.ndims == 2:
            cost = _sparse_kernel(precise_logits, labels, choice, name, None)
            return math_ops.cast(cost, tf.float16) if is_half else cost

        # TF takes the labels' shape before its checks; only this branch uses it, and eagerly
        # the Shape op is a fifth of a small call's time.
        labels_shape = array_ops.shape(labels)
        shape_checks = []
        if not static_shapes_fully_defined:
            shape_checks.append(
                check_ops.assert_equal(array_ops.shape(labels), array_ops.shape(logits)[:-1])
            )
        with ops.control_dependencies(shape_checks):
            num_classes = array_ops.shape(logits)[array_ops.rank(logits) - 1]
            precise_logits = array_ops.reshape(precise_logits, [-1, num_classes])
            labels = array_ops.reshape(labels, [-1])
            rows = _flattened_rows(logits_shape)
            cost = _sparse_kernel(precise_logits, labels, choice, name, rows)
            cost = array_ops.reshape(cost, labels_shape)
            cost.set_shape(labels_static_shape)
            return math_ops.cast(cost, tf.float16) if is_half else cost
