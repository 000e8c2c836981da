"""docs/migration.md row 5: labels already stopped with tf.compat.v1.stop_gradient."""
import tensorflow as tf


def loss(labels, logits):
    return tf.nn.softmax_cross_entropy_with_logits(
        labels=tf.compat.v1.stop_gradient(labels), logits=logits, dim=-1
    )
