"""Time `tfxent migrate --check` against TensorFlow's `tf_upgrade_v2 --intree` on a tree.

The tree is generated: `--files` Python files of ordinary TF 1.x code (layers, input
pipelines, training loops), most without a cross-entropy call, a few with one, and a few
with many. Each tool runs `--repeat` times on the same tree, alternating which goes first;
the medians and their ratio are printed as a Markdown table (the README quotes it). Also
timed: `python -m tfxent migrate --help`, with and without worker processes.

    python tools/bench_migrate.py --files 600 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCE = "softmax_cross_entropy_with_logits"

PLAIN_FUNCTION = '''
def block_{i}(x, units={units}, training=False):
    """A dense block with batch norm and dropout (number {i})."""
    with tf.variable_scope("block_{i}"):
        w = tf.get_variable("w", [x.shape[-1], units], initializer=tf.glorot_uniform_initializer())
        b = tf.get_variable("b", [units], initializer=tf.zeros_initializer())
        h = tf.nn.bias_add(tf.matmul(x, w), b)
        h = tf.layers.batch_normalization(h, training=training)
        h = tf.nn.relu(h)
        if training:
            h = tf.nn.dropout(h, keep_prob=0.{keep})
        tf.summary.histogram("activations_{i}", h)
        return h
'''
LOSS_FUNCTION = f'''
def loss_{{i}}(labels, logits, smoothing=0.1):
    """Cross-entropy with label smoothing (site {{i}})."""
    soft = labels * (1.0 - smoothing) + smoothing / tf.cast(tf.shape(labels)[-1], tf.float32)
    xent = tf.nn.{SCE}(labels=soft, logits=logits, dim=-1)
    sparse = tf.nn.sparse_{SCE}(labels=tf.argmax(labels, -1), logits=logits)
    return tf.reduce_mean(xent) + 0.0 * tf.reduce_mean(sparse)
'''
HEADER = '''"""Generated TF 1.x module {name} for the migrate benchmark."""
import numpy as np
import tensorflow as tf

FLAGS = tf.app.flags.FLAGS
'''
TRAIN = """
def train(dataset, steps=100):
    iterator = dataset.make_one_shot_iterator()
    features, labels = iterator.get_next()
    global_step = tf.train.get_or_create_global_step()
    optimizer = tf.train.AdamOptimizer(learning_rate=1e-3)
    with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        for step in range(steps):
            session.run(optimizer.minimize(tf.reduce_sum(features), global_step=global_step))
    return np.asarray(step)
"""


def generate(root: Path, files: int, seed: int = 0) -> dict[str, int]:
    """Write the tree; returns how many files have no call, one, or many."""
    rng = random.Random(seed)
    counts = {"no call": 0, "one call": 0, "many calls": 0}
    for n in range(files):
        package = root / f"pkg{n % 20}" / f"sub{n % 3}"
        package.mkdir(parents=True, exist_ok=True)
        kind = rng.random()
        parts = [HEADER.format(name=n)]
        blocks = rng.randint(3, 25)
        parts += [
            PLAIN_FUNCTION.format(i=i, units=rng.choice([64, 128, 256]), keep=rng.randint(5, 9))
            for i in range(blocks)
        ]
        parts.append(TRAIN)
        if kind < 0.9:
            counts["no call"] += 1
        elif kind < 0.97:
            counts["one call"] += 1
            parts.insert(rng.randint(1, blocks), LOSS_FUNCTION.format(i=0))
        else:
            counts["many calls"] += 1
            parts += [LOSS_FUNCTION.format(i=i) for i in range(25)]
        (package / f"module_{n}.py").write_text("".join(parts))
    return counts


def timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    return time.perf_counter() - start, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--tf-upgrade",
        default=shutil.which("tf_upgrade_v2")
        or str(Path(sys.executable).with_name("tf_upgrade_v2")),
        help="the tf_upgrade_v2 script (default: the one next to this Python)",
    )
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory(prefix="tfxent-bench-migrate-") as tmp:
        tree = Path(tmp) / "tree"
        counts = generate(tree, args.files)
        size = sum(p.stat().st_size for p in tree.rglob("*.py"))
        tfxent = [sys.executable, "-m", "tfxent", "migrate", "--check", "--stats", str(tree)]
        runs: dict[str, list[float]] = {"tfxent": [], "tfxent --jobs 1": [], "tf_upgrade_v2": []}
        stats = ""
        for r in range(args.repeat):
            order = ["tfxent", "tfxent --jobs 1", "tf_upgrade_v2"]
            for name in order if r % 2 == 0 else order[::-1]:
                out = Path(tmp) / f"out{r}"
                shutil.rmtree(out, ignore_errors=True)
                if name == "tf_upgrade_v2":
                    command = [args.tf_upgrade, "--intree", str(tree), "--outtree", str(out),
                               "--reportfile", str(Path(tmp) / "report.txt")]  # fmt: skip
                else:
                    command = tfxent + (["--jobs", "1"] if name.endswith("1") else [])
                seconds, done = timed(command, env)
                if name == "tf_upgrade_v2" and done.returncode != 0:
                    print(done.stderr, file=sys.stderr)
                    return 1
                if name == "tfxent":
                    stats = done.stderr
                runs[name].append(seconds)
        help_times = [
            timed([sys.executable, "-m", "tfxent", "migrate", "--help"], env)[0] for _ in range(5)
        ]
    base = statistics.median(runs["tf_upgrade_v2"])
    print(f"tree: {args.files} .py files, {size / 1e6:.1f} MB; " + ", ".join(
        f"{v} with {k}" for k, v in counts.items()))  # fmt: skip
    print(f"{args.repeat} runs each, median wall time (`tf_upgrade_v2` = 1.00)\n")
    print("| command | seconds | relative |\n|---|---:|---:|")
    for name, times in runs.items():
        label = f"`{name} --intree`" if name == "tf_upgrade_v2" else f"`{name} migrate --check`"
        label = label.replace("tfxent --jobs 1 migrate", "tfxent migrate --jobs 1")
        median = statistics.median(times)
        print(f"| {label} | {median:.2f} | {median / base:.2f} |")
    print(f"| `python -m tfxent migrate --help` | {statistics.median(help_times):.2f} | |")
    print("\n`--stats` of the last parallel tfxent run:\n")
    print("\n".join("    " + line for line in stats.splitlines() if line.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
