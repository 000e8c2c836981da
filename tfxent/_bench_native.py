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
  resident in L2), repeated until ~20 ms: a Cephes-style exp (range reduction, degree-5
  polynomial, 2^k by exponent bits), written so the compiler vectorises it for this CPU
  (GCC/Clang vector extensions, -O3 -march=native), four independent sums, as tfxent's
  own kernels do.

The helper is a small C++ file compiled once per run with the compiler tfxent builds its op
with (`CXX`, default c++) and loaded with ctypes; ctypes releases the GIL, so the threads
are the helper's own. Without a compiler the same quantities are measured with TF ops
(`method` says which), which understates them: TF's exp is built for AVX, not this CPU.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

SOURCE = r"""
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace {

double Now() {
  using C = std::chrono::steady_clock;
  return std::chrono::duration<double>(C::now().time_since_epoch()).count();
}

template <typename Fn>
double Parallel(int64_t n, int threads, Fn fn) {
  std::vector<std::thread> pool;
  const double t0 = Now();
  for (int t = 0; t < threads; ++t) {
    const int64_t b = n * t / threads, e = n * (t + 1) / threads;
    pool.emplace_back([=] { fn(b, e); });
  }
  for (auto& th : pool) th.join();
  return Now() - t0;
}

// 16 floats, lowered by the compiler to this CPU's vectors (one zmm with AVX-512).
typedef float V __attribute__((vector_size(64)));
typedef int32_t VI __attribute__((vector_size(64)));

// exp(z) for z <= 0: Cephes reduction and polynomial (as Eigen's pexp_float), 2^k by bits.
inline V ExpNonPositive(V z) {
  const V lo = z - z - 87.0f;
  const V x = z < lo ? lo : z;
  const V t = x * 1.44269504088896341f + 0.5f;
  const VI ti = __builtin_convertvector(t, VI);  // truncation, then floor below
  V k = __builtin_convertvector(ti, V);
  k += __builtin_convertvector(k > t, V);  // true is -1: one less where trunc > t
  const VI ki = __builtin_convertvector(k, VI);
  V r = x - k * 0.693359375f;
  r = r + k * 2.12194440e-4f;
  const V r2 = r * r;
  V y = r * 1.9875691500e-4f + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r2 + r + 1.0f;
  return y * reinterpret_cast<V>((ki + 127) << 23);
}

}  // namespace

extern "C" {

// One in-place read+write pass over a[0, n) on `threads` threads; returns seconds.
double tfxent_bench_inplace(float* a, int64_t n, int threads) {
  return Parallel(n, threads, [a](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) a[i] = a[i] * 0.5f + 0.5f;
  });
}

// One copy pass dst[i] = src[i] * 0.5 + 0.5 (ordinary stores) on `threads` threads.
double tfxent_bench_copy(float* dst, const float* src, int64_t n, int threads) {
  return Parallel(n, threads, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dst[i] = src[i] * 0.5f + 0.5f;
  });
}

// One read-only pass summing a[0, n) on `threads` threads; stores the sum in *out.
double tfxent_bench_read(const float* a, int64_t n, int threads, float* out) {
  std::mutex lock;
  float grand = 0.0f;
  const double t = Parallel(n, threads, [a, &lock, &grand](int64_t b, int64_t e) {
    V s[4] = {};
    int64_t i = b;
    for (; i + 64 <= e; i += 64) {
      for (int u = 0; u < 4; ++u) {
        V v;
        std::memcpy(&v, a + i + 16 * u, sizeof v);
        s[u] += v;
      }
    }
    float total = 0.0f;
    for (; i < e; ++i) total += a[i];
    const V all = (s[0] + s[1]) + (s[2] + s[3]);
    for (int k = 0; k < 16; ++k) total += all[k];
    std::lock_guard<std::mutex> hold(lock);
    grand += total;
  });
  *out = grand;
  return t;
}

// `repeats` sweeps of s += exp(x_j - m) over x[0, n) on this thread, n a multiple of 64;
// returns seconds and stores the sum (so the loop cannot be optimised away).
double tfxent_bench_exp(const float* x, int64_t n, float m, int64_t repeats, float* out) {
  float total = 0.0f;
  const double t0 = Now();
  for (int64_t r = 0; r < repeats; ++r) {
    V s[4] = {};  // four independent sums cover the latency of the adds
    for (int64_t i = 0; i + 64 <= n; i += 64) {
      for (int u = 0; u < 4; ++u) {
        V v;
        std::memcpy(&v, x + i + 16 * u, sizeof v);
        s[u] += ExpNonPositive(v - m);
      }
    }
    const V all = (s[0] + s[1]) + (s[2] + s[3]);
    for (int k = 0; k < 16; ++k) total += all[k];
  }
  const double elapsed = Now() - t0;
  *out = total;
  return elapsed;
}

}  // extern "C"
"""

FLAGS = (
    "-O3",
    "-march=native",
    "-mprefer-vector-width=512",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-pthread",
)
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
    """Compile the helper into `directory`; returns (path or None, message)."""
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if not compiler:
        return None, "no C++ compiler (CXX); falling back to TF ops"
    source = directory / "bench_helper.cc"
    output = directory / "bench_helper.so"
    source.write_text(SOURCE)
    done = subprocess.run(
        [compiler, *FLAGS, str(source), "-o", str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-5:])
        return None, f"helper did not compile ({tail}); falling back to TF ops"
    return str(output), f"compiled with {compiler} {' '.join(FLAGS)}"


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


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


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
        "bw_bytes_per_s": 2 * n * 4 / _median(copy),
        "bw_inplace_bytes_per_s": 2 * n * 4 / _median(inplace),
        "bw_read_bytes_per_s": n * 4 / _median(read),
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
        return n * 4 / _median(times)

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
    return {"c_exp_ns": _median(per_element), "c_exp_samples_ns": per_element}


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
    return {"bw_bytes_per_s": 2 * n * 4 / _median(times[1:]), "bw_passes_s": times[1:]}


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
    return {"c_exp_ns": _median(per_element), "c_exp_samples_ns": per_element}


def machine_limits(helper_path: str | None, threads: int, llc_bytes: int) -> dict:
    """BW_P, c_exp and the resident cache size for this process's thread count, with the
    method used. The fallback takes the cache size sysfs reports."""
    if helper_path:
        helper = Helper(helper_path)
        return {
            "method": "native helper (C++ -O3 -march=native)",
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
