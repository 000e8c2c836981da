"""Already the v2 function (tf.compat.v2 exists in TF 1.14+): nothing to do."""
import tensorflow as tf


def loss(labels, logits):
    return tf.compat.v2.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
