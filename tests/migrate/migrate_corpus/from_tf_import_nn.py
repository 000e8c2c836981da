"""Import form: `from tensorflow import nn` (no alias)."""
from tensorflow import nn


def loss(labels, logits):
    return nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits, dim=-1)
