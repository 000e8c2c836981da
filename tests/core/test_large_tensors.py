"""Large tensors: N·C ≥ 2³¹ elements work, with loss-only memory and correct sampled rows.

Logits are [32768, 65540] float16 or bfloat16 (2 147 614 720 elements, 4.3 GB): every flat
index past 2³¹ needs 64-bit indexing, and rows of 65540 classes are split into class chunks.
The child process builds the logits with one tf.gather of overlapping windows (converting a
4.3 GB NumPy array would copy it twice), then checks:

* sparse loss, and dense loss with labels broadcast as [1, C] and with full one-hot [N, C]
  labels: the peak resident memory of the call grows by a few MB (the [N] loss and [N, 3]
  row statistics), not by an [N, C] term (4.3 GB, or 8.6 GB for an f32 copy);
* loss and gradient on sampled rows (the first, the last, around 2³¹/C, and random ones)
  against a float64 NumPy reference recomputed from the generating formula.

Needs about 10 GB of free memory (peak: logits + one [N, C] gradient or label tensor);
marked `long`.
"""

from __future__ import annotations

import pytest
from conftest_helpers import (
    child_env,
    last_json,
    long_only_when_selected,  # noqa: F401 - autouse fixture
    run_python,
)

N, C = 32768, 65540
NEEDED_BYTES = 11 * 2**30
# Calls whose gradient the child compares with the reference on sampled rows (dense_full
# checks the loss only: its [N, C] labels and gradient would not fit beside the logits).
GRADIENT_CHECKED = ("sparse", "dense_broadcast")
# The call may allocate the [N] loss, the [N, 3] float64 statistics and per-thread scratch.
CALL_GROWTH_LIMIT = 64 * 2**20

_CHILD = """
import json, sys
import numpy as np
import tensorflow as tf
import tfxent
from tfxent.parity.tolerance import tolerance

N, C, dtype_name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open("/proc/self/oom_score_adj", "w") as f:
    f.write("1000")  # under memory pressure, the kernel kills this test, not a neighbour
dtype = tf.as_dtype(dtype_name)
np_dtype = dtype.as_numpy_dtype
assert N * C >= 2**31

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

def peak_growth(call):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    before = status("VmRSS")
    out = call()
    return out, status("VmHWM") - before

# Row i = POOL[off_i : off_i + C] for a hashed offset: rows differ, a read from the wrong row
# or a wrapped 32-bit offset lands on other values, and any row is cheap to regenerate.
# tf.gather writes the [N, C] tensor once (a tf.Variable's sliced assign copies it on write,
# and converting a NumPy array copies it twice).
POOL = (np.random.default_rng(0).standard_normal(C + 4096) * 4).astype(np_dtype)
FRAMES = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(POOL, C))

def offsets(rows):
    return (np.asarray(rows, dtype=np.int64) * 2654435761) % 4096

def rows_of(rows):
    return FRAMES[offsets(rows)]

logits = tf.gather(tf.constant(FRAMES), tf.constant(offsets(np.arange(N)), tf.int32))
del FRAMES
FRAMES = np.lib.stride_tricks.sliding_window_view(POOL, C)
labels = np.random.default_rng(1).integers(0, C, size=N).astype(np.int32)
labels[[0, N - 1]] = [C - 1, C - 1]
labels[1] = 0
sparse_labels = tf.constant(labels)

rng = np.random.default_rng(2)
edge = (2**31) // C  # the first row whose elements lie past 2**31
sample = sorted(r for r in {0, 1, 2, N // 2, edge - 1, edge, edge + 1, N - 2, N - 1}
                | set(rng.integers(0, N, size=16).tolist()) if r < N)

def reference(rows, soft=None):
    x = rows_of(rows).astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    softmax = np.exp(x - lse[:, None])
    if soft is None:
        y = np.zeros_like(x)
        y[np.arange(len(rows)), labels[rows]] = 1.0
    else:
        y = np.broadcast_to(soft.astype(np.float64), x.shape)
    return (y * (lse[:, None] - x)).sum(axis=1), softmax - y  # TF's kernel gradient

report = {}
# Warm up (op library, thread pool) so that the measurements see only the calls.
tfxent.nn.sparse_softmax_cross_entropy_with_logits([0], tf.zeros([1, 3], dtype))
tfxent.nn.softmax_cross_entropy_with_logits(tf.ones([1, 3], dtype), tf.zeros([1, 3], dtype))

def check(name, loss, rows_loss, rows_grad=None, soft=None, sparse=False):
    tol = tolerance(dtype, sparse=sparse)
    want_loss, want_grad = reference(sample, soft)
    got_loss = np.asarray(rows_loss, np.float64)
    ok_loss = bool(np.allclose(got_loss, want_loss, rtol=tol, atol=tol))
    entry = {"loss_ok": ok_loss, "loss_max_err": float(np.max(np.abs(got_loss - want_loss)))}
    if rows_grad is not None:
        got_grad = np.asarray(rows_grad, np.float64)
        entry["grad_ok"] = bool(np.allclose(got_grad, want_grad, rtol=tol, atol=tol))
        entry["grad_max_err"] = float(np.max(np.abs(got_grad - want_grad)))
    entry["finite"] = bool(np.all(np.isfinite(np.asarray(tf.cast(loss, tf.float32)))))
    report[name] = entry

def gather_rows(t):
    return tf.cast(tf.gather(t, sample), tf.float32).numpy()

# Sparse: loss-only memory, then the gradient on sampled rows.
loss, growth = peak_growth(
    lambda: tfxent.nn.sparse_softmax_cross_entropy_with_logits(sparse_labels, logits))
report["sparse_growth"] = growth
with tf.GradientTape() as tape:
    tape.watch(logits)
    loss = tfxent.nn.sparse_softmax_cross_entropy_with_logits(sparse_labels, logits)
grad = tape.gradient(loss, logits)
check("sparse", loss, gather_rows(loss[:, None])[:, 0], gather_rows(grad), sparse=True)
del grad, tape

# Dense with labels broadcast as [1, C]: read with a zero row stride.
soft = np.exp(np.random.default_rng(3).standard_normal(C))
soft = (soft / soft.sum()).astype(np_dtype)
soft_labels = tf.constant(soft[None, :])
loss, growth = peak_growth(
    lambda: tfxent.nn.softmax_cross_entropy_with_logits(soft_labels, logits))
report["dense_broadcast_growth"] = growth
with tf.GradientTape() as tape:
    tape.watch(logits)
    loss = tfxent.nn.softmax_cross_entropy_with_logits(soft_labels, logits)
grad = tape.gradient(loss, logits)
check("dense_broadcast", loss, gather_rows(loss[:, None])[:, 0], gather_rows(grad), soft=soft)
del grad, tape

# Dense with full one-hot [N, C] labels: label offsets past 2**31 too.
one_hot = tf.one_hot(sparse_labels, C, dtype=dtype)
loss, growth = peak_growth(
    lambda: tfxent.nn.softmax_cross_entropy_with_logits(one_hot, logits))
report["dense_full_growth"] = growth
check("dense_full", loss, gather_rows(loss[:, None])[:, 0])
print(json.dumps(report))
"""


