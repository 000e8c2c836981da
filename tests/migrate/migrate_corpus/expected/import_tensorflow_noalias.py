"""docs/migration.md row 11: `import tensorflow` (no alias)."""
import tensorflow


def loss(labels, logits):
    return tensorflow.nn.softmax_cross_entropy_with_logits(labels=tensorflow.stop_gradient(labels), logits=logits)
