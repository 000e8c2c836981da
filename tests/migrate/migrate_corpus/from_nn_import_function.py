"""Import form: `from tensorflow.nn import softmax_cross_entropy_with_logits`."""
from tensorflow.nn import softmax_cross_entropy_with_logits


def loss(labels, logits):
    return softmax_cross_entropy_with_logits(labels=labels, logits=logits)
