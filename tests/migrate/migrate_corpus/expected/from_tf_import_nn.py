"""Import form: `from tensorflow import nn` (no alias)."""
from tensorflow import nn
import tensorflow as tf


def loss(labels, logits):
    return nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(labels), logits=logits, axis=-1)
