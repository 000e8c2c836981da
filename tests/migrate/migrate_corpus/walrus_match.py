"""docs/migration.md row 12: a file with `match`, `:=` and f-strings."""
import tensorflow as tf


def loss(labels, logits):
    match len(labels.shape):
        case 2:
            dim = -1
        case _:
            dim = 1
    if (n := int(labels.shape[0])) > 0:
        scope = f"xent_{n}"
    return tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits, dim=dim, name=scope)
