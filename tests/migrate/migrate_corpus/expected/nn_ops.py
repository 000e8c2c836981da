"""docs/migration.md row 13: `from tensorflow.python.ops import nn_ops`."""
import tensorflow as tf


def loss(labels, logits):
    return tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(labels), logits=logits)