def _available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.long
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_more_than_2_pow_31_elements(dtype):
    if _available_bytes() < NEEDED_BYTES:
        pytest.skip(f"needs {NEEDED_BYTES / 2**30:.0f} GiB of free memory")
    done = run_python(_CHILD, N, C, dtype, env=child_env(), timeout=3000)
    assert done.returncode == 0, done.stderr[-4000:]
    report = last_json(done.stdout)
    print(f"{dtype}: {report}")  # shown with -s: errors and memory growth per call
    assert_report_ok(report)


def assert_report_ok(report: dict) -> None:
    """Every verdict the child must report, present and true; memory growth within bounds."""
    for name in ("sparse", "dense_broadcast", "dense_full"):
        entry = report[name]
        assert entry["finite"], (name, entry)
        assert entry["loss_ok"], (name, entry)
    # The child checks gradients on sampled rows for these calls; a missing verdict means it
    # never compared them, which must fail rather than pass.
    for name in GRADIENT_CHECKED:
        assert "grad_ok" in report[name], (name, "the child reported no gradient check")
        assert report[name]["grad_ok"], (name, report[name])
    for name in ("sparse_growth", "dense_broadcast_growth", "dense_full_growth"):
        assert report[name] < CALL_GROWTH_LIMIT, (name, report[name] / 2**20, "MiB")


def test_a_report_without_a_gradient_verdict_fails():
    good = {"finite": True, "loss_ok": True, "grad_ok": True}
    report = {"sparse": dict(good), "dense_broadcast": dict(good), "dense_full": dict(good)}
    report |= {"sparse_growth": 0, "dense_broadcast_growth": 0, "dense_full_growth": 0}
    del report["dense_full"]["grad_ok"]  # dense_full checks the loss only
    assert_report_ok(report)
    del report["sparse"]["grad_ok"]
    with pytest.raises(AssertionError, match="no gradient check"):
        assert_report_ok(report)
