"""Import form: `from tensorflow.nn import softmax_cross_entropy_with_logits`."""
from tensorflow.nn import softmax_cross_entropy_with_logits
import tensorflow as tf


def loss(labels, logits):
    return softmax_cross_entropy_with_logits(labels=tf.stop_gradient(labels), logits=logits)
