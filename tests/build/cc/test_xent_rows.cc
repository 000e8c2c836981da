// Unit tests of tfxent/cc/xent_rows.h without TensorFlow.
//
//   test_xent_rows            runs every check; exit status 0 iff all pass
//   test_xent_rows --bench    times the row functions on [8192, 32000] f32, one thread
//                             (--rows N --cols C change the shape, --threads P splits the rows,
//                             --bench-narrow adds bf16 and f16)
//
// The reference is TF's kernel formula (docs/tf_behaviour.md#dense-kernel,
// docs/tf_behaviour.md#sparse-forward, docs/tf_behaviour.md#determinism) evaluated in long double:
//   m = max_j x_j,  z_j = x_j − m,  s = Σ exp(z_j)
//   kernel loss = Σ y_j (log s − z_j)     deterministic loss = −Σ y_j (z_j − log s)
//   sparse loss = log s − z_l              grad_j = g · (exp(z_j)/s · scale − y_j)
// Long double arithmetic gives the same NaN/inf results as TF's formula, element by
// element, so the special-value cases compare against the same reference.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "tfxent/cc/xent_exact.h"
#include "tfxent/cc/xent_rows.h"

namespace {

using tfxent::RowAccumulator;
using tfxent::Widen;
using LD = long double;

// ---- A tiny check harness -----------------------------------------------------------------

int64_t g_checks = 0;
int64_t g_failures = 0;

void Fail(const std::string& what) {
  ++g_failures;
  if (g_failures <= 60) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
}

void Check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) Fail(what);
}

std::string Fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string Fmt(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof(buf), format, args);
  va_end(args);
  return buf;
}

// got agrees with want: both NaN, or equal infinities, or finite and |got − want| ≤ tol.
bool Agrees(LD got, LD want, LD tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  if (!std::isfinite(got)) return false;
  return std::fabs(got - want) <= tol;
}

void CheckClose(LD got, LD want, LD tol, const std::string& what) {
  Check(Agrees(got, want, tol), what + Fmt(": got %.10Lg want %.10Lg (tol %.3Lg, diff %.3Lg)", got,
                                           want, tol, std::fabs(got - want)));
}

// Bit-identical values of T (any NaN equals any NaN).
template <typename T>
bool SameBits(T a, T b) {
  static_assert(!std::is_same<T, LD>::value, "long double has padding bytes");
  const bool both_nan = std::isnan(static_cast<double>(a)) && std::isnan(static_cast<double>(b));
  return std::memcmp(&a, &b, sizeof(T)) == 0 || both_nan;
}

// ---- Types ----------------------------------------------------------------------------------

template <typename T>
const char* Name() {
  if (std::is_same<T, float>::value) return "float";
  if (std::is_same<T, double>::value) return "double";
  if (std::is_same<T, Eigen::half>::value) return "half";
  return "bfloat16";
}

template <typename T>
LD ToLD(T v) {
  return static_cast<LD>(static_cast<typename Widen<T>::type>(v));
}

// Unit roundoff of T (half an ulp at 1).
template <typename T>
LD Eps() {
  return static_cast<LD>(static_cast<typename Widen<T>::type>(std::numeric_limits<T>::epsilon())) /
         2;
}

template <typename T>
T Inf() {
  return static_cast<T>(std::numeric_limits<float>::infinity());
}
template <typename T>
T NaNv() {
  return static_cast<T>(std::numeric_limits<float>::quiet_NaN());
}

// ---- Deterministic pseudo-random numbers (splitmix64; the same on every platform) ----------

struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  int64_t Below(int64_t k) { return static_cast<int64_t>(Next() % static_cast<uint64_t>(k)); }
};

// ---- The long-double reference --------------------------------------------------------------

struct Ref {
  LD m, s, log_s;
  LD loss_kernel, loss_det;
  // Σ|y_j|·(1 + |log s|) + Σ|y_j z_j|: the size of the terms the loss is made of (the 1:
  // log s has an absolute error of about u·(1 + log n) whatever its size, since s ≥ 1)
  LD loss_scale;
  LD sum_y;
  LD sum_abs_y;  // Σ|y_j|: the size of the terms of Σy (signed labels cancel)
};

template <typename T, typename L>
Ref Reference(const std::vector<T>& x, const std::vector<L>& y, int64_t y_stride) {
  const int64_t n = static_cast<int64_t>(x.size());
  Ref r{};
  r.m = -std::numeric_limits<LD>::infinity();
  bool has_nan = false;
  for (int64_t j = 0; j < n; ++j) {
    const LD v = ToLD(x[j]);
    if (std::isnan(v)) has_nan = true;
    if (v > r.m) r.m = v;
  }
  if (has_nan) r.m = std::numeric_limits<LD>::quiet_NaN();
  r.s = 0;
  for (int64_t j = 0; j < n; ++j) r.s += std::exp(ToLD(x[j]) - r.m);
  r.log_s = std::log(r.s);
  LD lk = 0, ld = 0, scale = 0, sy = 0, say = 0;
  for (int64_t j = 0; j < n; ++j) {
    const LD yj = ToLD(y[j * y_stride]);
    const LD z = ToLD(x[j]) - r.m;
    lk += yj * (r.log_s - z);
    ld += yj * (z - r.log_s);
    scale += std::fabs(yj) * (1 + std::fabs(r.log_s)) + std::fabs(yj * z);
    sy += yj;
    say += std::fabs(yj);
  }
  r.loss_kernel = lk;
  r.loss_det = -ld;
  r.loss_scale = scale;
  r.sum_y = sy;
  r.sum_abs_y = say;
  return r;
}

// ---- Row generators ---------------------------------------------------------------------------

// Logits on a grid of step h in [-spread, spread], so that adding an offset that is exact in T
// keeps every value exact (shift invariance then holds bit for bit).
template <typename T>
std::vector<T> Logits(Rng& rng, int64_t n, double spread, double h, double offset) {
  std::vector<T> x(n);
  for (int64_t j = 0; j < n; ++j) {
    const double v = std::round((2 * rng.Uniform() - 1) * spread / h) * h;
    x[j] = static_cast<T>(v + offset);
  }
  return x;
}

enum class LabelKind { kOneHot, kSoft, kRandomPositive, kSigned };

template <typename L>
std::vector<L> Labels(Rng& rng, int64_t n, LabelKind kind, int64_t* hot = nullptr) {
  std::vector<L> y(n, static_cast<L>(0.0f));
  if (kind == LabelKind::kOneHot) {
    const int64_t k = rng.Below(n);
    y[k] = static_cast<L>(1.0f);
    if (hot) *hot = k;
    return y;
  }
  double total = 0;
  std::vector<double> w(n);
  for (int64_t j = 0; j < n; ++j) {
    w[j] = kind == LabelKind::kSigned ? 2 * rng.Uniform() - 1 : rng.Uniform();
    total += w[j];
  }
  for (int64_t j = 0; j < n; ++j) {
    y[j] = static_cast<L>(kind == LabelKind::kSoft ? w[j] / total : w[j]);
  }
  return y;
}

// ---- Checks -------------------------------------------------------------------------------------

// Loss tolerance: a few roundings per term of the sums, growing like log n for the blocked
// summation; relative to the size of the terms the loss is made of. The worst seen on the
// development machine (AVX-512, AVX2, SSE2 and scalar builds) is 0.63 of these units.
constexpr LD kLossUnits = 3;
template <typename A>
LD LossTol(const Ref& r, int64_t n) {
  return kLossUnits * Eps<A>() * (1 + std::log2(static_cast<LD>(n))) * r.loss_scale +
         std::numeric_limits<A>::min();
}

// The largest loss error seen, in units of u·(1 + log2 n)·(size of the terms), u = unit
// roundoff of the compute type: printed as information (the checks allow kLossUnits).
LD g_worst_loss_units = 0;
LD g_worst_split_loss_ulp = 0, g_worst_split_s_ulp = 0;

// |a − b| in ulps of b (ulp = 2u·|b|, relative).
template <typename A>
LD UlpDiff(LD a, LD b) {
  if (!std::isfinite(a) || !std::isfinite(b) || b == 0) return 0;
  return std::fabs(a - b) / (2 * Eps<A>() * std::fabs(b));
}

template <typename A>
void NoteLossError(LD got, LD want, LD scale, int64_t n) {
  if (!std::isfinite(want) || !std::isfinite(got) || scale == 0) return;
  const LD units = std::fabs(got - want) / (Eps<A>() * (1 + std::log2(static_cast<LD>(n))) * scale);
  g_worst_loss_units = std::max(g_worst_loss_units, units);
}

