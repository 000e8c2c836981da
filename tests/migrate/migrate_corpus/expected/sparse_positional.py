"""Sparse positional call in the TF >= 2.12 order."""
import tensorflow as tf


def loss(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
