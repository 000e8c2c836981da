"""Formatting and comments are kept; a trailing comma is kept too."""
import tensorflow as tf


def loss(labels, logits):
    # Cross-entropy over the class axis.
    per_example = tf.nn.softmax_cross_entropy_with_logits(
        labels=tf.stop_gradient(labels),  # one-hot or soft targets
        logits=logits,
        axis=-1,
    )
    return per_example  # shape [batch]
