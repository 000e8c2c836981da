"""Legacy TF 1.x program: distillation, a student trained on a teacher network's softmax.

The teacher learns the digits from their labels while the student learns from the teacher's
temperature-softened outputs, both with one `minimize` over all trainable variables. With
`--xent v1` the distillation loss is `tf.nn.softmax_cross_entropy_with_logits` (the labels'
gradient is stopped: the teacher learns only from its own labels); with `--xent v2` it is
`tf.nn.softmax_cross_entropy_with_logits_v2`, whose labels' gradient flows into the teacher
too, so the two train differently. Usage:

    python distillation.py --xent {v1,v2} --steps N --out result.npz
"""

import argparse

import numpy as np
import tensorflow.compat.v1 as tf
from sklearn.datasets import load_digits

tf.disable_eager_execution()
tf.set_random_seed(0)

parser = argparse.ArgumentParser()
parser.add_argument("--xent", choices=["v1", "v2"], default="v1")
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--temperature", type=float, default=2.0)
parser.add_argument("--out", required=True)
args = parser.parse_args()

digits = load_digits()
images = (digits.data / 16.0).astype(np.float32)
classes = digits.target.astype(np.int64)


def mlp(inputs, hidden, name, seed):
    with tf.variable_scope(name):
        init = tf.glorot_uniform_initializer(seed=seed)
        w1 = tf.get_variable("w1", [64, hidden], initializer=init)
        b1 = tf.get_variable("b1", [hidden], initializer=tf.zeros_initializer())
        w2 = tf.get_variable("w2", [hidden, 10], initializer=init)
        b2 = tf.get_variable("b2", [10], initializer=tf.zeros_initializer())
        return tf.matmul(tf.nn.tanh(tf.matmul(inputs, w1) + b1), w2) + b2


x = tf.placeholder(tf.float32, [None, 64], name="x")
y = tf.placeholder(tf.int64, [None], name="y")
teacher_logits = mlp(x, 64, "teacher", seed=3)
student_logits = mlp(x, 16, "student", seed=4)

teacher_loss = tf.reduce_mean(
    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=teacher_logits)
)
soft_targets = tf.nn.softmax(teacher_logits / args.temperature)
if args.xent == "v1":
    distill = tf.nn.softmax_cross_entropy_with_logits(
        labels=soft_targets, logits=student_logits / args.temperature
    )
else:
    distill = tf.nn.softmax_cross_entropy_with_logits_v2(
        labels=soft_targets, logits=student_logits / args.temperature
    )
distill_loss = tf.reduce_mean(distill) * args.temperature**2
total_loss = teacher_loss + distill_loss
train_op = tf.train.MomentumOptimizer(0.1, momentum=0.9).minimize(total_loss)

order = np.random.RandomState(2).randint(0, len(images), size=(args.steps, args.batch))
variables = tf.trainable_variables()
losses, snapshots = [], {v.op.name: [] for v in variables}
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(args.steps):
        batch = order[step]
        fetched = sess.run(
            [teacher_loss, distill_loss, train_op], {x: images[batch], y: classes[batch]}
        )
        losses.append(fetched[:2])
        for variable, value in zip(variables, sess.run(variables), strict=True):
            snapshots[variable.op.name].append(value)
print("final losses (teacher, distillation)", losses[-1])
np.savez(
    args.out,
    losses=np.array(losses),
    **{name.replace("/", "."): np.array(values) for name, values in snapshots.items()},
)
