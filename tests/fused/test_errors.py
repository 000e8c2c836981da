"""Bad input gets TF's exception class and a message that says what is wrong; second-order
gradients raise instead of returning something wrong."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tfxent.fused import linear_sparse_softmax_cross_entropy as fused

H = tf.random.normal([6, 4], seed=1)
W = tf.random.normal([4, 10], seed=2)
Y = tf.constant([0, 1, 2, 3, 4, 9])


@pytest.mark.parametrize(
    "hidden, kernel, labels, bias, error, fragment",
    [
        (H, W, Y[:, None], None, ValueError, "one dimension fewer"),
        (H[0, 0], W, Y, None, ValueError, "one dimension fewer"),
        (H, W[None], Y, None, ValueError, "kernel must be [D, V]"),
        (H, W[:3], Y, None, ValueError, "must equal kernel's first dimension"),
        (H, W, Y[:5], None, ValueError, "do not match hidden's leading dimensions"),
        (H, W, Y, tf.zeros([9]), ValueError, "bias must be [V]"),
        (H, W, tf.cast(Y, tf.float32), None, TypeError, "int32 or int64"),
        (tf.cast(H, tf.int32), W, Y, None, TypeError, "floating"),
        (H, tf.cast(W, tf.float64), Y, None, TypeError, "must match"),
    ],
)
def test_bad_tensors(hidden, kernel, labels, bias, error, fragment):
    with pytest.raises(error, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        fused(hidden, kernel, labels, bias)


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"z_loss": -1.0}, "z_loss"),
        ({"logit_soft_cap": 0.0}, "logit_soft_cap"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"gradient": "later"}, "gradient"),
    ],
)
def test_bad_options(options, fragment):
    with pytest.raises(ValueError, match=fragment):
        fused(H, W, Y, **options)


@pytest.mark.parametrize("bad", [10, -1])
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_labels_out_of_range_raise_like_tf(bad, mode):
    labels = tf.constant([0, 1, 2, 3, 4, bad])
    call = fused if mode == "eager" else tf.function(fused, autograph=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the valid range"):
        call(H, W, labels)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.matmul(H, W))


def test_ignore_index_is_not_out_of_range():
    labels = tf.constant([0, 1, 2, 3, 4, -100])
    loss = fused(H, W, labels, ignore_index=-100)
    assert float(loss[-1]) == 0.0


def test_second_order_gradient_raises():
    with tf.GradientTape() as outer:
        outer.watch(H)
        with tf.GradientTape() as inner:
            inner.watch(H)
            loss = tf.reduce_mean(fused(H, W, Y))
        first = inner.gradient(loss, H)
        assert first is not None
        total = tf.reduce_sum(first)
    with pytest.raises(LookupError, match="first-order gradients only"):
        outer.gradient(total, H)


def test_second_order_raises_in_a_graph_too():
    @tf.function(autograph=False)
    def hessian_trace(h):
        with tf.GradientTape() as outer:
            outer.watch(h)
            with tf.GradientTape() as inner:
                inner.watch(h)
                loss = tf.reduce_mean(fused(h, W, Y))
            total = tf.reduce_sum(inner.gradient(loss, h))
        return outer.gradient(total, h)

    with pytest.raises(LookupError, match="first-order gradients only"):
        hessian_trace(H)
