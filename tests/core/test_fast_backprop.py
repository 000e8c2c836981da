"""The TFXENT_FAST_BACKPROP opt-in (docs/exactness.md#the-fast-backward-opt-in): the dense
float32/float64 gradient in one pass, within the parity tolerance of TF instead of TF's bits;
without it, the gradient op is the exact one."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfxent
from tfxent.parity.tolerance import tolerance


def _loss_and_grad(labels, logits):
    @tf.function(autograph=False)
    def run(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = tfxent.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return loss, tape.gradient(loss, logits)

    grad_ops = [
        op
        for op in run.get_concrete_function(labels, logits).graph.get_operations()
        if op.type == "TfxentSoftmaxXentGrad"
    ]
    return run(labels, logits), grad_ops


def _tf_grad(labels, logits):
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tape.gradient(loss, logits)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fast", [False, True])
def test_gradient_op_follows_the_switch(monkeypatch, dtype, fast):
    if fast:
        monkeypatch.setenv("TFXENT_FAST_BACKPROP", "1")
    else:
        monkeypatch.delenv("TFXENT_FAST_BACKPROP", raising=False)
    rng = np.random.default_rng(7)
    logits = tf.constant(rng.standard_normal((37, 1003)) * 3, dtype)
    labels = tf.nn.softmax(tf.constant(rng.standard_normal((37, 1003)), dtype))
    (_, grad), grad_ops = _loss_and_grad(labels, logits)
    assert [op.get_attr("exact") for op in grad_ops] == [not fast]
    theirs = _tf_grad(labels, logits).numpy()
    if fast:
        tol = tolerance(logits.dtype)
        np.testing.assert_allclose(grad.numpy(), theirs, rtol=tol, atol=tol)
    else:
        assert grad.numpy().tobytes() == theirs.tobytes()
