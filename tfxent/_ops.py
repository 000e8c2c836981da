"""Thin wrappers of tfxent's custom ops and their registered gradients.

Gradients (docs/tf_behaviour.md#gradients): the forward ops save one row statistic; the gradient
ops write
g·(softmax − labels) in one pass. The labels' gradient −g·log_softmax(logits) is built only
when some tape or graph asks for it, and second order is expressed in TF primitives so that
it matches TF's registered gradient term for term (label-independent Hessian, zero mixed
term in kernel mode) and third order keeps working.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.eager import context
from tensorflow.python.framework import ops
from tensorflow.python.ops import array_ops, gen_nn_ops, math_ops

from tfxent import _backend, _composite, _op_names

_WIDENED = (tf.float16, tf.bfloat16)


def compute_dtype(dtype: tf.DType) -> tf.DType:
    """The dtype the kernels compute in: TF upcasts f16/bf16 logits to f32
    (docs/tf_behaviour.md#dtypes)."""
    return tf.float32 if dtype in _WIDENED else dtype


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
    target_shape = array_ops.shape(target)
    _, reduce_axes = tf.raw_ops.BroadcastGradientArgs(s0=array_ops.shape(grad), s1=target_shape)
    return array_ops.reshape(math_ops.reduce_sum(grad, reduce_axes), target_shape)


def _labels_gradient(features: tf.Tensor, labels: tf.Tensor, grad_loss: tf.Tensor) -> tf.Tensor:
    """−g·log_softmax(logits), computed as TF does in the widened dtype
    (docs/tf_behaviour.md#gradients)."""
    dtype = compute_dtype(features.dtype)
    log_probs = gen_nn_ops.log_softmax(math_ops.cast(features, dtype))
    grad = _broadcast_mul(math_ops.cast(grad_loss, dtype), -log_probs)
    return math_ops.cast(grad, labels.dtype)


@ops.RegisterGradient(_op_names.DENSE)
def _dense_xent_grad(op: ops.Operation, grad_loss: tf.Tensor, _grad_stats: tf.Tensor):
    features, labels = op.inputs
    deterministic = op.get_attr("deterministic")
    backprop = _library().tfxent_softmax_xent_grad(
        features, labels, op.outputs[1], grad_loss, deterministic=deterministic
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


def _widened_inputs(op: ops.Operation, grad_backprop: tf.Tensor):
    """softmax(features), g and the upstream gradient v of a gradient op, widened."""
    features, _labels, _stats, grad_loss = op.inputs
    dtype = compute_dtype(features.dtype)
    v = math_ops.cast(grad_backprop, dtype)
    # Broadcast logits as the kernel did before taking the softmax over the classes.
    softmax = gen_nn_ops.softmax(math_ops.cast(features, dtype) + array_ops.zeros_like(v))
    return softmax, math_ops.cast(grad_loss, dtype), v


def _log_softmax_grad_grad(
    log_probs: tf.Tensor, grad_log_probs: tf.Tensor, v: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """The second order of TF's determinism path (docs/tf_behaviour.md#determinism).

    There the logits' gradient is LogSoftmax's registered gradient
    `d = G − ΣG·exp(log_probs)`, with G the gradient reaching `log_probs` (the labels times
    −g). TF's autodiff differentiates that expression op by op; this builds the same ops in
    the same order, so the result has TF's bits (docs/exactness.md): Sub's gradient passes v
    to G and −v on, Mul's gives `Σ(−v·p)` to ΣG and `−v·ΣG` to `p = exp(log_probs)`, Exp's
    multiplies by p, and LogSoftmax's gradient closes it (with exp(log_probs), not a Softmax).
    Returns the gradients with respect to the logits and to G.
    """
    total = math_ops.reduce_sum(grad_log_probs, -1, keepdims=True)
    probs = math_ops.exp(log_probs)
    neg_v = -v
    grad_total = math_ops.reduce_sum(neg_v * probs, -1, keepdims=True)
    grad_through_exp = (neg_v * total) * probs
    grad_logits = grad_through_exp - math_ops.reduce_sum(
        grad_through_exp, -1, keepdims=True
    ) * math_ops.exp(log_probs)
    return grad_logits, v + grad_total


@ops.RegisterGradient(_op_names.DENSE_GRAD)
def _dense_xent_grad_grad(op: ops.Operation, grad_backprop: tf.Tensor):
    features, labels, _stats, grad_loss = op.inputs
    if op.get_attr("deterministic"):
        return _dense_deterministic_grad_grad(op, grad_backprop)
    softmax, g, v = _widened_inputs(op, grad_backprop)
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
    return (
        math_ops.cast(grad_features, features.dtype),
        math_ops.cast(grad_labels, labels.dtype),
        None,
        math_ops.cast(grad_g, grad_loss.dtype),
    )


def _dense_deterministic_grad_grad(op: ops.Operation, grad_backprop: tf.Tensor):
    """TF's determinism path: loss −Σ labels·LogSoftmax(logits); the first order by autodiff
    through Neg, Sum, Mul and LogSoftmax, and this second order through that first order
    (docs/tf_behaviour.md#determinism). The core casts f16/bf16 to f32 before the op, as TF
    does, so every input already has the computation dtype."""
    features, labels, _stats, grad_loss = op.inputs
    log_probs = gen_nn_ops.log_softmax(features)
    # Neg's and Sum's gradients: −g, broadcast over the classes of labels·log_probs.
    neg_g = array_ops.broadcast_to(
        array_ops.expand_dims(-grad_loss, -1),
        array_ops.broadcast_dynamic_shape(array_ops.shape(labels), array_ops.shape(log_probs)),
    )
    # Mul's gradient to log_probs (TF's order: the upstream gradient times the labels).
    grad_log_probs = neg_g * labels
    grad_features, grad_product = _log_softmax_grad_grad(log_probs, grad_log_probs, grad_backprop)
    # Mul's gradient to the labels, summed over the dimensions they were broadcast along.
    grad_labels = _reduce_to_shape(grad_product * neg_g, labels)
    # ... and to −g, then BroadcastTo's (a sum over the classes) and Neg's.
    grad_g = -math_ops.reduce_sum(grad_product * labels, axis=-1)
    return grad_features, grad_labels, None, grad_g


@ops.RegisterGradient(_op_names.SPARSE_GRAD)
def _sparse_xent_grad_grad(op: ops.Operation, grad_backprop: tf.Tensor):
    features, labels, _stats, grad_loss = op.inputs
    if op.get_attr("deterministic"):
        return _sparse_deterministic_grad_grad(op, grad_backprop)
    softmax, g, v = _widened_inputs(op, grad_backprop)
    one_hot = array_ops.one_hot(labels, array_ops.shape(features)[-1], dtype=softmax.dtype)
    # As the dense kernel's: TF adds 0·(softmax − one_hot) for the zero loss gradient, which
    # turns a −0 of the Hessian term (a class with a −inf logit) into +0.
    grad_features = _composite.hessian_vector_product(
        softmax, _broadcast_mul(g, v)
    ) + _broadcast_mul(array_ops.zeros_like(g), softmax - one_hot)
    grad_g = math_ops.reduce_sum(v * (softmax - one_hot), axis=-1)
    return (
        math_ops.cast(grad_features, features.dtype),
        None,
        None,
        math_ops.cast(grad_g, grad_loss.dtype),
    )


def _sparse_deterministic_grad_grad(op: ops.Operation, grad_backprop: tf.Tensor):
    """TF's determinism path for sparse labels: −gather(LogSoftmax(logits), labels); GatherV2's
    gradient puts −g at each row's label and zeros elsewhere (docs/tf_behaviour.md#determinism),
    then the second order is the dense one's."""
    features, labels, _stats, grad_loss = op.inputs
    log_probs = gen_nn_ops.log_softmax(features)
    one_hot = array_ops.one_hot(labels, array_ops.shape(features)[-1], dtype=features.dtype)
    grad_log_probs = _broadcast_mul(-grad_loss, one_hot)
    grad_features, grad_product = _log_softmax_grad_grad(log_probs, grad_log_probs, grad_backprop)
    grad_g = -math_ops.reduce_sum(grad_product * one_hot, axis=-1)
    return grad_features, None, None, grad_g