template <typename T, typename L>
void CheckDenseRow(const std::vector<T>& x, const std::vector<L>& y, int64_t y_stride,
                   const std::string& what) {
  using A = typename Widen<T>::type;
  const int64_t n = static_cast<int64_t>(x.size());
  const Ref r = Reference(x, y, y_stride);
  const RowAccumulator<A> acc = tfxent::AccumulateDense(x.data(), y.data(), y_stride, n);
  const LD tol = LossTol<A>(r, n);
  NoteLossError<A>(tfxent::DenseLoss(acc, false), r.loss_kernel, r.loss_scale, n);
  NoteLossError<A>(tfxent::DenseLoss(acc, true), r.loss_det, r.loss_scale, n);
  CheckClose(tfxent::DenseLoss(acc, false), r.loss_kernel, tol, what + " dense kernel loss");
  CheckClose(tfxent::DenseLoss(acc, true), r.loss_det, tol, what + " dense deterministic loss");
  if (std::isfinite(r.m)) {
    Check(acc.max == static_cast<A>(r.m), what + " max");
    CheckClose(acc.sum_exp, r.s, 4 * Eps<A>() * (1 + std::log2(static_cast<LD>(n))) * r.s,
               what + " sum_exp");
  }

  // Backprop in both modes, g = 1 and g = 0.37.
  for (int det = 0; det < 2; ++det) {
    for (double gd : {1.0, 0.37}) {
      const A g = static_cast<A>(gd);
      const A scale = det ? acc.sum_y : A(1);
      std::vector<T> grad(n);
      tfxent::WriteDenseBackprop(x.data(), y.data(), y_stride, n, acc.max, acc.sum_exp, g, scale,
                                 grad.data());
      int64_t bad = 0;
      std::string first;
      for (int64_t j = 0; j < n; ++j) {
        const LD yj = ToLD(y[j * y_stride]);
        const LD p = std::exp(ToLD(x[j]) - r.m) / r.s;
        const LD sc = det ? r.sum_y : 1;
        const LD want = static_cast<LD>(g) * (p * sc - yj);
        // float arithmetic (exp, 1/s, the scale Σy, two products) then rounding to T; the
        // sums s and Σy carry about u·(1 + log2 n) of their terms' size.
        const LD sc_size = det ? r.sum_abs_y : 1;
        const LD gtol = 8 * Eps<A>() * std::fabs(static_cast<LD>(g)) *
                            (p * sc_size * (1 + std::log2(static_cast<LD>(n))) + std::fabs(yj)) +
                        2 * Eps<T>() * std::fabs(want) +
                        ToLD(std::numeric_limits<T>::denorm_min()) + std::numeric_limits<A>::min();
        const LD got = ToLD(grad[j]);
        if (!Agrees(got, want, gtol)) {
          if (bad++ == 0) first = Fmt(" j=%" PRId64 " got %.10Lg want %.10Lg", j, got, want);
        }
      }
      ++g_checks;
      if (bad) Fail(what + Fmt(" dense grad det=%d g=%g: %" PRId64 " bad,", det, gd, bad) + first);
    }
  }
}

template <typename T>
void CheckSparseRow(const std::vector<T>& x, int64_t label, const std::string& what) {
  using A = typename Widen<T>::type;
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<T> onehot(n, static_cast<T>(0.0f));
  onehot[label] = static_cast<T>(1.0f);
  const Ref r = Reference(x, onehot, 1);
  const RowAccumulator<A> acc = tfxent::AccumulateLogits(x.data(), n);
  Check(acc.sum_y == 0 && acc.sum_y_z == 0, what + " sparse label sums are 0");
  const A loss = tfxent::SparseLoss(acc, static_cast<A>(x[label]));
  // TF's sparse formula: log s − z_l (no 0·inf from the other classes).
  const LD z_label = ToLD(x[label]) - r.m;
  const LD want = r.log_s - z_label;
  const LD scale = 1 + std::fabs(r.log_s) + std::fabs(z_label);
  const LD tol = kLossUnits * Eps<A>() * (1 + std::log2(static_cast<LD>(n))) * scale +
                 std::numeric_limits<A>::min();
  NoteLossError<A>(loss, want, scale, n);
  CheckClose(loss, want, tol, what + " sparse loss");

  // Sparse and dense with one-hot labels: the same statistics bit for bit, losses within an ulp.
  const RowAccumulator<A> dacc = tfxent::AccumulateDense(x.data(), onehot.data(), 1, n);
  Check(SameBits(acc.max, dacc.max) && SameBits(acc.sum_exp, dacc.sum_exp),
        what + " sparse and dense statistics identical");
  const A dloss = tfxent::DenseLoss(dacc, false);
  const LD ulp = std::fabs(static_cast<LD>(dloss)) * 2 * Eps<A>() + std::numeric_limits<A>::min();
  if (!std::isnan(r.loss_kernel) || std::isnan(want)) {  // dense is NaN where a −inf meets y = 0
    CheckClose(loss, dloss, 2 * ulp, what + " sparse vs dense one-hot loss");
  }

  // Backprop: sparse equals dense one-hot bit for bit, for every g.
  for (double gd : {1.0, -0.37}) {
    const A g = static_cast<A>(gd);
    std::vector<T> gs(n), gdn(n);
    tfxent::WriteSparseBackprop(x.data(), n, label, acc.max, acc.sum_exp, g, gs.data());
    tfxent::WriteDenseBackprop(x.data(), onehot.data(), 1, n, acc.max, acc.sum_exp, g, A(1),
                               gdn.data());
    int64_t diff = 0;
    for (int64_t j = 0; j < n; ++j) diff += !SameBits(gs[j], gdn[j]);
    Check(diff == 0, what + Fmt(" sparse grad == dense one-hot grad (%" PRId64 " differ)", diff));
  }
}

// A row split into runs [0, c1), [c1, c2), ... merged left to right equals the unsplit row:
// max exactly, sums within a couple of ulp; and the backprop written run by run equals the
// backprop of the whole row bit for bit (a class's value does not depend on its lane).
template <typename T, typename L>
void CheckSplit(const std::vector<T>& x, const std::vector<L>& y, int64_t y_stride,
                const std::vector<int64_t>& cuts, const std::string& what) {
  using A = typename Widen<T>::type;
  const int64_t n = static_cast<int64_t>(x.size());
  const RowAccumulator<A> whole = tfxent::AccumulateDense(x.data(), y.data(), y_stride, n);
  RowAccumulator<A> merged = tfxent::AccumulateDense(x.data(), y.data(), y_stride, 0);
  int64_t begin = 0;
  std::vector<int64_t> ends = cuts;
  ends.push_back(n);
  for (int64_t end : ends) {
    const RowAccumulator<A> part = tfxent::AccumulateDense(
        x.data() + begin, y.data() + begin * y_stride, y_stride, end - begin);
    const RowAccumulator<A> m1 = tfxent::Merge(merged, part);
    const RowAccumulator<A> m2 = tfxent::Merge(part, merged);
    Check(SameBits(m1.max, m2.max) && SameBits(m1.sum_exp, m2.sum_exp) &&
              SameBits(m1.sum_y, m2.sum_y) && SameBits(m1.sum_y_z, m2.sum_y_z),
          what + " Merge is commutative bit for bit");
    merged = m1;
    begin = end;
  }
  const LD eps = Eps<A>();
  const LD logn = 1 + std::log2(static_cast<LD>(n));
  const LD slack = 2 * eps * logn;  // (1 + log2 n) ulp; 2.3 ulp is the worst seen
  Check(SameBits(merged.max, whole.max), what + " split max");
  g_worst_split_s_ulp = std::max(g_worst_split_s_ulp, UlpDiff<A>(merged.sum_exp, whole.sum_exp));
  const LD loss_ulp = UlpDiff<A>(tfxent::DenseLoss(merged, false), tfxent::DenseLoss(whole, false));
  g_worst_split_loss_ulp = std::max(g_worst_split_loss_ulp, loss_ulp);
  CheckClose(merged.sum_exp, whole.sum_exp, slack * std::fabs(static_cast<LD>(whole.sum_exp)),
             what + " split sum_exp");
  const Ref r = Reference(x, y, y_stride);
  for (int det = 0; det < 2; ++det) {
    const LD a = tfxent::DenseLoss(merged, det);
    const LD b = tfxent::DenseLoss(whole, det);
    CheckClose(a, b, slack * (r.loss_scale + std::fabs(b)) + std::numeric_limits<A>::min(),
               what + Fmt(" split loss det=%d", det));
  }
  if (!std::isfinite(static_cast<LD>(whole.sum_exp))) return;
  const A g = static_cast<A>(0.75);
  std::vector<T> g_whole(n), g_runs(n);
  tfxent::WriteDenseBackprop(x.data(), y.data(), y_stride, n, whole.max, whole.sum_exp, g, A(1),
                             g_whole.data());
  begin = 0;
  for (int64_t end : ends) {
    tfxent::WriteDenseBackprop(x.data() + begin, y.data() + begin * y_stride, y_stride, end - begin,
                               whole.max, whole.sum_exp, g, A(1), g_runs.data() + begin);
    begin = end;
  }
  int64_t diff = 0;
  for (int64_t j = 0; j < n; ++j) diff += !SameBits(g_whole[j], g_runs[j]);
  Check(diff == 0, what + Fmt(" backprop by runs == whole row (%" PRId64 " differ)", diff));
}

