"""docs/migration.md row 2: a TF 0.x call, positional (logits, labels)."""
import tensorflow as tf


def loss(labels, logits):
    return tf.nn.softmax_cross_entropy_with_logits(logits, labels)
