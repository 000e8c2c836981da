"""Vectorization (pfor) rules for tfxent's four ops.

`tf.vectorized_map`, `GradientTape.jacobian` and `batch_jacobian` rewrite a per-example body
into one batched graph, op by op, with the converters TF registers for its own ops; TF's xent
ops have one (they merge the loop dimension into the rows). Without converters for tfxent's
ops, pfor falls back to a while loop, one kernel call per example, or fails with
`fallback_to_while_loop=False`. These converters do what TF's do: the loop's stacked inputs
[B, n, ...] become B·n rows, tfxent's op runs once on the whole batch, and its outputs are
split back into [B, n, ...]. Each row of the kernels is computed on its own, so the values
are those of B separate calls (docs/design.md).

Registered at import (tfxent/__init__.py imports this module next to loading the ops).
"""

from __future__ import annotations

import importlib

import tensorflow as tf
from tensorflow.python.ops import array_ops

from tfxent import _op_names, _ops

# By module name: through 2.12 `parallel_for/__init__.py` exports a function named `pfor`,
# which `from tensorflow.python.ops.parallel_for import pfor` would return instead.
pfor = importlib.import_module("tensorflow.python.ops.parallel_for.pfor")


def _merge_loop_into_rows(x: tf.Tensor) -> tf.Tensor:
    """[B, n, ...] → [B·n, ...]."""
    shape = array_ops.shape(x)
    return array_ops.reshape(x, array_ops.concat([[-1], shape[2:]], axis=0))


def _split_rows_by_loop(x: tf.Tensor, loop_len: tf.Tensor) -> tf.Tensor:
    """[B·n, ...] → [B, n, ...]."""
    shape = array_ops.shape(x)
    loop_len = tf.cast(loop_len, shape.dtype)
    return array_ops.reshape(x, array_ops.concat([loop_len, [-1], shape[1:]], axis=0))


def _stacked_rows(pfor_input: pfor._PforInput, count: int) -> list[tf.Tensor]:
    """The op's first `count` inputs, each stacked (loop-invariant ones are tiled) and merged
    into rows."""
    indices = list(range(count))
    pfor_input.stack_inputs(stack_indices=indices)
    return [pfor_input.stacked_input(i) for i in indices]


def _broadcast_pair(features: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The dense ops broadcast labels against features ([1, C] against [n, C]); merged rows
    would no longer line up, so both are broadcast to the common shape first. Broadcasting is
    elementwise, so every row's result is unchanged."""
    if features.shape.is_fully_defined() and features.shape == labels.shape:
        return features, labels
    shape = array_ops.broadcast_dynamic_shape(array_ops.shape(features), array_ops.shape(labels))
    return array_ops.broadcast_to(features, shape), array_ops.broadcast_to(labels, shape)


def _wrap_outputs(pfor_input: pfor._PforInput, outputs: list[tf.Tensor]) -> list:
    loop_len = pfor_input.pfor.loop_len_vector
    return [pfor.wrap(_split_rows_by_loop(x, loop_len), True) for x in outputs]


@pfor.RegisterPFor(_op_names.DENSE)
def _dense_forward(pfor_input: pfor._PforInput) -> list:
    features, labels = _broadcast_pair(*_stacked_rows(pfor_input, 2))
    loss, stats = _ops._library().tfxent_softmax_xent(
        _merge_loop_into_rows(features),
        _merge_loop_into_rows(labels),
        deterministic=pfor_input.get_attr("deterministic"),
    )
    return _wrap_outputs(pfor_input, [loss, stats])


@pfor.RegisterPFor(_op_names.DENSE_GRAD)
def _dense_backward(pfor_input: pfor._PforInput) -> list:
    features, labels, stats, grad_loss = _stacked_rows(pfor_input, 4)
    features, labels = _broadcast_pair(features, labels)
    backprop = _ops._library().tfxent_softmax_xent_grad(
        *(_merge_loop_into_rows(x) for x in (features, labels, stats, grad_loss)),
        deterministic=pfor_input.get_attr("deterministic"),
    )
    return _wrap_outputs(pfor_input, [backprop])


@pfor.RegisterPFor(_op_names.SPARSE)
def _sparse_forward(pfor_input: pfor._PforInput) -> list:
    features, labels = (_merge_loop_into_rows(x) for x in _stacked_rows(pfor_input, 2))
    loss, stats = _ops._library().tfxent_sparse_softmax_xent(
        features, labels, deterministic=pfor_input.get_attr("deterministic")
    )
    return _wrap_outputs(pfor_input, [loss, stats])


@pfor.RegisterPFor(_op_names.SPARSE_GRAD)
def _sparse_backward(pfor_input: pfor._PforInput) -> list:
    inputs = (_merge_loop_into_rows(x) for x in _stacked_rows(pfor_input, 4))
    backprop = _ops._library().tfxent_sparse_softmax_xent_grad(*inputs)
    return _wrap_outputs(pfor_input, [backprop])
