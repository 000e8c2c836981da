"""The machine's own limits for `tfxent bench`: streaming bandwidth BW_P and exp cost c_exp.

docs/performance.md's roofline needs both, measured in the same run as the kernels:

* BW_P: a copy with ordinary stores, dst[i] = src[i]·½ + ½, from one 1 GiB float array to
  another, split into P contiguous slices, one std::thread each; bytes counted = reads +
  writes = 2 GiB per pass; the median of 5 passes. This is the pattern of a kernel that
  writes a fresh output (the gradient) and the basis of docs/performance.md's "streaming copy
  ≈ 40 GB/s". Reported beside it, not used: an in-place read+write pass (a[i] = a[i]·½ + ½,
  2 × 1 GiB counted, no read-for-ownership of the written lines) and a read-only pass. On a
  virtual machine with few cores these differ a lot: one core's reads are limited by its
  outstanding misses, and in-place updates get their write-backs for free.
* c_exp: ns per element of `s += exp(x − m)` on one thread, over 32 Ki floats (128 KiB,
  resident in L2), repeated until ~20 ms, with four independent packet sums and the
  kernels' own exp (tfxent/cc/xent_rows.h), as the kernels' exp pass runs it.

The helper, limits.cc, ships beside this file. It is compiled once per run with the compiler
and the flags tfxent builds its op with (`CXX`, default c++; TF's compile flags plus
-O3 -march=native) and loaded with ctypes; ctypes releases the GIL, so the threads are the
helper's own. Without a compiler the same quantities are measured with TF ops (`method` says
which), which understates them: TF's exp is built for AVX, not this CPU.
"""

from __future__ import annotations

import ctypes
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from tfxent import _env

SOURCE = Path(__file__).with_name("limits.cc")
_KERNEL_SOURCES = Path(__file__).resolve().parent.parent / "cc"  # xent_rows.h
BANDWIDTH_BYTES = 1 << 30
# A re-read this much faster than streaming from memory counts as served from cache.
CACHE_SPEED_UP = 1.25
_EXP_ELEMENTS = 32 * 1024


