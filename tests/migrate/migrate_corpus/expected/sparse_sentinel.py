"""docs/migration.md row 8: sparse call with `_sentinel=None`."""
import tensorflow as tf


def loss(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
