"""Concurrency: threads calling tfxent at once, processes racing to build an empty cache.

Threads: 8 threads with different shapes and dtypes, eager and tf.function, give bit-for-bit
the results of serial calls. Processes: 2 and 4 interpreters released together onto an empty
cache all succeed, load the same library, and the op is compiled once (a stand-in compiler
that takes seconds here; the real compiler in the `long` variant). A damaged cached library is
rebuilt by the next process, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest_helpers import (
    REPO,
    child_env,
    compiles,
    fake_compiler,
    good_library,
    last_json,
    long_only_when_selected,  # noqa: F401 - autouse fixture
)

import tfxent
from tfxent import _backend

BF16 = tf.bfloat16.as_numpy_dtype
THREADS = 8
ROUNDS = 6


def _inputs(seed: int, shape: tuple[int, ...], dtype, sparse: bool, axis: int = -1):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(shape) * 4).astype(dtype)
    classes = shape[axis]
    if sparse:
        labels = rng.integers(0, classes, size=shape[:-1]).astype(np.int64)
    else:
        raw = np.exp(rng.standard_normal(shape))
        labels = (raw / raw.sum(axis=axis, keepdims=True)).astype(dtype)
    return tf.constant(labels), tf.constant(logits)


# (name, shape, dtype, sparse, axis): every thread a different kernel instantiation.
WORK = [
    ("dense_f32", (64, 100), np.float32, False, -1),
    ("dense_f16", (33, 17), np.float16, False, -1),
    ("dense_bf16", (16, 300), BF16, False, -1),
    ("dense_f64_axis0", (7, 5, 3), np.float64, False, 0),
    ("dense_f32_chunked", (2, 40000), np.float32, False, -1),
    ("sparse_f32", (128, 10), np.float32, True, -1),
    ("sparse_bf16", (9, 1000), BF16, True, -1),
    ("sparse_f64_rank3", (4, 6, 7), np.float64, True, -1),
]


def _step(sparse: bool, axis: int):
    def step(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            if sparse:
                loss = tfxent.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            else:
                loss = tfxent.nn.softmax_cross_entropy_with_logits(labels, logits, axis=axis)
        return loss, tape.gradient(loss, logits)

    return step


def _bytes(tensors) -> list[bytes]:
    return [t.numpy().tobytes() for t in tensors]


def test_eight_threads_at_once_give_the_serial_results():
    assert _backend.choose(tf.zeros([1, 1])).backend == _backend.OP
    jobs = []
    for seed, (name, shape, dtype, sparse, axis) in enumerate(WORK):
        inputs = _inputs(seed, shape, dtype, sparse, axis)
        eager = _step(sparse, axis)
        graph = tf.function(_step(sparse, axis))
        jobs.append((name, inputs, eager, graph))
    expected = {
        name: (_bytes(eager(*inputs)), _bytes(graph(*inputs)))
        for name, inputs, eager, graph in jobs
    }
    assert len(jobs) == THREADS
    barrier = threading.Barrier(THREADS)
    results: dict[str, list] = {name: [] for name, *_ in jobs}
    errors: list[BaseException] = []

    def worker(name, inputs, eager, graph):
        try:
            barrier.wait(timeout=60)
            for _ in range(ROUNDS):
                results[name].append((_bytes(eager(*inputs)), _bytes(graph(*inputs))))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    for name, rounds in results.items():
        assert len(rounds) == ROUNDS, name
        for eager_out, graph_out in rounds:
            assert eager_out == expected[name][0], f"{name}: eager differs from serial"
            assert graph_out == expected[name][1], f"{name}: tf.function differs from serial"


def test_one_function_traced_from_eight_threads_at_once():
    """Concurrent first calls of one tf.function trace it concurrently."""
    fn = tf.function(tfxent.nn.softmax_cross_entropy_with_logits)
    labels, logits = _inputs(0, (32, 50), np.float32, False)
    expected = tfxent.nn.softmax_cross_entropy_with_logits(labels, logits).numpy().tobytes()
    barrier = threading.Barrier(THREADS)
    out: list[bytes] = []

    def worker():
        barrier.wait(timeout=60)
        out.append(fn(labels, logits).numpy().tobytes())

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert out == [expected] * THREADS


# A child that imports tfxent, waits until every sibling has imported TF, then makes its
# first call (which builds or loads the op) and reports what it loaded.
_CHILD = """
import hashlib, json, os, sys, time
from pathlib import Path
import tensorflow as tf
import tfxent
from tfxent import _build