template <typename A>
std::vector<int64_t> Lengths() {
  const int64_t w = tfxent::internal::kLanes<A>;
  const int64_t u = tfxent::internal::kUnroll;
  const int64_t b = tfxent::internal::kBlock;
  std::vector<int64_t> lens = {1,         2,         3,     w - 1,     w,     w + 1,
                               2 * w + 3, u * w - 1, u * w, u * w + 1, b - 1, b,
                               b + 1,     2 * b + 5, 1001,  3 * b - 1, 32001};
  std::vector<int64_t> out;
  for (int64_t n : lens) {
    if (n >= 1) out.push_back(n);
  }
  return out;
}

template <typename T>
void TestRandomRows() {
  using A = typename Widen<T>::type;
  Rng rng(0x5eed0001 + sizeof(T));
  for (int64_t n : Lengths<A>()) {
    for (LabelKind kind :
         {LabelKind::kOneHot, LabelKind::kSoft, LabelKind::kRandomPositive, LabelKind::kSigned}) {
      const std::vector<T> x = Logits<T>(rng, n, 8.0, 1.0 / 64, 0.0);
      const std::vector<T> y = Labels<T>(rng, n, kind);
      const std::string what = Fmt("%s n=%" PRId64 " labels=%d", Name<T>(), n, int(kind));
      CheckDenseRow(x, y, 1, what);
      const std::vector<T> y0 = {static_cast<T>(kind == LabelKind::kSigned ? -0.25f : 0.5f)};
      CheckDenseRow(x, y0, 0, what + " y_stride=0");
    }
    const std::vector<T> x = Logits<T>(rng, n, 30.0, 1.0 / 64, 0.0);
    CheckSparseRow(x, rng.Below(n), Fmt("%s n=%" PRId64, Name<T>(), n));
    CheckSparseRow(x, n - 1, Fmt("%s n=%" PRId64 " last label", Name<T>(), n));
  }
  // Labels of another type than the logits, widened the same way (a few pairs: each pair
  // is another instantiation of every row function, and compile time adds up).
  const std::vector<T> x = Logits<T>(rng, 1001, 8.0, 1.0 / 64, 0.0);
  if constexpr (std::is_same<T, float>::value) {
    CheckDenseRow(x, Labels<double>(rng, 1001, LabelKind::kSoft), 1, "float, labels double");
    CheckDenseRow(x, Labels<Eigen::half>(rng, 1001, LabelKind::kSoft), 1, "float, labels half");
    CheckDenseRow(x, Labels<Eigen::bfloat16>(rng, 1001, LabelKind::kSoft), 1,
                  "float, labels bfloat16");
  } else if constexpr (std::is_same<T, Eigen::bfloat16>::value) {
    CheckDenseRow(x, Labels<float>(rng, 1001, LabelKind::kSoft), 1, "bfloat16, labels float");
  }
}

// Gradient rows of labels summing to 1 sum to ~0 (kernel mode), and to ~0 in deterministic
// mode for any labels.
template <typename T>
void TestGradientSums() {
  using A = typename Widen<T>::type;
  Rng rng(0x5eed0002);
  for (int64_t n : {int64_t{7}, int64_t{1001}, int64_t{32001}}) {
    for (int det = 0; det < 2; ++det) {
      const std::vector<T> x = Logits<T>(rng, n, 8.0, 1.0 / 64, 0.0);
      const std::vector<T> y =
          Labels<T>(rng, n, det ? LabelKind::kRandomPositive : LabelKind::kOneHot);
      const RowAccumulator<A> acc = tfxent::AccumulateDense(x.data(), y.data(), 1, n);
      std::vector<T> grad(n);
      tfxent::WriteDenseBackprop(x.data(), y.data(), 1, n, acc.max, acc.sum_exp, A(1),
                                 det ? acc.sum_y : A(1), grad.data());
      LD sum = 0, mass = 0;
      for (int64_t j = 0; j < n; ++j) {
        sum += ToLD(grad[j]);
        mass += std::fabs(ToLD(grad[j]));
      }
      const LD tol = (8 * Eps<A>() * (1 + std::log2(static_cast<LD>(n))) + 2 * Eps<T>()) *
                     (mass + std::fabs(static_cast<LD>(acc.sum_y)));
      CheckClose(sum, 0, tol,
                 Fmt("%s n=%" PRId64 " det=%d gradient row sums to 0", Name<T>(), n, det));
    }
  }
}

// Shift invariance: x + c, with c exact in T and x on a grid that stays exact, gives the same
// loss and gradient as x: every subtraction x_j − m is exact, so bit for bit.
template <typename T>
void TestShiftInvariance() {
  using A = typename Widen<T>::type;
  struct Case {
    double h, offset;
  };
  std::vector<Case> cases;
  if (std::is_same<T, float>::value) {
    cases = {{1.0 / 1024, 1024.0}, {1.0 / 1024, -1024.0}, {1.0 / 8, 1048576.0}};
  } else if (std::is_same<T, double>::value) {
    cases = {{1.0 / 1048576, 1073741824.0}, {1.0 / 1024, -1e3}, {1.0 / 1024, 1024.0}};
  } else if (std::is_same<T, Eigen::half>::value) {
    cases = {{0.25, 256.0}, {0.25, -256.0}};
  } else {
    cases = {{0.5, 64.0}, {0.5, -64.0}};
  }
  Rng rng(0x5eed0003);
  for (const Case& c : cases) {
    for (int64_t n : {int64_t{5}, int64_t{33}, int64_t{1001}, int64_t{32001}}) {
      Rng r1 = rng;
      const std::vector<T> x = Logits<T>(r1, n, 8.0, c.h, 0.0);
      Rng r2 = rng;
      const std::vector<T> xs = Logits<T>(r2, n, 8.0, c.h, c.offset);
      rng = r1;
      for (int64_t j = 0; j < n; ++j) {
        if (ToLD(xs[j]) != ToLD(x[j]) + static_cast<LD>(c.offset)) {
          Fail(Fmt("%s shift test setup: inexact offset", Name<T>()));
          return;
        }
      }
      int64_t hot = 0;
      const std::vector<T> y = Labels<T>(rng, n, LabelKind::kSoft);
      const std::vector<T> yh = Labels<T>(rng, n, LabelKind::kOneHot, &hot);
      const std::string what = Fmt("%s n=%" PRId64 " offset %g", Name<T>(), n, c.offset);
      const RowAccumulator<A> a = tfxent::AccumulateDense(x.data(), y.data(), 1, n);
      const RowAccumulator<A> b = tfxent::AccumulateDense(xs.data(), y.data(), 1, n);
      for (int det = 0; det < 2; ++det) {
        const LD la = tfxent::DenseLoss(a, det), lb = tfxent::DenseLoss(b, det);
        CheckClose(lb, la, 2 * Eps<A>() * std::fabs(la), what + Fmt(" dense loss det=%d", det));
      }
      const RowAccumulator<A> sa = tfxent::AccumulateLogits(x.data(), n);
      const RowAccumulator<A> sb = tfxent::AccumulateLogits(xs.data(), n);
      const LD la = tfxent::SparseLoss(sa, static_cast<A>(x[hot]));
      const LD lb = tfxent::SparseLoss(sb, static_cast<A>(xs[hot]));
      CheckClose(lb, la, 2 * Eps<A>() * std::fabs(la), what + " sparse loss");
      std::vector<T> ga(n), gb(n);
      tfxent::WriteDenseBackprop(x.data(), y.data(), 1, n, a.max, a.sum_exp, A(1), A(1), ga.data());
      tfxent::WriteDenseBackprop(xs.data(), y.data(), 1, n, b.max, b.sum_exp, A(1), A(1),
                                 gb.data());
      int64_t diff = 0;
      for (int64_t j = 0; j < n; ++j) {
        const LD d = std::fabs(ToLD(ga[j]) - ToLD(gb[j]));
        diff += d > 2 * Eps<T>() * std::fabs(ToLD(ga[j]));
      }
      Check(diff == 0, what + Fmt(" gradient (%" PRId64 " differ)", diff));
    }
  }
}

