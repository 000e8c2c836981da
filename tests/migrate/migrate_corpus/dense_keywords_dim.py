"""docs/migration.md row 1: keyword call with dim (`import tensorflow as tf`)."""
import tensorflow as tf


def loss(labels, logits):
    return tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits, dim=1)
