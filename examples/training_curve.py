"""A TF 1.x training program whose loss curve is bit-identical with and without tfxent.

The program is ordinary graph-mode code: placeholders, a Session, plain gradient descent at a
learning rate high enough (0.3) that a one-ulp difference in any step grows into a visibly
different curve within a hundred steps. Its loss mixes every call legacy code makes: dense
and sparse, v1 and v2, and `tf.compat.v1.losses`. It trains a two-layer network on
scikit-learn's digits.

    python examples/training_curve.py            # both runs, then the comparison
    python examples/training_curve.py --steps 300

Each run happens in a fresh interpreter: one on TensorFlow alone (tfxent never imported),
one under `tfxent.patch()`. The comparison prints both curves' checkpoints and the number of
steps and weights whose bits differ: with tfxent's exact kernels, none.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

LEARNING_RATE = 0.3
HIDDEN = 32


def train(steps: int, patched: bool) -> dict:
    """Runs the program; returns every step's loss and the final weights as raw bits (hex)."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    if patched:
        import tfxent

        tfxent.patch()
    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    classes = digits.target.astype(np.int64)
    one_hot = np.eye(10, dtype=np.float32)[classes]

    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        x = tf1.placeholder(tf.float32, [None, 64])
        y_sparse = tf1.placeholder(tf.int64, [None])
        y_dense = tf1.placeholder(tf.float32, [None, 10])
        w1 = tf1.get_variable("w1", [64, HIDDEN], initializer=tf1.glorot_uniform_initializer(1))
        w2 = tf1.get_variable("w2", [HIDDEN, 10], initializer=tf1.glorot_uniform_initializer(2))
        logits = tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2)
        smooth = y_dense * 0.9 + 0.01
        loss = (
            tf.reduce_mean(tf1.nn.softmax_cross_entropy_with_logits(labels=smooth, logits=logits))
            + tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_dense, logits=logits))
            + tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_sparse, logits=logits)
            )
            + tf1.losses.softmax_cross_entropy(y_dense, logits)
            + tf1.losses.sparse_softmax_cross_entropy(y_sparse, logits)
        )
        step = tf1.train.GradientDescentOptimizer(LEARNING_RATE).minimize(loss)
        op_types = sorted(
            {t for t in (op.type for op in graph.get_operations()) if "Xent" in t or "Entropy" in t}
        )
        losses = []
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            for i in range(steps):
                batch = slice((i * 128) % 1664, (i * 128) % 1664 + 128)
                feed = {x: images[batch], y_sparse: classes[batch], y_dense: one_hot[batch]}
                losses.append(float(sess.run([loss, step], feed)[0]))
            weights = sess.run([w1, w2])
    return {
        "op_types": op_types,
        "losses": losses,
        "weights": [np.asarray(w).tobytes().hex() for w in weights],
    }


def compare(plain: dict, patched: dict) -> dict:
    """Steps whose loss differs and weights whose bits differ between the two runs."""
    losses = np.array(plain["losses"]), np.array(patched["losses"])
    weights = [np.frombuffer(bytes.fromhex(h), np.float32) for h in plain["weights"]]
    weights_p = [np.frombuffer(bytes.fromhex(h), np.float32) for h in patched["weights"]]
    return {
        "steps": len(losses[0]),
        "steps_differing": int(np.count_nonzero(losses[0] != losses[1])),
        "weights_differing": int(
            sum(
                np.count_nonzero(a.view(np.int32) != b.view(np.int32))
                for a, b in zip(weights, weights_p, strict=True)
            )
        ),
        "weights": int(sum(a.size for a in weights)),
    }


def _run_child(steps: int, patched: bool, out: str) -> dict:
    command = [sys.executable, __file__, "--child", "patched" if patched else "plain"]
    command += ["--steps", str(steps), "--out", out]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run(command, check=True, env=env)
    with open(out) as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--child", choices=["plain", "patched"])
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        with open(args.out, "w") as f:
            json.dump(train(args.steps, args.child == "patched"), f)
        return
    with tempfile.TemporaryDirectory() as tmp:
        plain = _run_child(args.steps, False, os.path.join(tmp, "plain.json"))
        patched = _run_child(args.steps, True, os.path.join(tmp, "patched.json"))
    print(f"ops: plain {plain['op_types']}, patched {patched['op_types']}")
    for i in sorted({0, 9, 49, 99, args.steps - 1}):
        if i < args.steps:
            ours, theirs = patched["losses"][i], plain["losses"][i]
            print(f"step {i + 1:4d}: plain {theirs!r:>22}  tfxent {ours!r:>22}")
    result = compare(plain, patched)
    print(
        f"{result['steps_differing']} of {result['steps']} losses and "
        f"{result['weights_differing']} of {result['weights']} weights differ in any bit"
    )
    sys.exit(0 if result["steps_differing"] == result["weights_differing"] == 0 else 1)


if __name__ == "__main__":
    main()
