"""A TF 1.x-era training step, as found in legacy code: the demo migrates this file.

Distillation: the student learns from a teacher's soft labels. Under TF 1.x the labels'
gradient was stopped, so only the student trained; a plain upgrade to TF 2 lets gradient
flow into the teacher through the labels. `python -m tfxent migrate` keeps TF 1.x's meaning.
"""

import tensorflow as tf


def distillation_loss(student_logits, teacher_logits):
    soft_labels = tf.nn.softmax(teacher_logits / 2.0)
    return tf.reduce_mean(
        tf.nn.softmax_cross_entropy_with_logits(labels=soft_labels, logits=student_logits, dim=-1)
    )


def classifier_loss(logits, labels):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        _sentinel=None, labels=labels, logits=logits
    )