template <typename T>
void TestSplits() {
  Rng rng(0x5eed0004);
  const int64_t w = tfxent::internal::kLanes<typename Widen<T>::type>;
  const int64_t b = tfxent::internal::kBlock;
  for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{1001}, int64_t{3 * 512 + 7}, int64_t{32001}}) {
    std::vector<std::vector<int64_t>> splits = {{0}, {n / 2}, {n}};
    if (n > 3) splits.push_back({1, 2, n / 3, n / 3, n - 1});  // includes an empty run
    if (n > b) splits.push_back({b, 2 * b > n ? n : 2 * b});
    if (n > w + 3) splits.push_back({w - 1, w + 3});
    std::vector<int64_t> many;
    for (int64_t c = 97; c < n; c += 97 + rng.Below(300)) many.push_back(c);
    splits.push_back(many);
    const std::vector<T> x = Logits<T>(rng, n, 12.0, 1.0 / 64, 0.0);
    const std::vector<T> y = Labels<T>(rng, n, LabelKind::kSoft);
    const std::vector<T> y0 = {static_cast<T>(0.5f)};
    for (size_t k = 0; k < splits.size(); ++k) {
      const std::string what = Fmt("%s n=%" PRId64 " split#%zu", Name<T>(), n, k);
      CheckSplit(x, y, 1, splits[k], what);
      CheckSplit(x, y0, 0, splits[k], what + " y_stride=0");
    }
  }
}

// Empty runs and Merge identities.
template <typename T>
void TestMergeIdentities() {
  using A = typename Widen<T>::type;
  const A ninf = -std::numeric_limits<A>::infinity();
  const RowAccumulator<A> empty = tfxent::AccumulateDense<T, T>(nullptr, nullptr, 1, 0);
  Check(empty.max == ninf && empty.sum_exp == 0 && empty.sum_y == 0 && empty.sum_y_z == 0,
        Fmt("%s empty dense run", Name<T>()));
  const RowAccumulator<A> empty_b = tfxent::AccumulateDense<T, T>(nullptr, nullptr, 0, 0);
  Check(empty_b.max == ninf && empty_b.sum_exp == 0, Fmt("%s empty broadcast run", Name<T>()));
  const RowAccumulator<A> empty_s = tfxent::AccumulateLogits<T>(nullptr, 0);
  Check(empty_s.max == ninf && empty_s.sum_exp == 0, Fmt("%s empty sparse run", Name<T>()));
  Rng rng(0x5eed0005);
  const std::vector<T> x = Logits<T>(rng, 100, 8.0, 1.0 / 64, 0.0);
  const std::vector<T> y = Labels<T>(rng, 100, LabelKind::kSoft);
  const RowAccumulator<A> a = tfxent::AccumulateDense(x.data(), y.data(), 1, 100);
  for (const RowAccumulator<A>& m : {tfxent::Merge(a, empty), tfxent::Merge(empty, a)}) {
    Check(SameBits(m.max, a.max) && SameBits(m.sum_exp, a.sum_exp) && SameBits(m.sum_y, a.sum_y) &&
              SameBits(m.sum_y_z, a.sum_y_z),
          Fmt("%s Merge with an empty run is exact", Name<T>()));
  }
  const RowAccumulator<A> ee = tfxent::Merge(empty, empty);
  Check(ee.max == ninf && ee.sum_exp == 0 && ee.sum_y == 0 && ee.sum_y_z == 0,
        Fmt("%s Merge of two empty runs", Name<T>()));
}

// Backprop of a run that does not contain the sparse label: no one-hot term.
template <typename T>
void TestLabelOutsideRun() {
  using A = typename Widen<T>::type;
  Rng rng(0x5eed0006);
  const int64_t n = 53;
  const std::vector<T> x = Logits<T>(rng, n, 8.0, 1.0 / 64, 0.0);
  const RowAccumulator<A> acc = tfxent::AccumulateLogits(x.data(), n);
  const std::vector<T> zeros(n, static_cast<T>(0.0f));
  std::vector<T> want(n);
  tfxent::WriteDenseBackprop(x.data(), zeros.data(), 1, n, acc.max, acc.sum_exp, A(0.5), A(1),
                             want.data());
  for (int64_t label : {int64_t{-1}, int64_t{-1000}, n, n + 7, int64_t{1} << 40}) {
    std::vector<T> got(n, static_cast<T>(123.0f));
    tfxent::WriteSparseBackprop(x.data(), n, label, acc.max, acc.sum_exp, A(0.5), got.data());
    int64_t diff = 0;
    for (int64_t j = 0; j < n; ++j) diff += !SameBits(got[j], want[j]);
    Check(diff == 0, Fmt("%s label %" PRId64 " outside run [0, %" PRId64 ")", Name<T>(), label, n));
  }
  // Only the run holding the label gets the −g; the other runs are softmax · g.
  const int64_t label = 40;
  std::vector<T> whole(n), runs(n);
  tfxent::WriteSparseBackprop(x.data(), n, label, acc.max, acc.sum_exp, A(0.5), whole.data());
  for (int64_t b0 : {int64_t{0}, int64_t{17}, int64_t{39}, int64_t{41}}) {
    const int64_t b1 = b0 == 0 ? 17 : (b0 == 17 ? 39 : (b0 == 39 ? 41 : n));
    tfxent::WriteSparseBackprop(x.data() + b0, b1 - b0, label - b0, acc.max, acc.sum_exp, A(0.5),
                                runs.data() + b0);
  }
  int64_t diff = 0;
  for (int64_t j = 0; j < n; ++j) diff += !SameBits(whole[j], runs[j]);
  Check(diff == 0, Fmt("%s sparse backprop by runs == whole row", Name<T>()));
}

// The backprop writes exactly its run: sentinels on both sides survive, for every length
// around the vector width and the block size (the tail store is a masked or partial one).
template <typename T>
void TestWritesStayInRun() {
  using A = typename Widen<T>::type;
  const int64_t w = tfxent::internal::kLanes<A>;
  const T sentinel = static_cast<T>(-123.0f);
  Rng rng(0x5eed0008);
  for (int64_t n : Lengths<A>()) {
    const std::vector<T> x = Logits<T>(rng, n, 8.0, 1.0 / 64, 0.0);
    const std::vector<T> y = Labels<T>(rng, n, LabelKind::kSoft);
    const RowAccumulator<A> acc = tfxent::AccumulateDense(x.data(), y.data(), 1, n);
    for (int sparse = 0; sparse < 2; ++sparse) {
      std::vector<T> buf(n + 2 * w, sentinel);
      T* grad = buf.data() + w;
      if (sparse) {
        tfxent::WriteSparseBackprop(x.data(), n, n / 2, acc.max, acc.sum_exp, A(1), grad);
      } else {
        tfxent::WriteDenseBackprop(x.data(), y.data(), 1, n, acc.max, acc.sum_exp, A(1), A(1),
                                   grad);
      }
      int64_t touched = 0, written = 0;
      for (int64_t j = 0; j < w; ++j) {
        touched += !SameBits(buf[j], sentinel);
        touched += !SameBits(buf[w + n + j], sentinel);
      }
      for (int64_t j = 0; j < n; ++j) written += !SameBits(grad[j], sentinel);
      Check(touched == 0 && written == n,
            Fmt("%s n=%" PRId64 " %s backprop writes [0, n) only (%" PRId64 " outside, %" PRId64
                " of n inside)",
                Name<T>(), n, sparse ? "sparse" : "dense", touched, written));
    }
  }
}

// ---- Two runs interleaved (the *Pair functions) -----------------------------------------------

template <typename A>
bool SameStats(const RowAccumulator<A>& a, const RowAccumulator<A>& b) {
  return SameBits(a.max, b.max) && SameBits(a.sum_exp, b.sum_exp) && SameBits(a.sum_y, b.sum_y) &&
         SameBits(a.sum_y_z, b.sum_y_z);
}

// A row of n logits of one of four kinds: random; ascending (the running max grows in every
// block); with a NaN; with a leading block of −inf (the running max starts at −inf).
template <typename T>
std::vector<T> PairRow(Rng& rng, int64_t n, int kind) {
  std::vector<T> x = Logits<T>(rng, n, 8.0, 1.0 / 64, 0.0);
  if (kind == 1) std::sort(x.begin(), x.end(), [](T a, T b) { return ToLD(a) < ToLD(b); });
  if (kind == 2 && n > 0) x[rng.Below(n)] = NaNv<T>();
  if (kind == 3) {
    const int64_t lead = std::min(n, tfxent::internal::kBlock + 3);
    const T ninf = static_cast<T>(-std::numeric_limits<float>::infinity());
    for (int64_t j = 0; j < lead; ++j) x[j] = ninf;
  }
  return x;
}