ready = Path(sys.argv[1])
(ready / str(os.getpid())).touch()
deadline = time.monotonic() + 300
while len(list(ready.iterdir())) < int(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.02)
loss = tfxent.nn.softmax_cross_entropy_with_logits([[0.0, 1.0]], [[1.0, 2.0]])
sparse = tfxent.nn.sparse_softmax_cross_entropy_with_logits([1], [[1.0, 2.0]])
path = _build.loaded_path()
print(json.dumps({
    "loaded": path,
    "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
    "loss": float(loss[0]),
    "sparse": float(sparse[0]),
}))
"""


def _race(tmp_path: Path, processes: int, env: dict[str, str]) -> list[dict]:
    ready = Path(tempfile.mkdtemp(prefix=f"ready-{processes}-", dir=tmp_path))
    children = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_CHILD), str(ready), str(processes)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    reports = []
    for child in children:
        stdout, stderr = child.communicate(timeout=900)
        assert child.returncode == 0, f"child failed:\n{stderr[-3000:]}"
        reports.append({**last_json(stdout), "stderr": stderr})
    return reports


def _assert_compiled_once(reports: list[dict], cache: Path) -> None:
    expected = float(np.log1p(np.exp(-1.0)))  # -log softmax([1, 2])[1]
    assert {r["loaded"] for r in reports} == {reports[0]["loaded"]}
    assert reports[0]["loaded"].startswith(str(cache.resolve()))
    assert len({r["sha256"] for r in reports}) == 1
    for report in reports:
        assert report["loss"] == pytest.approx(expected, rel=1e-6)
        assert report["sparse"] == pytest.approx(expected, rel=1e-6)
    announced = sum(r["stderr"].count("tfxent: compiling the custom op") for r in reports)
    assert announced == 1, [r["stderr"][-1000:] for r in reports]


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 4])
def test_processes_starting_on_an_empty_cache_compile_once(tmp_path, processes):
    good_library()
    script, log = fake_compiler(tmp_path, sleep_s=3.0)
    cache = tmp_path / "cache"
    env = child_env(CXX=str(script), TFXENT_CACHE_DIR=str(cache), TFXENT_SANITIZE=None)
    reports = _race(tmp_path, processes, env)
    _assert_compiled_once(reports, cache)
    assert compiles(log) == 1
    assert reports[0]["sha256"] == hashlib.sha256(good_library().read_bytes()).hexdigest()


@pytest.mark.long
def test_processes_starting_on_an_empty_cache_compile_once_with_the_real_compiler(tmp_path):
    for processes in (2, 4):
        cache = tmp_path / f"cache-{processes}"
        env = child_env(TFXENT_CACHE_DIR=str(cache), TFXENT_SANITIZE=None)
        _assert_compiled_once(_race(tmp_path, processes, env), cache)


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 3)


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 4, len(data), len(data) // 8):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_damaged_cached_library_is_rebuilt_never_loaded(tmp_path):
    good_library()
    script, log = fake_compiler(tmp_path)
    cache = tmp_path / "cache"
    env = child_env(CXX=str(script), TFXENT_CACHE_DIR=str(cache), TFXENT_SANITIZE=None)
    first = _race(tmp_path, 1, env)[0]
    library = Path(first["loaded"])
    for builds, damage in enumerate((_truncate, _corrupt), start=2):
        damage(library)
        again = _race(tmp_path, 1, env)[0]
        assert again["loaded"] == first["loaded"]
        assert again["sha256"] == first["sha256"], f"the library damaged by {damage} was loaded"
        assert "refusing the cached op" in again["stderr"]
        assert "truncated or corrupted" in again["stderr"]
        assert compiles(log) == builds
