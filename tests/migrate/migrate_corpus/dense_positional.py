"""docs/migration.md row 2: positional call in the TF >= 2.12 order (names confirm it)."""
import tensorflow as tf


def loss(labels, logits):
    return tf.nn.softmax_cross_entropy_with_logits(labels, logits)
