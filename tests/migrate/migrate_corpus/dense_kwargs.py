"""docs/migration.md row 6: a **kwargs call."""
import tensorflow as tf


def loss(labels, logits):
    kw = dict(labels=labels, logits=logits)
    return tf.nn.softmax_cross_entropy_with_logits(**kw)
