"""Import form: compat.v1 when available, else tensorflow (both v1 in TF 1.x)."""
try:
    import tensorflow.compat.v1 as tf
except ImportError:
    import tensorflow as tf


def loss(labels, logits):
    return tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
