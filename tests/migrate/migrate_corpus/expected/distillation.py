"""Distillation: labels are the teacher network's soft targets (their gradient matters)."""
import tensorflow as tf

TEMPERATURE = 2.0


def loss(teacher_logits, student_logits):
    soft_targets = tf.nn.softmax(teacher_logits / TEMPERATURE)
    return tf.nn.softmax_cross_entropy_with_logits(
        labels=tf.stop_gradient(soft_targets),  # the teacher's distribution
        logits=student_logits / TEMPERATURE,
    ) * TEMPERATURE**2
