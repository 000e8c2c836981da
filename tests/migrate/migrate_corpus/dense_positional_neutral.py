"""docs/migration.md row 2: positional call whose names say nothing about the order."""
import tensorflow as tf


def loss(a, b):
    return tf.nn.softmax_cross_entropy_with_logits(a, b)
