"""Thin wrappers of tfxent's custom ops and their registered gradients.

Gradients (docs/tf_behaviour.md#gradients): the forward ops save one row statistic; the
gradient ops write g·(softmax − labels) in one pass. The labels' gradient
−g·log_softmax(logits) is built only when some tape or graph asks for it. Second order is
built from TF primitives so that it has TF's bits (docs/exactness.md): in kernel mode TF's
registered gradient term for term (label-independent Hessian, zero mixed term), in
determinism mode TF's autodiff of its own formula; third order keeps working.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
from tensorflow.python.eager import context
from tensorflow.python.framework import ops
from tensorflow.python.ops import array_ops, gen_nn_ops, math_ops

from tfxent import _backend, _composite, _env, _op_names


def _library() -> object:
    library = _backend.op_library()
    if library is None:  # only reachable if the op vanished after a graph was built with it
        raise RuntimeError(f"tfxent: the custom op is unavailable: {_backend.load_error()}")
    return library


def dense_loss(features: tf.Tensor, labels: tf.Tensor, deterministic: bool, name: str) -> tf.Tensor:
    loss, _ = _library().tfxent_softmax_xent(
        features, labels, deterministic=deterministic, name=name
    )
    return loss


def sparse_loss(
    features: tf.Tensor, labels: tf.Tensor, deterministic: bool, name: str
) -> tf.Tensor:
    # Unnamed, TF's graph node takes its op type's name; tfxent's takes the same
    # (docs/tf_behaviour.md#op-names).
    # Eagerly the name only ends error messages, where TF 2.12 shows the caller's
    # (docs/tf_behaviour.md#version-matrix).
    if not context.executing_eagerly():
        name = name or "SparseSoftmaxCrossEntropyWithLogits"
    loss, _ = _library().tfxent_sparse_softmax_xent(
        features, labels, deterministic=deterministic, name=name
    )
    return loss


def _wants_gradient(op: ops.Operation, index: int) -> bool:
    """False when eager autodiff says nobody needs input `index` (e.g. v1's stopped labels)."""
    skip = getattr(op, "skip_input_indices", None)
    return skip is None or index not in skip


def _broadcast_mul(vec: tf.Tensor, mat: tf.Tensor) -> tf.Tensor:
    """nn_grad.py's _BroadcastMul: vec [N] times each row of mat [N, C]."""
    return array_ops.expand_dims(vec, -1) * mat


def _reduce_to_shape(grad: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Sum a broadcast [N, C] gradient back to `target`'s shape, as Mul's gradient does."""
    if grad.shape.is_fully_defined() and grad.shape == target.shape:
        # Nothing was broadcast. Mul's gradient then adds no reduction in a graph either, which
        # keeps the static shape Grappler orders broadcasting products by.
        return grad
    target_shape = array_ops.shape(target)
    _, reduce_axes = tf.raw_ops.BroadcastGradientArgs(s0=array_ops.shape(grad), s1=target_shape)
    return array_ops.reshape(math_ops.reduce_sum(grad, reduce_axes), target_shape)


def _labels_gradient(features: tf.Tensor, labels: tf.Tensor, grad_loss: tf.Tensor) -> tf.Tensor:
    """−g·log_softmax(logits), as TF's registered gradient computes it, in the logits' dtype
    (docs/tf_behaviour.md#gradients)."""
    grad = _broadcast_mul(grad_loss, -gen_nn_ops.log_softmax(features))
    return math_ops.cast(grad, labels.dtype)


@ops.RegisterGradient(_op_names.DENSE)
def _dense_xent_grad(op: ops.Operation, grad_loss: tf.Tensor, _grad_stats: tf.Tensor):
    features, labels = op.inputs
    deterministic = op.get_attr("deterministic")
    backprop = _library().tfxent_softmax_xent_grad(
        features,
        labels,
        op.outputs[1],
        grad_loss,
        deterministic=deterministic,
        # The opt-in one-pass backward: faster, no longer TF's bits (docs/exactness.md).
        exact=not _env.flag("TFXENT_FAST_BACKPROP"),
    )
    grad_labels = None
    if _wants_gradient(op, 1):
        grad_labels = _labels_gradient(features, labels, grad_loss)
    if deterministic:
        # TF's determinism path broadcasts with Mul, whose gradient sums over the broadcast
        # dimensions; the kernel path returns [N, C] and then fails as TF's does
        # (docs/tf_behaviour.md#gradients).
        backprop = _reduce_to_shape(backprop, features)
        if grad_labels is not None:
            grad_labels = _reduce_to_shape(grad_labels, labels)
    return backprop, grad_labels


@ops.RegisterGradient(_op_names.SPARSE)
def _sparse_xent_grad(op: ops.Operation, grad_loss: tf.Tensor, _grad_stats: tf.Tensor):
    features, labels = op.inputs
    backprop = _library().tfxent_sparse_softmax_xent_grad(
        features, labels, op.outputs[1], grad_loss, deterministic=op.get_attr("deterministic")
    )
    return backprop, None


def _softmax(op: ops.Operation, grad_backprop: tf.Tensor) -> tf.Tensor:
    """softmax(features) of a gradient op, in the features' dtype as TF's registered gradient
    computes it: the core widens f16/bf16 before the op exactly where TF does, so sparse
    bfloat16 stays bfloat16 (docs/tf_behaviour.md#dtypes)."""
    # Broadcast logits as the kernel did before taking the softmax over the classes.
    return gen_nn_ops.softmax(op.inputs[0] + array_ops.zeros_like(grad_backprop))


def _deterministic_grad_grad(
    op: ops.Operation,
    grad_backprop: tf.Tensor,
    formula: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
) -> list[tf.Tensor | None]:
    """Second order in determinism mode: TF's autodiff of TF's own formula, twice.

    There TF builds the loss from LogSoftmax, Mul, Sum and Neg (sparse: GatherV2 and a select)
    and its logits' gradient is autodiff through those ops; the second order is autodiff
    through that gradient (docs/tf_behaviour.md#determinism). Rebuilding the formula here
    (the op computed its value and first order) and differentiating it twice with TF's
    registered gradients creates the very ops TF runs, in the same order and with the same
    static shapes, so the values are TF's bit for bit (docs/exactness.md), in graphs too,
    where Grappler reorders broadcasting products by those shapes. The core casts f16/bf16 to
    f32 before the op as TF does, so the inputs already have the computation dtype.
    """
    features, labels, _stats, grad_loss = op.inputs
    wanted = [features, grad_loss]
    if labels.dtype.is_floating and _wants_gradient(op, 1):
        wanted.append(labels)
    if isinstance(op, ops.Operation):
        # tf.gradients passes the graph's own operation; a tape passes a stand-in. Each
        # builds a slightly different graph, so follow whichever the caller uses.
        loss = formula(features, labels)
        first_order = tf.gradients(loss, features, grad_ys=grad_loss)[0]
        grads = tf.gradients(first_order, wanted, grad_ys=grad_backprop)
    else:
        with tf.GradientTape() as outer:
            outer.watch(wanted)
            with tf.GradientTape() as inner:
                inner.watch(features)
                loss = formula(features, labels)
            first_order = inner.gradient(loss, features, output_gradients=grad_loss)
        grads = outer.gradient(first_order, wanted, output_gradients=grad_backprop)
    grad_features, grad_g = grads[0], grads[1]
    grad_labels = grads[2] if len(grads) > 2 else None
    return [grad_features, grad_labels, None, grad_g]


@ops.RegisterGradient(_op_names.DENSE_GRAD)
def _dense_xent_grad_grad(op: ops.Operation, grad_backprop: tf.Tensor):
    features, labels, _stats, grad_loss = op.inputs
    if op.get_attr("deterministic"):
        return _deterministic_grad_grad(op, grad_backprop, _composite.determinism_dense)
    softmax, g, v = _softmax(op, grad_backprop), grad_loss, grad_backprop
    y = math_ops.cast(labels, softmax.dtype) + array_ops.zeros_like(v)  # broadcast to [N, C]
    # TF's kernel gradient adds its first-order term again with the loss's upstream
    # gradient, which is zero here: 0·(softmax − labels), NaN where labels are ±inf/NaN.
    hessian_term = _composite.hessian_vector_product(softmax, _broadcast_mul(g, v))
    grad_features = hessian_term + _broadcast_mul(array_ops.zeros_like(g), softmax - y)
    grad_g = math_ops.reduce_sum(v * (softmax - y), axis=-1)
    # TF's kernel gradient treats the backprop as label-free: its labels' term is the
    # first-order one with a zero upstream gradient, 0·(−log_softmax), which is NaN
    # wherever log_softmax is infinite (docs/tf_behaviour.md#gradients).
    grad_labels = _labels_gradient(features, labels, array_ops.zeros_like(grad_loss))
    return grad_features, grad_labels, None, grad_g


@ops.RegisterGradient(_op_names.SPARSE_GRAD)
def _sparse_xent_grad_grad(op: ops.Operation, grad_backprop: tf.Tensor):
    features, labels, _stats, grad_loss = op.inputs
    if op.get_attr("deterministic"):
        return _deterministic_grad_grad(op, grad_backprop, _composite.determinism_sparse)
    softmax, g, v = _softmax(op, grad_backprop), grad_loss, grad_backprop
    one_hot = array_ops.one_hot(labels, array_ops.shape(features)[-1], dtype=softmax.dtype)
    # As the dense kernel's: TF adds 0·(softmax − one_hot) for the zero loss gradient, which
    # turns a −0 of the Hessian term (a class with a −inf logit) into +0.
    grad_features = _composite.hessian_vector_product(
        softmax, _broadcast_mul(g, v)
    ) + _broadcast_mul(array_ops.zeros_like(g), softmax - one_hot)
    grad_g = math_ops.reduce_sum(v * (softmax - one_hot), axis=-1)
    return grad_features, None, None, grad_g
