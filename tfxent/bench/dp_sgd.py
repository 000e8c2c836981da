"""DP-SGD-style benchmark: per-example losses and gradients through `tf.vectorized_map`.

Differentially private training (DP-SGD's vectorized optimizers) and much research code
take per-example gradients with `vectorized_map` or `GradientTape.jacobian`, which rewrite a
per-example body into one batched graph with each op's pfor rule. This case times that
for tfxent and `tf.nn` side by side in one process, on the same tensors, interleaved:

* `per-example xent`: [256, 10000] logits, each example's loss and its gradient with
  respect to its logits, for the sparse and the dense function;
* `per-example step`: a small classifier's whole DP-SGD step (a linear layer from 16
  features to the 10000 classes; per-example weight gradients, clipped to norm 1, summed,
  noised and applied), so the reader sees what share of a real step the loss is.

`rows()` returns one dict per case: median seconds per call for each side, and the
speed-up tf.nn time / tfxent time. Run as a script for a table.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import tensorflow as tf

import tfxent

BATCH, CLASSES, FEATURES = 256, 10000, 16
FUNCTIONS = {
    "sparse": (
        tfxent.nn.sparse_softmax_cross_entropy_with_logits,
        tf.nn.sparse_softmax_cross_entropy_with_logits,
    ),
    "dense": (
        tfxent.nn.softmax_cross_entropy_with_logits,
        tf.nn.softmax_cross_entropy_with_logits,
    ),
}


def _inputs(kind: str) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    features = tf.random.normal([BATCH, FEATURES], seed=1)
    logits = tf.random.normal([BATCH, CLASSES], seed=2) * 3.0
    labels = tf.random.uniform([BATCH], 0, CLASSES, tf.int32, seed=3)
    if kind == "dense":
        labels = tf.one_hot(labels, CLASSES) * 0.9 + 0.1 / CLASSES  # label-smoothed
    return features, logits, labels


def per_example_xent(fn: Callable) -> Callable:
    """Each example's loss and its gradient w.r.t. its logits, vectorized."""

    @tf.function
    def run(logits: tf.Tensor, labels: tf.Tensor):
        def one(example):
            x, y = example
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = fn(labels=y, logits=x)
            return loss, tape.gradient(loss, x)

        return tf.vectorized_map(one, (logits, labels), fallback_to_while_loop=False)

    return run


def per_example_step(fn: Callable, weights: tf.Variable, bias: tf.Variable) -> Callable:
    """One DP-SGD step of a linear classifier: per-example gradients, clipped, noised."""

    @tf.function
    def run(features: tf.Tensor, labels: tf.Tensor):
        def one(example):
            x, y = example
            with tf.GradientTape() as tape:
                logits = tf.linalg.matvec(weights, x, transpose_a=True) + bias
                loss = fn(labels=y, logits=logits)
            grads = tape.gradient(loss, [weights, bias])
            # Clip to global norm 1 (tf.clip_by_global_norm's L2Loss has no pfor rule).
            norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads]))
            return [g * tf.minimum(1.0, 1.0 / (norm + 1e-12)) for g in grads]

        grads = tf.vectorized_map(one, (features, labels), fallback_to_while_loop=False)
        # Pairs spelled out: TF 2.12's autograph rejects zip(strict=), which ruff asks for.
        for variable, grad in ((weights, grads[0]), (bias, grads[1])):
            noise = tf.random.normal(variable.shape, stddev=1.0, seed=4)
            variable.assign_sub(0.01 * (tf.reduce_sum(grad, axis=0) + noise) / BATCH)
        return tf.constant(0.0)

    return run


def _call(function: Callable, *args: tf.Tensor) -> Callable[[], list]:
    """A call of `function` that waits for its results (copies them to the host)."""
    return lambda: [t.numpy() for t in tf.nest.flatten(function(*args))]


def _median_seconds(calls: dict[str, Callable], samples: int, repeat: int) -> dict[str, float]:
    """Median seconds per call of each callable: warmed up, then sampled in turn."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(samples):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(repeat):
                call()
            times[name].append((time.perf_counter() - start) / repeat)
    return {name: statistics.median(values) for name, values in times.items()}


def rows(samples: int = 7, repeat: int = 3) -> list[dict]:
    """The DP-SGD cases, tfxent and tf.nn side by side: one dict per (case, kind)."""
    out = []
    for kind, (ours, theirs) in FUNCTIONS.items():
        features, logits, labels = _inputs(kind)
        xent = {
            "tfxent": _call(per_example_xent(ours), logits, labels),
            "tf.nn": _call(per_example_xent(theirs), logits, labels),
        }
        steps = {}
        for name, fn in (("tfxent", ours), ("tf.nn", theirs)):
            weights = tf.Variable(tf.random.normal([FEATURES, CLASSES], seed=5) * 0.1)
            bias = tf.Variable(tf.zeros([CLASSES]))
            steps[name] = _call(per_example_step(fn, weights, bias), features, labels)
        for case, calls in (("per-example xent", xent), ("per-example step", steps)):
            seconds = _median_seconds(calls, samples, repeat)
            out.append(
                {
                    "case": case,
                    "kind": kind,
                    "shape": [BATCH, CLASSES],
                    "tfxent_s": seconds["tfxent"],
                    "tf_nn_s": seconds["tf.nn"],
                    "speedup": seconds["tf.nn"] / seconds["tfxent"],
                }
            )
    for row in out:  # the loss's share of the whole step, for each side
        if row["case"] == "per-example step":
            [xent] = [
                r for r in out if r["case"] == "per-example xent" and r["kind"] == row["kind"]
            ]
            row["xent_share_tfxent"] = xent["tfxent_s"] / row["tfxent_s"]
            row["xent_share_tf_nn"] = xent["tf_nn_s"] / row["tf_nn_s"]
    return out


def main(json_path: str | None = None) -> int:
    """Print the table (and write every row to `json_path` as JSON); exit status 0."""
    results = rows()
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(results, fh, indent=1)
    print(f"{'case':18} {'kind':6} {'tfxent':>10} {'tf.nn':>10} {'nn/tfx':>7}  xent share")
    for row in results:
        share = ""
        if "xent_share_tfxent" in row:
            share = f"tfxent {row['xent_share_tfxent']:.0%}, tf.nn {row['xent_share_tf_nn']:.0%}"
        print(
            f"{row['case']:18} {row['kind']:6} {row['tfxent_s'] * 1e3:8.2f}ms "
            f"{row['tf_nn_s'] * 1e3:8.2f}ms {row['speedup']:6.2f}x  {share}"
        )

    return 0


if __name__ == "__main__":
    sys.exit(main())
