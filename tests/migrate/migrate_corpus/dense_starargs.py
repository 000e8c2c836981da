"""docs/migration.md row 6: a *args call (legal only on TF >= 2.12 compat.v1)."""
import tensorflow as tf


def loss(labels, logits):
    args = (labels, logits)
    return tf.nn.softmax_cross_entropy_with_logits(*args)
