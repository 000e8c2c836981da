"""docs/migration.md row 4: labels already stopped with tf.stop_gradient."""
import tensorflow as tf


def loss(labels, logits):
    return tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(labels), logits=logits)
