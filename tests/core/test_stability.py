"""Stability: 10⁴ calls in a loop keep the process's resident memory flat.

Each loop runs in a fresh interpreter (so other tests' allocations do not blur the numbers):
after a warm-up that lets TF's allocators, caches and the tf.function trace settle, resident
memory is sampled every 1000 calls and must not grow. The inputs are sized so that leaking
anything per call that scales with the batch (the [N, 3] row statistics, a loss, a
gradient) would add tens of megabytes.
"""

from __future__ import annotations

import pytest
from conftest_helpers import child_env, last_json, run_python

CALLS = 10_000
WARMUP = 1_000
# Noise seen on TF 2.21: under 1 MiB between samples once warm. Leaking the row statistics
# alone ([256, 3] float64, 6 KiB per call) would add 60 MiB.
GROWTH_LIMIT_BYTES = 8 * 2**20

_CHILD = """
import json, sys
import numpy as np
import tensorflow as tf
import tfxent
from conftest_helpers import rss_bytes

mode, calls, every, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
logits = tf.constant(rng.standard_normal((256, 40)).astype(np.float32))
labels = tf.nn.softmax(tf.constant(rng.standard_normal((256, 40)).astype(np.float32)))
classes = tf.constant(rng.integers(0, 40, size=256))

def step(labels, logits, classes):
    with tf.GradientTape() as tape:
        tape.watch([logits, labels])
        dense = tfxent.nn.softmax_cross_entropy_with_logits(labels, logits)
        sparse = tfxent.nn.sparse_softmax_cross_entropy_with_logits(classes, logits)
        v1 = tfxent.compat.v1.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        total = tf.reduce_sum(dense) + tf.reduce_sum(sparse) + tf.reduce_sum(v1)
    grads = tape.gradient(total, [logits, labels])
    return total, grads

def forward(labels, logits, classes):
    return (
        tfxent.nn.softmax_cross_entropy_with_logits(labels, logits),
        tfxent.nn.sparse_softmax_cross_entropy_with_logits(classes, logits),
    )

if mode == "function":
    call = tf.function(step)
elif mode == "eager_gradient":
    call = step
else:
    call = forward
for _ in range(warmup):
    call(labels, logits, classes)
samples = [rss_bytes()]
expected = [t.numpy() for t in tf.nest.flatten(call(labels, logits, classes))]
for i in range(1, calls + 1):
    out = call(labels, logits, classes)
    if i % every == 0:
        samples.append(rss_bytes())
final = [t.numpy() for t in tf.nest.flatten(out)]
same = all(np.array_equal(a, b) for a, b in zip(expected, final))
print(json.dumps({"samples": samples, "same": same}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode,calls", [("eager", CALLS), ("eager_gradient", CALLS // 4), ("function", CALLS)]
)
def test_calls_in_a_loop_keep_resident_memory_flat(mode, calls):
    every = calls // 10
    done = run_python(_CHILD, mode, calls, every, WARMUP, env=child_env(), timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = last_json(done.stdout)
    samples = result["samples"]
    mib = [round(s / 2**20, 1) for s in samples]
    assert result["same"], "results changed during the loop"
    assert len(samples) == 11
    assert max(samples) - samples[0] < GROWTH_LIMIT_BYTES, f"RSS grew (MiB per sample): {mib}"
    # No steady climb either: the second half grows no more than noise.
    assert samples[-1] - samples[5] < GROWTH_LIMIT_BYTES / 2, f"RSS (MiB): {mib}"
