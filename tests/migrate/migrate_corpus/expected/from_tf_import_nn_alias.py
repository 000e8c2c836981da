"""docs/migration.md row 9: `from tensorflow import nn as tfnn`."""
from tensorflow import nn as tfnn
import tensorflow as tf


def loss(labels, logits):
    return tfnn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(labels), logits=logits)