// The pair functions return, bit for bit, what one call per run returns, for runs of any two
// lengths (one of them possibly empty, whose labels are then never read).
template <typename T>
void TestPairs() {
  using A = typename Widen<T>::type;
  Rng rng(0x5eed0009);
  const int64_t w = tfxent::internal::kLanes<A>;
  const int64_t b = tfxent::internal::kBlock;
  const std::vector<int64_t> lengths = {0, 1, w + 1, b - 1, b, b + 1, 2 * b + 5, 1001, 32001};
  int64_t mismatches = 0, pairs = 0;
  for (int64_t n_a : lengths) {
    for (int64_t n_b : lengths) {
      const int kind = static_cast<int>(rng.Below(4));
      const std::vector<T> x_a = PairRow<T>(rng, n_a, kind), x_b = PairRow<T>(rng, n_b, 3 - kind);
      const std::vector<T> y_a = Labels<T>(rng, std::max<int64_t>(n_a, 1), LabelKind::kSoft);
      const std::vector<T> y_b = Labels<T>(rng, std::max<int64_t>(n_b, 1), LabelKind::kSigned);
      // An empty run's labels are passed as nullptr: reading them would crash.
      const T* ya = n_a > 0 ? y_a.data() : nullptr;
      const T* yb = n_b > 0 ? y_b.data() : nullptr;
      for (int64_t y_stride : {int64_t{1}, int64_t{0}}) {
        const auto pair =
            tfxent::AccumulateDensePair(x_a.data(), ya, n_a, x_b.data(), yb, n_b, y_stride);
        mismatches += !SameStats(pair[0], tfxent::AccumulateDense(x_a.data(), ya, y_stride, n_a));
        mismatches += !SameStats(pair[1], tfxent::AccumulateDense(x_b.data(), yb, y_stride, n_b));
        pairs += 2;
      }
      const auto pair = tfxent::AccumulateLogitsPair(x_a.data(), n_a, x_b.data(), n_b);
      mismatches += !SameStats(pair[0], tfxent::AccumulateLogits(x_a.data(), n_a));
      mismatches += !SameStats(pair[1], tfxent::AccumulateLogits(x_b.data(), n_b));
      pairs += 2;
    }
  }
  Check(mismatches == 0,
        Fmt("%s pair statistics bit-identical to single runs (%" PRId64 " of %" PRId64 " differ)",
            Name<T>(), mismatches, pairs));
}

// ---- IEEE special values (docs/tf_behaviour.md#sparse-forward, docs/tf_behaviour.md#numerics;
// the reference reproduces TF's formula) ----------------

template <typename T>
void CheckAllNaN(const std::vector<T>& v, const std::string& what) {
  int64_t ok = 0;
  for (const T& e : v) ok += std::isnan(ToLD(e));
  Check(ok == static_cast<int64_t>(v.size()),
        what + Fmt(" (%" PRId64 " of %zu NaN)", ok, v.size()));
}

template <typename T>
void TestSpecialValues() {
  using A = typename Widen<T>::type;
  const T inf = Inf<T>(), nan = NaNv<T>();
  const T ninf = static_cast<T>(-std::numeric_limits<float>::infinity());
  Rng rng(0x5eed0007);
  const int64_t b = tfxent::internal::kBlock;
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{17}, int64_t{b + 3}, int64_t{2 * b + 19}}) {
    for (int64_t pos : {int64_t{0}, n / 2, n - 1}) {
      const std::string where = Fmt("%s n=%" PRId64 " pos=%" PRId64, Name<T>(), n, pos);
      std::vector<T> x = Logits<T>(rng, n, 8.0, 1.0 / 64, 0.0);
      int64_t hot = 0;
      const std::vector<T> y = Labels<T>(rng, n, LabelKind::kOneHot, &hot);
      const std::vector<T> ys = Labels<T>(rng, n, LabelKind::kSoft);

      // +inf and NaN logits: NaN loss, NaN gradient everywhere (dense and sparse).
      for (T special : {inf, nan}) {
        std::vector<T> xs = x;
        xs[pos] = special;
        const std::string what = where + (std::isnan(ToLD(special)) ? " NaN" : " +inf");
        const RowAccumulator<A> acc = tfxent::AccumulateDense(xs.data(), ys.data(), 1, n);
        Check(std::isnan(tfxent::DenseLoss(acc, false)), what + " dense loss NaN");
        Check(std::isnan(tfxent::DenseLoss(acc, true)), what + " dense det loss NaN");
        CheckDenseRow(xs, ys, 1, what);
        std::vector<T> grad(n);
        tfxent::WriteDenseBackprop(xs.data(), ys.data(), 1, n, acc.max, acc.sum_exp, A(1), A(1),
                                   grad.data());
        CheckAllNaN(grad, what + " dense grad NaN");
        const RowAccumulator<A> sacc = tfxent::AccumulateLogits(xs.data(), n);
        Check(std::isnan(tfxent::SparseLoss(sacc, static_cast<A>(xs[hot]))),
              what + " sparse loss NaN");
        tfxent::WriteSparseBackprop(xs.data(), n, hot, sacc.max, sacc.sum_exp, A(1), grad.data());
        CheckAllNaN(grad, what + " sparse grad NaN");
      }

      // Every logit −inf: NaN.
      {
        const std::vector<T> xs(n, ninf);
        const RowAccumulator<A> acc = tfxent::AccumulateDense(xs.data(), ys.data(), 1, n);
        Check(std::isnan(tfxent::DenseLoss(acc, false)) && std::isnan(tfxent::DenseLoss(acc, true)),
              where + " all -inf: dense loss NaN");
        CheckDenseRow(xs, ys, 1, where + " all -inf");
        const RowAccumulator<A> sacc = tfxent::AccumulateLogits(xs.data(), n);
        Check(std::isnan(tfxent::SparseLoss(sacc, static_cast<A>(xs[hot]))),
              where + " all -inf: sparse loss NaN");
        std::vector<T> grad(n);
        tfxent::WriteSparseBackprop(xs.data(), n, hot, sacc.max, sacc.sum_exp, A(1), grad.data());
        CheckAllNaN(grad, where + " all -inf sparse grad NaN");
      }

      if (n < 2) continue;
      // One −inf logit: dense loss NaN with label 0 there (0·inf), +inf with a positive
      // label; sparse finite when it is not the label's class.
      std::vector<T> xs = x;
      xs[pos] = ninf;
      {
        std::vector<T> y1 = y;
        if (hot == pos) std::swap(y1[pos], y1[(pos + 1) % n]);  // label 0 at pos
        const RowAccumulator<A> acc = tfxent::AccumulateDense(xs.data(), y1.data(), 1, n);
        Check(std::isnan(tfxent::DenseLoss(acc, false)), where + " -inf with label 0: NaN");
        CheckDenseRow(xs, y1, 1, where + " -inf with label 0");
        const int64_t label = (pos + 1) % n;
        const RowAccumulator<A> sacc = tfxent::AccumulateLogits(xs.data(), n);
        const A sl = tfxent::SparseLoss(sacc, static_cast<A>(xs[label]));
        Check(std::isfinite(sl), where + " sparse -inf at a non-label class: finite");
        CheckSparseRow(xs, label, where + " sparse -inf elsewhere");
        std::vector<T> grad(n);
        tfxent::WriteSparseBackprop(xs.data(), n, label, sacc.max, sacc.sum_exp, A(1), grad.data());
        Check(ToLD(grad[pos]) == 0, where + " sparse grad at the -inf class is 0");
      }
      {
        std::vector<T> y2(n, static_cast<T>(0.5f / n));
        y2[pos] = static_cast<T>(0.5f);
        const RowAccumulator<A> acc = tfxent::AccumulateDense(xs.data(), y2.data(), 1, n);
        Check(tfxent::DenseLoss(acc, false) == std::numeric_limits<A>::infinity(),
              where + " -inf with a positive label: +inf");
        CheckDenseRow(xs, y2, 1, where + " -inf with a positive label");
        const RowAccumulator<A> sacc = tfxent::AccumulateLogits(xs.data(), n);
        Check(
            tfxent::SparseLoss(sacc, static_cast<A>(xs[pos])) == std::numeric_limits<A>::infinity(),
            where + " sparse -inf at the label: +inf");
      }
    }
  }

  // A block of −inf logits before any finite one (the running max starts at −inf), in one run
  // and split into runs: labels 0 there give NaN, positive labels +inf, sparse stays finite.
  for (int64_t lead : {int64_t{1}, int64_t{5}, b, b + 9, 3 * b}) {
    const int64_t n = lead + 700;
    std::vector<T> x = Logits<T>(rng, n, 8.0, 1.0 / 64, 0.0);
    for (int64_t j = 0; j < lead; ++j) x[j] = ninf;
    std::vector<T> y(n, static_cast<T>(0.0f));
    y[lead + 3] = static_cast<T>(1.0f);
    const std::string where = Fmt("%s %" PRId64 " leading -inf", Name<T>(), lead);
    CheckDenseRow(x, y, 1, where + " labels 0 there");
    CheckSplit(x, y, 1, {lead / 2, lead, lead + 1}, where + " labels 0 there");
    std::vector<T> yp(n, static_cast<T>(0.25f));
    CheckDenseRow(x, yp, 1, where + " positive labels");
    CheckSplit(x, yp, 1, {lead / 2, lead, lead + 1}, where + " positive labels");
    CheckSplit(x, std::vector<T>{static_cast<T>(0.25f)}, 0, {lead / 2, lead},
               where + " y_stride=0");
    CheckSparseRow(x, lead + 3, where + " sparse");
    const RowAccumulator<A> acc = tfxent::AccumulateDense(x.data(), yp.data(), 1, n);
    Check(tfxent::DenseLoss(acc, false) == std::numeric_limits<A>::infinity(),
          where + " positive labels: +inf");
    // Merging a run of only −inf (sparse) into a finite run changes nothing.
    const RowAccumulator<A> sa = tfxent::AccumulateLogits(x.data(), lead);
    const RowAccumulator<A> sb = tfxent::AccumulateLogits(x.data() + lead, n - lead);
    const RowAccumulator<A> sm = tfxent::Merge(sa, sb);
    Check(SameBits(sm.max, sb.max) && SameBits(sm.sum_exp, sb.sum_exp),
          where + " Merge(-inf run, finite run) == finite run");
  }

  // Huge logits that are finite: no overflow (exp of x − m ≤ 0 only).
  {
    const A big = std::numeric_limits<A>::max() / 4;
    std::vector<T> x = {static_cast<T>(big), static_cast<T>(big / 2), static_cast<T>(-big)};
    if (!std::isinf(ToLD(x[0]))) {
      const std::vector<T> y = {static_cast<T>(0.5f), static_cast<T>(0.5f), static_cast<T>(0.0f)};
      CheckDenseRow(x, y, 1, Fmt("%s huge finite logits", Name<T>()));
    }
  }
}