class Helper:
    """The compiled helper, loaded with ctypes."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        f32p = ctypes.POINTER(ctypes.c_float)
        lib.tfxent_bench_inplace.argtypes = [f32p, ctypes.c_int64, ctypes.c_int]
        lib.tfxent_bench_copy.argtypes = [f32p, f32p, ctypes.c_int64, ctypes.c_int]
        lib.tfxent_bench_read.argtypes = [f32p, ctypes.c_int64, ctypes.c_int, f32p]
        lib.tfxent_bench_exp.argtypes = [
            f32p,
            ctypes.c_int64,
            ctypes.c_float,
            ctypes.c_int64,
            f32p,
        ]
        for fn in (
            lib.tfxent_bench_inplace,
            lib.tfxent_bench_copy,
            lib.tfxent_bench_read,
            lib.tfxent_bench_exp,
        ):
            fn.restype = ctypes.c_double
        self.lib = lib


def compile_helper(directory: Path) -> tuple[str | None, str]:
    """Compile limits.cc into `directory` with the compiler and flags of the custom op (TF's
    compile flags and tfxent's optimisation flags, _build), so the exp it times is the
    kernels' code as the kernels are compiled; returns (path or None, message)."""
    compiler = shutil.which(_env.value("CXX") or "c++")
    if not compiler:
        return None, "no C++ compiler (CXX); falling back to TF ops"
    import tensorflow as tf

    from tfxent import _build

    flags = (
        *_build.optimisation_flags(_build.target_features(compiler)),
        *tf.sysconfig.get_compile_flags(),
        f"-I{_KERNEL_SOURCES}",
        "-shared",
        "-pthread",
    )
    output = directory / "limits.so"
    done = subprocess.run(
        [compiler, *flags, str(SOURCE), "-o", str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-5:])
        return None, f"helper did not compile ({tail}); falling back to TF ops"
    shown = " ".join(f for f in flags if not f.startswith("-I"))
    return str(output), f"limits.cc compiled with {compiler} {shown}"


def _aligned(n: int, fill: float) -> np.ndarray:
    """n float32 values starting on a 64-byte boundary (a cache line, one AVX-512 vector),
    all written once so no page fault lands in a timed pass."""
    raw = np.empty(n + 16, dtype=np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    out = raw[skip : skip + n]
    out.fill(fill)
    return out


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def native_bandwidth(helper: Helper, threads: int, passes: int = 5) -> dict:
    """BW_P in bytes/s: median over copy passes of (reads + writes) / time; in-place and
    read-only bandwidths beside it."""
    n = BANDWIDTH_BYTES // 4
    src, dst = _aligned(n, 1.0), _aligned(n, 0.0)
    lib = helper.lib
    lib.tfxent_bench_copy(_ptr(dst), _ptr(src), n, threads)  # warm-up
    copy = [lib.tfxent_bench_copy(_ptr(dst), _ptr(src), n, threads) for _ in range(passes)]
    del dst
    inplace = [lib.tfxent_bench_inplace(_ptr(src), n, threads) for _ in range(3)]
    out = ctypes.c_float()
    read = [lib.tfxent_bench_read(_ptr(src), n, threads, ctypes.byref(out)) for _ in range(3)]
    del src
    return {
        "bw_bytes_per_s": 2 * n * 4 / statistics.median(copy),
        "bw_inplace_bytes_per_s": 2 * n * 4 / statistics.median(inplace),
        "bw_read_bytes_per_s": n * 4 / statistics.median(read),
        "bw_passes_s": copy,
    }


def native_cache_bytes(helper: Helper, llc_bytes: int) -> dict:
    """The cache a call can count on: the largest array, a power of two from 1 MiB up to
    the last-level cache sysfs reports, that one thread re-reads at least
    CACHE_SPEED_UP times faster than it streams 1 GiB. A virtual machine's sysfs reports
    the host's whole last-level cache (480 MiB on a 2-vCPU development machine), shared
    with every other tenant; measured there, 32-64 MiB stays resident."""
    lib, out = helper.lib, ctypes.c_float()

    def read_bytes_per_s(n: int, passes: int) -> float:
        a = _aligned(n, 1.0)
        lib.tfxent_bench_read(_ptr(a), n, 1, ctypes.byref(out))  # the first read fills caches
        times = [lib.tfxent_bench_read(_ptr(a), n, 1, ctypes.byref(out)) for _ in range(passes)]
        return n * 4 / statistics.median(times)

    streaming = read_bytes_per_s(BANDWIDTH_BYTES // 4, 3)
    resident, size = 0, 1 << 20
    while size <= llc_bytes:
        passes = max(3, (256 << 20) // size)
        if read_bytes_per_s(size // 4, passes) < CACHE_SPEED_UP * streaming:
            break
        resident, size = size, 2 * size
    return {"cache_bytes": resident, "bw_read_1_thread_bytes_per_s": streaming}


def native_c_exp(helper: Helper, samples: int = 7) -> dict:
    """c_exp in ns per element: median over samples of ~20 ms each, one thread."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-12.0, 0.0, _EXP_ELEMENTS).astype(np.float32)
    out = ctypes.c_float()
    out_p = ctypes.pointer(out)
    elapsed = helper.lib.tfxent_bench_exp(_ptr(x), x.size, 0.0, 10, out_p)
    repeats = max(10, int(0.02 / max(elapsed / 10, 1e-9)))
    per_element = []
    for _ in range(samples):
        elapsed = helper.lib.tfxent_bench_exp(_ptr(x), x.size, 0.0, repeats, out_p)
        per_element.append(elapsed / (repeats * x.size) * 1e9)
    return {"c_exp_ns": statistics.median(per_element), "c_exp_samples_ns": per_element}


def tf_bandwidth(threads: int, passes: int = 5) -> dict:
    """Fallback BW_P: `x * 1` from a 1 GiB tensor into a fresh one (TF's intra-op pool)."""
    import tensorflow as tf

    n = BANDWIDTH_BYTES // 4
    x = tf.ones([n], tf.float32)
    one = tf.constant(1.0)
    times = []
    for _ in range(passes + 1):
        t0 = time.perf_counter()
        y = x * one
        times.append(time.perf_counter() - t0)
        del y
    del x
    return {"bw_bytes_per_s": 2 * n * 4 / statistics.median(times[1:]), "bw_passes_s": times[1:]}


def tf_c_exp(samples: int = 7) -> dict:
    """Fallback c_exp: `reduce_sum(exp(x))` on an L2-resident array (TF's own exp)."""
    import tensorflow as tf

    x = tf.random.stateless_uniform([_EXP_ELEMENTS], [3, 4], -12.0, 0.0)
    fn = tf.function(lambda v: tf.reduce_sum(tf.exp(v)))
    fn(x)
    per_element = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(100):
            fn(x)
        per_element.append((time.perf_counter() - t0) / (100 * _EXP_ELEMENTS) * 1e9)
    return {"c_exp_ns": statistics.median(per_element), "c_exp_samples_ns": per_element}


def machine_limits(helper_path: str | None, threads: int, llc_bytes: int) -> dict:
    """BW_P, c_exp and the resident cache size for this process's thread count, with the
    method used. The fallback takes the cache size sysfs reports."""
    if helper_path:
        helper = Helper(helper_path)
        return {
            "method": "limits.cc (the kernels' exp and compile flags)",
            **native_bandwidth(helper, threads),
            **native_c_exp(helper),
            **native_cache_bytes(helper, llc_bytes),
        }
    return {
        "method": "TF ops (fallback: no compiler)",
        **tf_bandwidth(threads),
        **tf_c_exp(),
        "cache_bytes": llc_bytes,
    }
