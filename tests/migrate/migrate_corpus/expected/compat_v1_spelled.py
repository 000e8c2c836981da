"""Import form: `tf.compat.v1.nn.*` spelled out."""
import tensorflow as tf


def loss(labels, logits):
    return tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(labels), logits=logits)