// The glue reads y[0] only for y_stride 0 and nothing at all for n = 0.
template <typename T>
void TestZeroLengthBackprop() {
  using A = typename Widen<T>::type;
  tfxent::WriteDenseBackprop<T, T>(nullptr, nullptr, 0, 0, A(0), A(1), A(1), A(1), nullptr);
  tfxent::WriteDenseBackprop<T, T>(nullptr, nullptr, 1, 0, A(0), A(1), A(1), A(1), nullptr);
  tfxent::WriteSparseBackprop<T>(nullptr, 0, 0, A(0), A(1), A(1), nullptr);
  Check(true, "zero-length backprop touches nothing");
}

// RowExp is Eigen's pexp on the z the row loops produce (z ≤ 0, NaN, −inf), and exp to 2 ulp.
template <typename A>
void TestRowExp() {
  using P = tfxent::internal::Packet<A>;
  using Bits = typename std::conditional<sizeof(A) == 4, uint32_t, uint64_t>::type;
  constexpr int64_t W = tfxent::internal::kLanes<A>;
  const A limit = sizeof(A) == 4 ? A(88) : A(709);
  std::vector<A> inputs = {A(0),
                           -A(0),
                           A(-1e-30),
                           A(-0.5),
                           A(-1),
                           A(-87),
                           A(-87.5),
                           A(-103.9),
                           A(-104),
                           A(-104.1),
                           A(-700),
                           A(-708.5),
                           A(-745),
                           A(-746),
                           -std::numeric_limits<A>::infinity(),
                           std::numeric_limits<A>::quiet_NaN(),
                           -std::numeric_limits<A>::max(),
                           std::numeric_limits<A>::denorm_min(),
                           limit};
  // Every (2^20 + 7)-th bit pattern of A's width, keeping those ≤ limit or NaN.
  const uint64_t top = sizeof(A) == 4 ? (uint64_t{1} << 32) : ~uint64_t{0};
  const uint64_t step = sizeof(A) == 4 ? 4099 : (uint64_t{1} << 44) + 7;
  for (uint64_t u = 0; u < top - step; u += step) {
    Bits b = static_cast<Bits>(u);
    A v;
    std::memcpy(&v, &b, sizeof(A));
    if (std::isnan(v) || v <= limit) inputs.push_back(v);
  }
  while (inputs.size() % W) inputs.push_back(A(0));
  int64_t differ = 0, not_identical = 0, inaccurate = 0;
  std::string first;
  alignas(64) A mine[W > 0 ? W : 1], eigen[W > 0 ? W : 1];
  for (size_t i = 0; i < inputs.size(); i += W) {
    const P zp = Eigen::internal::ploadu<P>(inputs.data() + i);
    Eigen::internal::pstore(mine, tfxent::internal::RowExp(zp));
    Eigen::internal::pstore(eigen, Eigen::internal::pexp(zp));
    for (int64_t k = 0; k < W; ++k) {
      // Against Eigen's pexp on the kernels' inputs z = x − max ≤ 0, in its fast range
      // z ≥ −86 (−707 for double): bit for bit with the Eigen of TF 2.16 and 2.21 (with 2.21,
      // all 2^32 floats checked; the count is printed). Older Eigen (TF 2.12) computes exp
      // less accurately (6 ulp apart at z = −59.3), so a difference beyond an ulp is accepted
      // only where RowExp is within 2 ulp of exp itself.
      const LD z = static_cast<LD>(inputs[i + k]);
      const LD mk = static_cast<LD>(mine[k]), ek = static_cast<LD>(eigen[k]);
      const LD want = std::exp(z);
      const bool fast_range = !(z > 0 || z < (sizeof(A) == 4 ? -86 : -707));
      if (fast_range && !SameBits(mine[k], eigen[k])) {
        ++not_identical;
        if (!Agrees(mk, ek, 2 * Eps<A>() * std::fabs(ek)) &&
            !Agrees(mk, want, 2 * std::numeric_limits<A>::epsilon() * want)) {
          if (differ++ == 0) first = Fmt(" z=%a: %a vs pexp %a", double(z), double(mk), double(ek));
        }
      }
      // Accuracy: 2 ulp where exp(z) is normal; below, no worse than Eigen's pexp or than
      // 2^-20 relative + 4 units of the smallest subnormal (the format has fewer digits there).
      const LD tiny = static_cast<LD>(std::numeric_limits<A>::denorm_min());
      const LD tol = want >= std::numeric_limits<A>::min()
                         ? 2 * std::numeric_limits<A>::epsilon() * want
                         : std::max(0x1p-20L * want + 4 * tiny, std::fabs(ek - want));
      if (!std::isinf(want) && !Agrees(mk, want, tol)) ++inaccurate;
    }
  }
  std::printf("%s RowExp: %zu inputs, %" PRId64 " not bit-identical to this Eigen's pexp\n",
              sizeof(A) == 4 ? "float" : "double", inputs.size(), not_identical);
  Check(differ == 0, Fmt("%s RowExp within 1 ulp of Eigen pexp or 2 ulp of exp on %zu inputs "
                         "(%" PRId64 " not)",
                         sizeof(A) == 4 ? "float" : "double", inputs.size(), differ) +
                         first);
  Check(inaccurate == 0, Fmt("%s RowExp within 2 ulp of exp (%" PRId64 " not)",
                             sizeof(A) == 4 ? "float" : "double", inaccurate));
}

template <typename T>
void RunAll() {
  const int64_t before = g_failures;
  TestRandomRows<T>();
  TestGradientSums<T>();
  TestShiftInvariance<T>();
  TestSplits<T>();
  TestMergeIdentities<T>();
  TestLabelOutsideRun<T>();
  TestWritesStayInRun<T>();
  TestPairs<T>();
  TestSpecialValues<T>();
  TestZeroLengthBackprop<T>();
  std::printf("%-9s %s\n", Name<T>(), g_failures == before ? "ok" : "FAILED");
}

// ---- Microbenchmark (--bench) ---------------------------------------------------------------
//
// Times each row function over a [rows, cols] array (rows split evenly over --threads
// threads, one call per row), best of 3, and prints ns per element and the bandwidth that
// implies (bytes the call must move: 4 per f32 element read or written). Beside them, the
// two numbers the roofline needs (docs/performance.md), from the same run: a streaming read of
// the logits, and c_exp, the sparse forward on a row that stays in L1.

double Seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs fn(first_row, end_row) on `threads` threads over [0, rows); returns the best time.
template <typename F>
double BestOf(int reps, int64_t rows, int threads, F&& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = Seconds();
    std::vector<std::thread> pool;
    for (int k = 1; k < threads; ++k) {
      pool.emplace_back([&, k] { fn(rows * k / threads, rows * (k + 1) / threads); });
    }
    fn(int64_t{0}, rows / threads);
    for (std::thread& th : pool) th.join();
    best = std::min(best, Seconds() - t0);
  }
  return best;
}

std::atomic<double> g_sink{0};

void Sink(double v) { g_sink.store(g_sink.load() + v); }

template <typename T>
void BenchType(int64_t rows, int64_t cols, int threads) {
  using A = typename Widen<T>::type;
  using P = tfxent::internal::Packet<A>;
  namespace ei = Eigen::internal;
  constexpr int64_t W = tfxent::internal::kLanes<A>;
  const int reps = 3;
  const int64_t total = rows * cols;
  std::vector<T> x(total), y(total), grad(total);
  std::vector<int64_t> labels(rows);
  Rng rng(42);
  for (int64_t i = 0; i < total; ++i) {
    x[i] = static_cast<T>(static_cast<float>(8 * rng.Uniform() - 4));
    y[i] = static_cast<T>(static_cast<float>(rng.Uniform() * (2.0 / cols)));
  }
  for (int64_t i = 0; i < rows; ++i) labels[i] = rng.Below(cols);
  std::vector<RowAccumulator<A>> acc(rows);
  auto report = [&](const char* what, double t, int arrays) {
    const double bytes = static_cast<double>(total) * sizeof(T) * arrays;
    std::printf("  %-40s %7.3f s  %6.3f ns/elem  %6.1f GB/s\n", what, t,
                1e9 * t / static_cast<double>(total), arrays ? 1e-9 * bytes / t : 0.0);
  };
  std::printf("[%" PRId64 ", %" PRId64 "] %s, %d thread(s), best of %d:\n", rows, cols, Name<T>(),
              threads, reps);

  if (std::is_same<T, A>::value) {
    // Streaming read of the logits, four packet sums.
    const A* xa = reinterpret_cast<const A*>(x.data());
    const double t = BestOf(reps, rows, threads, [&](int64_t r0, int64_t r1) {
      P a0 = ei::pzero(P()), a1 = a0, a2 = a0, a3 = a0;
      const int64_t end = r1 * cols;
      int64_t i = r0 * cols;
      for (; i + 4 * W <= end; i += 4 * W) {
        a0 = ei::padd(a0, ei::ploadu<P>(xa + i));
        a1 = ei::padd(a1, ei::ploadu<P>(xa + i + W));
        a2 = ei::padd(a2, ei::ploadu<P>(xa + i + 2 * W));
        a3 = ei::padd(a3, ei::ploadu<P>(xa + i + 3 * W));
      }
      Sink(ei::predux(ei::padd(ei::padd(a0, a1), ei::padd(a2, a3))));
    });
    report("read-only stream of x (BW)", t, 1);
  }
  {
    // c_exp: the same number of elements, one L1-resident row of 1024 classes per thread.
    const int64_t n = 1024;
    const double t = BestOf(reps, rows, threads, [&](int64_t r0, int64_t r1) {
      std::vector<T> row(x.begin() + r0 * cols, x.begin() + r0 * cols + n);
      A s = 0;
      for (int64_t i = 0; i < (r1 - r0) * cols / n; ++i) {
        s += tfxent::AccumulateLogits(row.data(), n).sum_exp;
      }
      Sink(s);
    });
    report("c_exp: sparse forward, L1-resident", t, 0);
  }

  double t = BestOf(reps, rows, threads, [&](int64_t r0, int64_t r1) {
    A s = 0;
    for (int64_t i = r0; i < r1; ++i) {
      acc[i] = tfxent::AccumulateDense(x.data() + i * cols, y.data() + i * cols, 1, cols);
      s += tfxent::DenseLoss(acc[i], false);
    }
    Sink(s);
  });
  report("dense forward (AccumulateDense+DenseLoss)", t, 2);

  t = BestOf(reps, rows, threads, [&](int64_t r0, int64_t r1) {
    A s = 0;
    for (int64_t i = r0; i < r1; ++i) {
      const RowAccumulator<A> a = tfxent::AccumulateLogits(x.data() + i * cols, cols);
      s += tfxent::SparseLoss(a, static_cast<A>(x[i * cols + labels[i]]));
    }
    Sink(s);
  });
  report("sparse forward (AccumulateLogits+Loss)", t, 1);

  // The kernels' way: two rows at a time (an odd last row of a thread is left out).
  t = BestOf(reps, rows, threads, [&](int64_t r0, int64_t r1) {
    A s = 0;
    for (int64_t i = r0; i + 1 < r1; i += 2) {
      const auto a =
          tfxent::AccumulateLogitsPair(x.data() + i * cols, cols, x.data() + (i + 1) * cols, cols);
      s += tfxent::SparseLoss(a[0], static_cast<A>(x[i * cols + labels[i]]));
      s += tfxent::SparseLoss(a[1], static_cast<A>(x[(i + 1) * cols + labels[i + 1]]));
    }
    Sink(s);
  });
  report("sparse forward, row pairs", t, 1);

  t = BestOf(reps, rows, threads, [&](int64_t r0, int64_t r1) {
    A s = 0;
    for (int64_t i = r0; i + 1 < r1; i += 2) {
      const auto a = tfxent::AccumulateDensePair(x.data() + i * cols, y.data() + i * cols, cols,
                                                 x.data() + (i + 1) * cols,
                                                 y.data() + (i + 1) * cols, cols, 1);
      s += tfxent::DenseLoss(a[0], false) + tfxent::DenseLoss(a[1], false);
    }
    Sink(s);
  });
  report("dense forward, row pairs", t, 2);

  t = BestOf(reps, rows, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      tfxent::WriteDenseBackprop(x.data() + i * cols, y.data() + i * cols, 1, cols, acc[i].max,
                                 acc[i].sum_exp, A(1), A(1), grad.data() + i * cols);
    }
  });
  report("dense backward (WriteDenseBackprop)", t, 3);

  t = BestOf(reps, rows, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      tfxent::WriteSparseBackprop(x.data() + i * cols, cols, labels[i], acc[i].max, acc[i].sum_exp,
                                  A(1), grad.data() + i * cols);
    }
  });
  report("sparse backward (WriteSparseBackprop)", t, 2);
}

int Bench(int64_t rows, int64_t cols, int threads, bool narrow) {
  std::printf("packet lanes: float %" PRId64 ", double %" PRId64 "; block %" PRId64 " classes\n",
              tfxent::internal::kLanes<float>, tfxent::internal::kLanes<double>,
              tfxent::internal::kBlock);
  BenchType<float>(rows, cols, threads);
  if (narrow) {
    BenchType<Eigen::bfloat16>(rows, cols, threads);
    BenchType<Eigen::half>(rows, cols, threads);
  }
  return 0;
}

}  // namespace

