"""The composite path: the same mathematics from TF primitives, for where the op cannot run.

Used inside XLA (`jit_compile=True`), on devices without a tfxent kernel, when the op cannot
be built, or with TFXENT_FORCE_COMPOSITE=1 (DESIGN.md). It never calls TF's xent ops: tfxent
must not delegate to what it replaces. Inputs are the canonical 2-D tensors the core made.

Under XLA it follows TF's XLA lowering (spec §10): a zero label masks its term, so a −inf
logit with label 0 gives a finite loss, and an out-of-range sparse label gives a NaN row
instead of an error. Gradients follow TF's kernel rule g·(softmax − labels) with the labels
held constant inside it, so the Hessian is label-independent and the mixed term is 0 (§6).
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.ops import array_ops, gen_nn_ops, math_ops


def _kernel_rule_xent(logits: tf.Tensor, labels: tf.Tensor, mask_zero_labels: bool) -> tf.Tensor:
    @tf.custom_gradient
    def xent(x, y):
        shifted = x - math_ops.reduce_max(x, axis=1, keepdims=True)
        log_sum = math_ops.log(math_ops.reduce_sum(math_ops.exp(shifted), axis=1, keepdims=True))
        if mask_zero_labels:
            # XLA's safe_sub: a zero label contributes 0 even where shifted is −inf (spec §10).
            terms = array_ops.where(
                math_ops.equal(y, 0), array_ops.zeros_like(shifted), shifted - log_sum
            )
            loss = -math_ops.reduce_sum(y * terms, axis=1)
        else:
            # The native kernel's Σ y·(log s − z): 0·inf is NaN, as TF's (spec §3.1).
            loss = math_ops.reduce_sum(y * (log_sum - shifted), axis=1)

        def grad(g):
            # Recomputed from x so that higher orders differentiate through Softmax.
            softmax = gen_nn_ops.softmax(x)
            backprop = softmax - array_ops.stop_gradient(y)
            g_col = array_ops.expand_dims(g, -1)
            return g_col * backprop, g_col * -gen_nn_ops.log_softmax(x)

        return loss, grad

    return xent(logits, labels)


def _determinism_xent(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """TF's determinism-mode formula (spec §9): plain primitives, plain autodiff."""
    return -math_ops.reduce_sum(labels * gen_nn_ops.log_softmax(logits), axis=1)


def dense(logits: tf.Tensor, labels: tf.Tensor, deterministic: bool, xla: bool) -> tf.Tensor:
    """Loss of [N, C] logits against labels that broadcast to them."""
    if deterministic:
        return _determinism_xent(logits, labels)
    return _kernel_rule_xent(logits, labels, mask_zero_labels=xla)


def _one_hot_with_nan_rows(labels: tf.Tensor, classes: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """One-hot rows; an out-of-range label's row is all NaN (XLA and GPU semantics, §10)."""
    valid = math_ops.logical_and(
        math_ops.greater_equal(labels, 0),
        math_ops.less(labels, math_ops.cast(classes, labels.dtype)),
    )
    one_hot = array_ops.one_hot(labels, classes, dtype=dtype)
    nan = tf.constant(float("nan"), dtype=dtype)
    return array_ops.where(
        array_ops.expand_dims(valid, -1), one_hot, nan * array_ops.ones_like(one_hot)
    )


def _check_label_range(labels: tf.Tensor, classes: tf.Tensor) -> list[tf.Operation]:
    """TF's CPU kernel rejects out-of-range labels (spec §5); outside XLA so does this path."""
    upper = math_ops.cast(classes, labels.dtype)
    message = "Received a label value outside the valid range of [0, number of classes)."
    return [
        tf.debugging.assert_non_negative(labels, message=message),
        tf.debugging.assert_less(labels, upper, message=message),
    ]


def sparse(logits: tf.Tensor, labels: tf.Tensor, deterministic: bool, xla: bool) -> tf.Tensor:
    """Loss of [N, C] logits against [N] integer labels."""
    classes = array_ops.shape(logits)[-1]
    if logits.shape[-1] == 0 and not deterministic:
        raise tf.errors.InvalidArgumentError(
            None, None, f"Must have at least one class, but got logits shape {logits.shape}"
        )
    if deterministic:
        log_probs = gen_nn_ops.log_softmax(logits)
        return -array_ops.gather(log_probs, labels, batch_dims=1)
    checks = [] if xla else _check_label_range(labels, classes)
    with tf.control_dependencies(checks):
        one_hot = _one_hot_with_nan_rows(labels, classes, logits.dtype)
    # The masked form keeps a −inf logit of another class finite, as TF's sparse kernel does.
    return _kernel_rule_xent(logits, one_hot, mask_zero_labels=True)
