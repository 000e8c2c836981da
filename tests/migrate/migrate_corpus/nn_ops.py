"""docs/migration.md row 13: `from tensorflow.python.ops import nn_ops`."""
from tensorflow.python.ops import nn_ops


def loss(labels, logits):
    return nn_ops.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