// xent_exact.h against Eigen's own tensor expressions, the ones TF's kernels evaluate
// (single-threaded here: a reduction never splits a row, and the elementwise log over the
// rows puts its scalar tail at the end whatever the thread count). Row lengths cover ragged
// packet tails, the 4-packet groups and rows past the 1024-packet leaf, which Eigen splits
// at packet boundaries counted from the tensor's start (so row 1 splits elsewhere than row 0).
template <typename T>
void TestExactRowsMatchEigen() {
  using Matrix = Eigen::Tensor<T, 2, Eigen::RowMajor, Eigen::DenseIndex>;
  using Vector = Eigen::Tensor<T, 1, Eigen::RowMajor, Eigen::DenseIndex>;
  const int64_t w = tfxent::exact::internal::kWidth<T>;
  std::mt19937_64 gen(7);
  std::normal_distribution<double> normal(0.0, 4.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int64_t cols : {int64_t{1}, w - 1, w + 3, 4 * w, 4 * w + 5, int64_t{1000}, 1024 * w + 3,
                       2048 * w + 11, int64_t{70001}}) {
    if (cols <= 0) continue;
    const int64_t rows = 3 * w + 3;  // packet rows of log s and a scalar tail
    Matrix x(rows, cols), y(rows, cols);
    for (int64_t k = 0; k < rows * cols; ++k) {
      x.data()[k] = static_cast<T>(normal(gen));
      y.data()[k] = static_cast<T>(uniform(gen));
    }
    Eigen::IndexList<Eigen::type2index<1>> along_class;
    Eigen::IndexList<int, Eigen::type2index<1>> by_one;
    by_one.set(0, static_cast<int>(rows));
    Eigen::IndexList<Eigen::type2index<1>, int> one_by_class;
    one_by_class.set(1, static_cast<int>(cols));
    Vector m = x.maximum(along_class);
    Matrix z = x - m.reshape(by_one).broadcast(one_by_class);
    Vector s = z.exp().sum(along_class);
    Matrix log_s = s.log().eval().reshape(by_one);
    Vector loss = (y * (log_s.broadcast(one_by_class) - z)).eval().sum(along_class);
    Matrix e = z.exp();
    const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
    for (int64_t i = 0; i < rows; ++i) {
      const T* xr = x.data() + i * cols;
      const int64_t first = i * cols;
      const T got_m = tfxent::exact::RowMax(xr, cols);
      const T got_s = tfxent::exact::RowSumExp(xr, cols, got_m, first);
      const T got_log = tfxent::exact::RowLogSum(got_s, i, rows);
      const T got_loss =
          tfxent::exact::RowDenseLoss(xr, y.data() + i * cols, 1, cols, got_m, got_log, first);
      const std::string what = "exact row " + std::to_string(i) + " of " + shape;
      Check(SameBits(got_m, m(i)), what + ": max");
      Check(SameBits(got_s, s(i)), what + ": sum of exp");
      Check(SameBits(got_log, log_s(i, 0)), what + ": log of the sum");
      Check(SameBits(got_loss, loss(i)), what + ": dense loss");
      // Sparse backprop with g = 1 and the label in the middle: exp over the whole tensor.
      std::vector<T> out(cols);
      const int64_t label = cols / 2;
      tfxent::exact::RowSparseBackprop(xr, 0, cols, label, got_m, got_s, T(1), first, rows * cols,
                                       out.data());
      bool same = true;
      for (int64_t j = 0; j < cols; ++j) {
        const T want = e(i, j) / s(i) - (j == label ? T(1) : T(0));
        same = same && SameBits(out[j], T(T(1) * want));
      }
      Check(same, what + ": sparse backprop");
    }
  }
}

// The sparse rows of xent_exact.h against the Eigen expressions of TF's sparse kernel and of
// its determinism path (LogSoftmax, gather, and their autodiff), for every type the sparse op
// computes natively: float, double and bfloat16. TF evaluates each bfloat16 expression in
// bfloat16 (every operation rounded to it, with Eigen's own bfloat16 packets and its smaller
// reduction leaf), so this checks those paths too.
template <typename T>
void TestExactSparseRowsMatchEigen() {
  using Matrix = Eigen::Tensor<T, 2, Eigen::RowMajor, Eigen::DenseIndex>;
  using Vector = Eigen::Tensor<T, 1, Eigen::RowMajor, Eigen::DenseIndex>;
  const int64_t w = tfxent::exact::internal::kWidth<T>;
  const int64_t leaf = w * tfxent::exact::internal::LeafPackets<T>();
  std::mt19937_64 gen(11);
  std::normal_distribution<double> normal(0.0, 4.0);
  for (int64_t cols : {int64_t{1}, w - 1, w + 3, 4 * w, 4 * w + 5, int64_t{1000}, leaf + 3,
                       2 * leaf + 11, int64_t{70001}}) {
    if (cols <= 0) continue;
    const int64_t rows = 3 * w + 3;  // packet rows of log s and a scalar tail
    Matrix x(rows, cols);
    for (int64_t k = 0; k < rows * cols; ++k) x.data()[k] = static_cast<T>(normal(gen));
    std::vector<int64_t> label(rows);
    for (int64_t i = 0; i < rows; ++i) label[i] = static_cast<int64_t>(gen() % cols);
    const T g = static_cast<T>(1.3);  // the upstream gradient TF's Mul applies afterwards
    Eigen::IndexList<Eigen::type2index<1>> along_class;
    Eigen::IndexList<int, Eigen::type2index<1>> by_one;
    by_one.set(0, static_cast<int>(rows));
    Eigen::IndexList<Eigen::type2index<1>, int> one_by_class;
    one_by_class.set(1, static_cast<int>(cols));
    // TF's sparse kernel: max, z = x − max, Σ exp(z), a row that is log s − z at the label and
    // zero elsewhere summed, and exp(z) over the whole tensor.
    Vector m = x.maximum(along_class);
    Matrix z = x - m.reshape(by_one).broadcast(one_by_class);
    Vector s = z.exp().sum(along_class);
    Matrix picked(rows, cols);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        picked(i, j) = j == label[i] ? T(Eigen::numext::log(s(i)) - z(i, j)) : T(0);
      }
    }
    Vector loss = picked.sum(along_class);
    Matrix e = z.exp();
    // The determinism path: log_probs = z − log s (the log over the [rows] vector), and the
    // gradient G − ΣG · exp(log_probs) with G = −g at the label.
    Matrix log_s = s.log().eval().reshape(by_one);
    Matrix log_probs = z - log_s.broadcast(one_by_class);
    Matrix probs = log_probs.exp();
    Matrix grad_in(rows, cols);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) grad_in(i, j) = j == label[i] ? T(-g) : T(0);
    }
    Matrix grad_sum = grad_in.sum(along_class).eval().reshape(by_one);
    Matrix det_grad = grad_in - grad_sum.broadcast(one_by_class) * probs;
    const std::string shape = Fmt("%s %" PRId64 "x%" PRId64, Name<T>(), rows, cols);
    for (int64_t i = 0; i < rows; ++i) {
      const T* xr = x.data() + i * cols;
      const int64_t first = i * cols;
      const T got_m = tfxent::exact::RowMax(xr, cols);
      const T got_s = tfxent::exact::RowSumExp(xr, cols, got_m, first);
      const T got_log = tfxent::exact::RowLogSum(got_s, i, rows);
      const T x_label = xr[label[i]];
      const std::string what = "exact sparse row " + std::to_string(i) + " of " + shape;
      Check(SameBits(got_m, m(i)), what + ": max");
      Check(SameBits(got_s, s(i)), what + ": sum of exp");
      Check(SameBits(tfxent::exact::RowSparseLoss(got_s, x_label, got_m), loss(i)),
            what + ": loss");
      Check(SameBits(T(-((x_label - got_m) - got_log)), T(-log_probs(i, label[i]))),
            what + ": determinism loss");
      std::vector<T> out(cols);
      tfxent::exact::RowSparseBackprop(xr, 0, cols, label[i], got_m, got_s, g, first, rows * cols,
                                       out.data());
      bool same = true;
      for (int64_t j = 0; j < cols; ++j) {
        const T backprop = e(i, j) / s(i) - (j == label[i] ? T(1) : T(0));
        same = same && SameBits(out[j], T(g * backprop));
      }
      Check(same, what + ": backprop");
      tfxent::exact::RowSparseDeterministicBackprop(xr, cols, label[i], got_m, got_log, g, first,
                                                    rows * cols, out.data());
      same = true;
      for (int64_t j = 0; j < cols; ++j) same = same && SameBits(out[j], det_grad(i, j));
      Check(same, what + ": determinism backprop");
    }
  }
}

int main(int argc, char** argv) {
  bool bench = false, narrow = false;
  int64_t rows = 8192, cols = 32000;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--bench") {
      bench = true;
    } else if (a == "--bench-narrow") {
      bench = narrow = true;
    } else if (a == "--rows" && i + 1 < argc) {
      rows = std::atoll(argv[++i]);
    } else if (a == "--cols" && i + 1 < argc) {
      cols = std::atoll(argv[++i]);
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr,
                   "usage: %s [--bench | --bench-narrow] [--rows N] [--cols C] [--threads P]\n",
                   argv[0]);
      return 2;
    }
  }
  if (bench) return Bench(rows, cols, threads, narrow);

  std::printf("packet lanes: float %" PRId64 ", double %" PRId64 "\n",
              tfxent::internal::kLanes<float>, tfxent::internal::kLanes<double>);
  TestRowExp<float>();
  TestRowExp<double>();
  TestExactRowsMatchEigen<float>();
  TestExactRowsMatchEigen<double>();
  TestExactSparseRowsMatchEigen<float>();
  TestExactSparseRowsMatchEigen<double>();
  TestExactSparseRowsMatchEigen<Eigen::bfloat16>();
  RunAll<float>();
  RunAll<double>();
  RunAll<Eigen::half>();
  RunAll<Eigen::bfloat16>();
  std::printf("worst loss error: %.2Lf u(1 + log2 n) of the terms' size (bound checked: %.0Lf)\n",
              g_worst_loss_units, kLossUnits);
  std::printf("worst split-vs-whole difference: loss %.2Lf ulp, sum_exp %.2Lf ulp\n",
              g_worst_split_loss_ulp, g_worst_split_s_ulp);
  std::printf("%" PRId64 " checks, %" PRId64 " failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
