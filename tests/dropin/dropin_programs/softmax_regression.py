"""Legacy TF 1.x program: softmax regression on scikit-learn's digits, trained with SGD.

Written the way TF 1.x code was: `tf.placeholder`, `tf.Session`, `tf.nn.*` losses and an
optimizer's `minimize`. It knows nothing about tfxent. Usage:

    python softmax_regression.py --labels {dense,sparse} --steps N --out result.npz
"""

import argparse

import numpy as np
import tensorflow.compat.v1 as tf
from sklearn.datasets import load_digits

tf.disable_v2_behavior()

parser = argparse.ArgumentParser()
parser.add_argument("--labels", choices=["dense", "sparse"], default="dense")
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--out", required=True)
args = parser.parse_args()

digits = load_digits()
images = (digits.data / 16.0).astype(np.float32)
classes = digits.target.astype(np.int64)
onehot = np.eye(10, dtype=np.float32)[classes]

x = tf.placeholder(tf.float32, [None, 64], name="x")
W = tf.Variable(tf.zeros([64, 10]), name="W")
b = tf.Variable(tf.zeros([10]), name="b")
logits = tf.matmul(x, W) + b

if args.labels == "dense":
    y = tf.placeholder(tf.float32, [None, 10], name="y")
    cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits))
else:
    y = tf.placeholder(tf.int64, [None], name="y")
    cross_entropy = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    )
train_step = tf.train.GradientDescentOptimizer(0.5).minimize(cross_entropy)
correct = tf.equal(tf.argmax(logits, 1), tf.argmax(onehot, 1))
accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))

targets = onehot if args.labels == "dense" else classes
order = np.random.RandomState(0).randint(0, len(images), size=(args.steps, args.batch))
losses, weights, biases = [], [], []
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(args.steps):
        batch = order[step]
        loss, _ = sess.run([cross_entropy, train_step], {x: images[batch], y: targets[batch]})
        losses.append(loss)
        w_now, b_now = sess.run([W, b])
        weights.append(w_now)
        biases.append(b_now)
    final_accuracy = sess.run(accuracy, {x: images})
print("final training accuracy", final_accuracy)
np.savez(
    args.out,
    losses=np.array(losses),
    W=np.array(weights),
    b=np.array(biases),
    accuracy=final_accuracy,
)
