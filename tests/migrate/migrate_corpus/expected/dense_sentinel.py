"""docs/migration.md row 3: `_sentinel=None` spelled out."""
import tensorflow as tf


def loss(labels, logits):
    return tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(labels), logits=logits)
