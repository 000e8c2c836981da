"""docs/migration.md row 9: `from tensorflow import nn as tfnn`."""
from tensorflow import nn as tfnn


def loss(labels, logits):
    return tfnn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
