// The machine's limits for `tfxent bench` (limits.py loads this with ctypes): streaming
// bandwidth on P threads, and the cost of the kernels' own exp on one thread.
//
// Compiled at the start of a run with the flags the custom op is built with (limits.py), so
// the exp timed here is the code the kernels run. Each function returns seconds.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "xent_rows.h"

namespace {

namespace ei = Eigen::internal;
using P = tfxent::internal::Packet<float>;
constexpr int64_t kLanes = tfxent::internal::kLanes<float>;

// The exp the kernels evaluate once per element (xent_rows.h). This is the only call of
// it here: if the kernels' exp is renamed, rename it in this one place.
inline P KernelExp(const P& z) { return tfxent::internal::RowExp(z); }

double Now() {
  using C = std::chrono::steady_clock;
  return std::chrono::duration<double>(C::now().time_since_epoch()).count();
}

// Runs fn(begin, end) on `threads` contiguous slices of [0, n), one std::thread each.
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

// Four independent packet sums: enough to cover the latency of the adds, as in the kernels.
struct Sums {
  P s[4] = {ei::pset1<P>(0.0f), ei::pset1<P>(0.0f), ei::pset1<P>(0.0f), ei::pset1<P>(0.0f)};
  float Total() const { return ei::predux(ei::padd(ei::padd(s[0], s[1]), ei::padd(s[2], s[3]))); }
};

}  // namespace

extern "C" {

// One in-place read+write pass a[i] = a[i]·½ + ½ over a[0, n) on `threads` threads.
double tfxent_bench_inplace(float* a, int64_t n, int threads) {
  return Parallel(n, threads, [a](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) a[i] = a[i] * 0.5f + 0.5f;
  });
}

// One copy pass dst[i] = src[i]·½ + ½ (ordinary stores) on `threads` threads.
double tfxent_bench_copy(float* dst, const float* src, int64_t n, int threads) {
  return Parallel(n, threads, [=](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dst[i] = src[i] * 0.5f + 0.5f;
  });
}

// One read-only pass summing a[0, n) on `threads` threads; stores the sum in *out (so the
// loop cannot be optimised away).
double tfxent_bench_read(const float* a, int64_t n, int threads, float* out) {
  std::mutex lock;
  float grand = 0.0f;
  const double t = Parallel(n, threads, [a, &lock, &grand](int64_t b, int64_t e) {
    Sums sums;
    int64_t i = b;
    for (; i + 4 * kLanes <= e; i += 4 * kLanes) {
      for (int u = 0; u < 4; ++u) {
        sums.s[u] = ei::padd(sums.s[u], ei::ploadu<P>(a + i + u * kLanes));
      }
    }
    float total = sums.Total();
    for (; i < e; ++i) total += a[i];
    std::lock_guard<std::mutex> hold(lock);
    grand += total;
  });
  *out = grand;
  return t;
}

// `repeats` sweeps of s += exp(x_j − m) over x[0, n) on this thread, n a multiple of four
// packets, with the kernels' exp; stores the sum in *out.
double tfxent_bench_exp(const float* x, int64_t n, float m, int64_t repeats, float* out) {
  const P pm = ei::pset1<P>(m);
  float total = 0.0f;
  const double t0 = Now();
  for (int64_t r = 0; r < repeats; ++r) {
    Sums sums;
    for (int64_t i = 0; i + 4 * kLanes <= n; i += 4 * kLanes) {
      for (int u = 0; u < 4; ++u) {
        const P z = ei::psub(ei::ploadu<P>(x + i + u * kLanes), pm);
        sums.s[u] = ei::padd(sums.s[u], KernelExp(z));
      }
    }
    total += sums.Total();
  }
  const double elapsed = Now() - t0;
  *out = total;
  return elapsed;
}

}  // extern "C"
