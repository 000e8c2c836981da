"""The composite path: the same mathematics from TF primitives, for where the op cannot run.

Used inside XLA (`jit_compile=True`), on devices without a tfxent kernel, when the op cannot
be built, or with TFXENT_FORCE_COMPOSITE=1 (docs/design.md). It never calls TF's xent ops: tfxent
must not delegate to what it replaces. Inputs are the canonical 2-D tensors the core made.

Under XLA it follows TF's XLA lowering (docs/tf_behaviour.md#xla): a zero label masks its term, so
a −inf
logit with label 0 gives a finite loss, and an out-of-range sparse label gives a NaN row
instead of an error. Gradients follow TF's kernel rule g·(softmax − labels) with the labels
held constant inside it, so the Hessian is label-independent and the mixed term is 0
(docs/tf_behaviour.md#gradients).
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.ops import array_ops, gen_nn_ops, math_ops

from tfxent import _dtypes


@tf.custom_gradient
def _kernel_backprop(x: tf.Tensor, y: tf.Tensor):
    """softmax(x) − y, the backprop TF's kernel returns, broadcast to [N, C].

    Its own gradient is nn_grad.py's rule applied with a zero loss gradient and this
    gradient as `grad_grad` (docs/tf_behaviour.md#gradients): the Hessian-vector product for x, and
    0·(−log_softmax)
    for y, so the mixed term is 0 (NaN where log_softmax is infinite), exactly as TF's.
    """
    zeros = array_ops.zeros_like(x) + array_ops.zeros_like(y)
    # The kernel's exp(z)/Σexp(z), not the Softmax op: an +inf logit makes the kernel's whole
    # row NaN, where Softmax would give 0 for the other classes
    # (docs/tf_behaviour.md#dense-values-and-broadcasting).
    shifted = (x + zeros) - math_ops.reduce_max(x + zeros, axis=1, keepdims=True)
    exp = math_ops.exp(shifted)
    backprop = exp / math_ops.reduce_sum(exp, axis=1, keepdims=True) - (y + zeros)

    def grad(grad_grad):
        x_b = x + array_ops.zeros_like(grad_grad)
        softmax = gen_nn_ops.softmax(x_b)
        unused = array_ops.zeros_like(grad_grad)  # TF's grad_loss for the second pass
        grad_x = unused * (softmax - y) + hessian_vector_product(softmax, grad_grad)
        grad_y = unused * -gen_nn_ops.log_softmax(x_b)
        return grad_x, grad_y

    return backprop, grad


def hessian_vector_product(softmax: tf.Tensor, grad_grad: tf.Tensor) -> tf.Tensor:
    """(diag(s) − s sᵀ)·v per row, in nn_grad.py's order of operations (also the custom
    ops' second-order gradients, _ops.py; docs/tf_behaviour.md#gradients)."""
    projected = array_ops.squeeze(
        math_ops.matmul(array_ops.expand_dims(grad_grad, 1), array_ops.expand_dims(softmax, 2)),
        axis=1,
    )
    return (grad_grad - projected) * softmax


def _loss_terms(shifted: tf.Tensor, log_sum: tf.Tensor, y: tf.Tensor, formula: str) -> tf.Tensor:
    """The per-class terms whose row sum is the loss, in the order of operations (and so with
    the signed zeros) of the kernel being reproduced."""
    if formula == "xla":
        # XLA's lowering: (−y)·(z − log s), where a zero label masks the log-probability, so it
        # contributes ∓0 even where z is −inf (docs/tf_behaviour.md#xla).
        log_probs = shifted - log_sum
        log_probs = array_ops.where_v2(
            math_ops.equal(y, 0), array_ops.zeros_like(log_probs), log_probs
        )
        return -y * log_probs
    terms = log_sum - shifted
    if formula == "sparse":
        # The native sparse kernel reads only the label's class: another class's −inf logit
        # leaves the loss finite (docs/tf_behaviour.md#sparse-forward).
        terms = array_ops.where_v2(math_ops.equal(y, 0), array_ops.zeros_like(terms), terms)
    # "dense": the native kernel's y·(log s − z), where 0·inf is NaN
    # (docs/tf_behaviour.md#dense-kernel).
    return y * terms


def _kernel_rule_xent(logits: tf.Tensor, labels: tf.Tensor, formula: str) -> tf.Tensor:
    @tf.custom_gradient
    def xent(x, y):
        # Broadcast as the kernel's BCast does, logits first so that a static mismatch names
        # the logits' dimension first, as TF's shape function does
        # (docs/tf_behaviour.md#static-shapes).
        zeros = array_ops.zeros_like(x) + array_ops.zeros_like(y)
        x_b, y_b = x + zeros, y + zeros
        shifted = x_b - math_ops.reduce_max(x_b, axis=1, keepdims=True)
        log_sum = math_ops.log(math_ops.reduce_sum(math_ops.exp(shifted), axis=1, keepdims=True))
        loss = math_ops.reduce_sum(_loss_terms(shifted, log_sum, y_b, formula), axis=1)

        def grad(g):
            # nn_grad.py's first-order rule: g·backprop for the logits, −g·log_softmax for
            # the labels, both [N, C] even where the inputs broadcast
            # (docs/tf_behaviour.md#gradients).
            g_col = array_ops.expand_dims(g, -1)
            log_probs = gen_nn_ops.log_softmax(x + array_ops.zeros_like(y))
            return g_col * _kernel_backprop(x, y), g_col * -log_probs

        return loss, grad

    return xent(logits, labels)


def determinism_dense(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """TF's determinism-mode formula (docs/tf_behaviour.md#determinism): plain primitives, plain
    autodiff. The custom ops' second order in that mode differentiates it too (_ops.py)."""
    return -math_ops.reduce_sum(labels * gen_nn_ops.log_softmax(logits), axis=1)


def determinism_sparse(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """TF's determinism formula for sparse labels (nn_ops l.4255-4277): gather, then NaN for
    invalid labels; the select also gates their gradient to zero, as TF's does."""
    classes = array_ops.shape(logits)[-1]
    cost = -array_ops.gather(gen_nn_ops.log_softmax(logits), labels, batch_dims=1)
    invalid = math_ops.logical_or(
        math_ops.less(labels, 0),
        math_ops.greater_equal(labels, math_ops.cast(classes, labels.dtype)),
    )
    nan = tf.constant(float("nan"), dtype=logits.dtype)
    return array_ops.where(invalid, array_ops.broadcast_to(nan, array_ops.shape(cost)), cost)


def dense(logits: tf.Tensor, labels: tf.Tensor, deterministic: bool, xla: bool) -> tf.Tensor:
    """Loss of [N, C] logits against labels that broadcast to them."""
    _dtypes.check(logits, "features", "T", _dtypes.FLOATS)
    if deterministic:
        return determinism_dense(logits, labels)
    return _kernel_rule_xent(logits, labels, "xla" if xla else "dense")


def _one_hot_with_nan_rows(labels: tf.Tensor, classes: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """One-hot rows; an out-of-range label's row is all NaN (XLA and GPU semantics,
    docs/tf_behaviour.md#xla)."""
    valid = math_ops.logical_and(
        math_ops.greater_equal(labels, 0),
        math_ops.less(labels, math_ops.cast(classes, labels.dtype)),
    )
    one_hot = array_ops.one_hot(labels, classes, dtype=dtype)
    nan = tf.constant(float("nan"), dtype=dtype)
    return array_ops.where_v2(
        array_ops.expand_dims(valid, -1), one_hot, nan * array_ops.ones_like(one_hot)
    )


def _check_label_range(labels: tf.Tensor, classes: tf.Tensor) -> list[tf.Operation]:
    """TF's CPU kernel rejects out-of-range labels (docs/tf_behaviour.md#sparse-forward); outside
    XLA so does this path."""
    upper = math_ops.cast(classes, labels.dtype)
    message = "Received a label value outside the valid range of [0, number of classes)."
    return [
        tf.debugging.assert_non_negative(labels, message=message),
        tf.debugging.assert_less(labels, upper, message=message),
    ]


def sparse(
    logits: tf.Tensor, labels: tf.Tensor, deterministic: bool, xla: bool, rows: int | None = None
) -> tf.Tensor:
    """Loss of [N, C] logits against [N] integer labels (`rows`: the logits' N when the core
    knows it statically)."""
    _dtypes.check(logits, "features", "T", _dtypes.FLOATS)
    if not deterministic:  # TF's determinism path has GatherV2's index dtypes (the core's)
        _dtypes.check(labels, "labels", "Tlabels", _dtypes.XENT_INDICES)
    classes = array_ops.shape(logits)[-1]
    shapes_disagree = rows is not None and labels.shape[0] not in (None, rows)
    if shapes_disagree and not deterministic:
        # Only empty logits [0, ..., 0] get here: reshaped to [-1, 0] they have as many rows as
        # the product of their non-zero dimensions, so the kernel's first check, equal first
        # dimensions, fails before its class check (docs/tf_behaviour.md#sparse-forward,
        # docs/tf_behaviour.md#xla).
        raise tf.errors.InvalidArgumentError(
            None,
            None,
            "logits and labels must have the same first dimension, got logits shape "
            f"[{rows},0] and labels shape [{labels.shape[0]}]",
        )
    if logits.shape[-1] == 0 and not deterministic:
        rows = logits.shape[0] if rows is None else rows
        raise tf.errors.InvalidArgumentError(
            None, None, f"Must have at least one class, but got logits shape [{rows},0]"
        )
    if deterministic:
        return determinism_sparse(logits, labels)
    checks = [] if xla else _check_label_range(labels, classes)
    with tf.control_dependencies(checks):
        one_hot = _one_hot_with_nan_rows(labels, classes, logits.dtype)
    return _kernel_rule_xent(logits, one_hot, "xla" if xla else "sparse")
