"""Legacy TF 1.x program: a small CNN on scikit-learn's 8x8 digits, trained with Adam.

The loss comes from `tf.losses` (`softmax_cross_entropy` for one-hot labels,
`sparse_softmax_cross_entropy` for class indices) plus an L2 penalty, as TF 1.x tutorials
wrote it; variables come from `tf.get_variable` with seeded initializers. Usage:

    python small_cnn.py --labels {dense,sparse} --steps N --out result.npz
"""

import argparse

import numpy as np
import tensorflow.compat.v1 as tf
from sklearn.datasets import load_digits

tf.disable_eager_execution()
tf.set_random_seed(0)

parser = argparse.ArgumentParser()
parser.add_argument("--labels", choices=["dense", "sparse"], default="dense")
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--out", required=True)
args = parser.parse_args()

digits = load_digits()
images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
classes = digits.target.astype(np.int32)


def conv_layer(inputs, channels_in, channels_out, name):
    with tf.variable_scope(name):
        kernel = tf.get_variable(
            "kernel",
            [3, 3, channels_in, channels_out],
            initializer=tf.truncated_normal_initializer(stddev=0.2, seed=1),
        )
        bias = tf.get_variable("bias", [channels_out], initializer=tf.zeros_initializer())
        conv = tf.nn.conv2d(inputs, kernel, strides=[1, 1, 1, 1], padding="SAME")
        hidden = tf.nn.relu(conv + bias)
        return tf.nn.max_pool(hidden, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")


x = tf.placeholder(tf.float32, [None, 8, 8, 1], name="x")
h1 = conv_layer(x, 1, 8, "conv1")  # 4x4x8
h2 = conv_layer(h1, 8, 16, "conv2")  # 2x2x16
flat = tf.reshape(h2, [-1, 2 * 2 * 16])
with tf.variable_scope("logits"):
    w_out = tf.get_variable(
        "kernel", [64, 10], initializer=tf.truncated_normal_initializer(stddev=0.1, seed=2)
    )
    b_out = tf.get_variable("bias", [10], initializer=tf.zeros_initializer())
    logits = tf.matmul(flat, w_out) + b_out

if args.labels == "dense":
    y = tf.placeholder(tf.int32, [None], name="y")
    data_loss = tf.losses.softmax_cross_entropy(onehot_labels=tf.one_hot(y, 10), logits=logits)
else:
    y = tf.placeholder(tf.int32, [None], name="y")
    data_loss = tf.losses.sparse_softmax_cross_entropy(labels=y, logits=logits)
l2 = 1e-4 * tf.add_n([tf.nn.l2_loss(v) for v in tf.trainable_variables() if "kernel" in v.name])
total_loss = data_loss + l2
global_step = tf.train.get_or_create_global_step()
train_op = tf.train.AdamOptimizer(1e-2).minimize(total_loss, global_step=global_step)

order = np.random.RandomState(1).randint(0, len(images), size=(args.steps, args.batch))
variables = tf.trainable_variables()
losses, snapshots = [], {v.op.name: [] for v in variables}
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(args.steps):
        batch = order[step]
        loss, _ = sess.run([total_loss, train_op], {x: images[batch], y: classes[batch]})
        losses.append(loss)
        for variable, value in zip(variables, sess.run(variables), strict=True):
            snapshots[variable.op.name].append(value)
    final_loss = sess.run(data_loss, {x: images, y: classes})
print("final training loss", final_loss)
np.savez(
    args.out,
    losses=np.array(losses),
    final_loss=final_loss,
    **{name.replace("/", "."): np.array(values) for name, values in snapshots.items()},
)
