// tfxent/cc/xent_rows.h: the row mathematics of softmax cross-entropy.
//
// Pure C++17 on Eigen's packet primitives; no TensorFlow headers, so it is unit-tested on
// its own (tests/build/cc/test_xent_rows.cc). The OpKernels in xent_kernels.cc validate inputs,
// allocate outputs, split rows into runs of classes and call the functions below.
//
// Shapes. One row i of logits x[N, C] and labels y[N, C] (dense) or label l_i (sparse).
// A row may be processed as several contiguous runs of classes whose statistics are then
// combined with Merge(); every function here sees one run of n classes.
//
// Formulas (m = max_j x_j, z_j = x_j − m, s = Σ_j exp(z_j)), and what each reproduces:
//
//   dense loss, kernel mode     loss = Σ_j y_j (log s − z_j) = Σy·log s − Σ y_j z_j
//                               TF's SoftmaxCrossEntropyWithLogits
// (docs/tf_behaviour.md#dense-kernel, xent_op.h)
//   dense loss, deterministic   loss = −(Σ y_j z_j − Σy·log s)
//                               TF's −reduce_sum(y · log_softmax(x))
// (docs/tf_behaviour.md#determinism)
//   sparse loss                 loss = log s − (x_l − m)
//                               TF's SparseSoftmaxCrossEntropyWithLogits
// (docs/tf_behaviour.md#sparse-forward item 7)
//   dense backprop              grad_j = g · (exp(z_j) / s · scale − y_j)
//                               scale = 1: TF's kernel backprop softmax − y
// (docs/tf_behaviour.md#summary, docs/tf_behaviour.md#dense-kernel)
//                               scale = Σy: the true gradient of the deterministic path
// (docs/tf_behaviour.md#determinism)
//   sparse backprop             grad_j = g · (exp(z_j) / s − [j = l])
// (docs/tf_behaviour.md#sparse-forward item 7)
//
// IEEE special values follow TF's kernel formula, element by element
// (docs/tf_behaviour.md#sparse-forward, docs/tf_behaviour.md#numerics):
//   * a NaN logit:               z_j = NaN, s = NaN: loss and every gradient entry NaN;
//   * a +inf logit:              m = +inf, z_j = inf − inf = NaN: as above;
//   * every logit −inf:          m = −inf, z_j = −inf − (−inf) = NaN: as above;
//   * x_j = −inf, finite m:      z_j = −inf, exp(z_j) = 0; dense: y_j = 0 gives 0·inf = NaN,
//                                y_j > 0 gives +inf; sparse at a non-label class: finite.
//
// How the forward pass works (docs/performance.md: the memory roofline is the target).
// x and y are read from memory once, with one exp per element. A run is cut into blocks
// of kBlock classes, small enough to stay in L1:
//   1. m_B = max over the block (reads x from memory);
//   2. if m_B > m: the lane sums, kept relative to m, are moved to the new maximum:
//        s ← s · exp(m − m_B),  Σ y z ← Σ y z + Σy · (m − m_B),  m ← m_B
//      (one scalar exp, and only when the running maximum grows: a few times per row);
//   3. the block is swept again from L1: s += exp(x_j − m), Σy += y_j, Σyz += y_j (x_j − m).
// Every sum is kept per SIMD lane (kUnroll packets of W lanes each) and per block before
// it is added to the run's sums, a cheap two-level summation that keeps rounding error at
// about (kBlock / (kUnroll·W) + n / kBlock) additions per partial sum instead of n / W.
// The kernels feed two runs at a time through these steps, one block of each in turn
// (AccumulatePair), which overlaps one run's memory waits with the other's exps; each run's
// statistics stay bit-identical to a call of its own.
//
// Element types. T ∈ {float, double, Eigen::half, Eigen::bfloat16} is computed in
// A = Widen<T>::type (float, or double for double): half and bfloat16 are widened exactly
// into a float block on load (WidenOnLoad) and rounded to nearest-even on store
// (NarrowOnStore); the arithmetic is one template for every T. Dense labels of any of these
// types are widened the same way (TF casts the labels to the logits' compute type first,
// which gives the same float values). Indices are int64_t throughout.
//
// Vector width. The packet type is Eigen's packet_traits<A>::type for the compiling CPU
// (AVX-512: 16 floats, AVX2: 8, SSE/NEON: 4, none: the scalar itself). The last n mod W
// classes of a run go through the very same packet expressions on a zero-padded copy, and
// their lanes beyond the run are masked out of the sums (forward) or not stored (backward).
// A class's terms are therefore bit-identical whichever lane or loop computes them.
//
// No alignment is assumed for any pointer: row starts are arbitrary.
// Build without -ffast-math: the NaN/inf behaviour above depends on IEEE arithmetic.

#ifndef TFXENT_CC_XENT_ROWS_H_
#define TFXENT_CC_XENT_ROWS_H_

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "Eigen/Core"

namespace tfxent {

// The compute type of an element type: float for half, bfloat16 and float; double for double.
template <typename T>
struct Widen {
  using type = float;
};
template <>
struct Widen<double> {
  using type = double;
};

// Partial statistics of a contiguous run of one row's classes, mergeable exactly.
//   max      m = max_j x_j over the run; −inf for an empty run (and for a run of −inf only).
//   sum_exp  s = Σ_j exp(x_j − m)
//   sum_y    Σ_j y_j                (dense; 0 for sparse)
//   sum_y_z  Σ_j y_j · (x_j − m)    (dense; 0 for sparse)
// Convention for max = −inf: the sums are taken relative to 0 instead of m, i.e.
// sum_exp = Σ exp(−inf) = 0 and sum_y_z = Σ y_j · x_j = Σ y_j · (−inf). Those terms are the
// same relative to any finite reference, so merging such a run into one with a finite
// maximum needs no rescaling and creates no NaN that TF would not produce (an empty run
// merges exactly; 0·(−inf) appears only where TF's own formula has it).
template <typename A>
struct RowAccumulator {
  A max;
  A sum_exp;
  A sum_y;
  A sum_y_z;
};

namespace internal {

namespace ei = Eigen::internal;

template <typename A>
using Packet = typename ei::packet_traits<A>::type;

// Lanes per packet of A on the compiling CPU.
template <typename A>
constexpr int64_t kLanes = ei::unpacket_traits<Packet<A>>::size;

// Classes per block. 512 floats of logits plus 512 of labels is 4 KiB, and with the next
// block in flight (Prefetch) 8 KiB, well inside L1; long enough that the per-block work
// (one horizontal max, a few packet adds) is < 1% of the sweep. Measured on the AVX-512
// development machine (tests/build/cc --bench, [8192, 32000] f32, one thread): 256 is 8% slower;
// 1024 is within 3% of 512 (a little faster forward, a little slower backward).
constexpr int64_t kBlock = 512;

// Independent packet accumulators per loop iteration: enough to cover the latency of the
// adds (4 cycles) behind the throughput of exp. 4 × 3 sums × 1 register = 12 registers.
constexpr int kUnroll = 4;

template <typename A>
constexpr A kNegInf = -std::numeric_limits<A>::infinity();
template <typename A>
constexpr A kNaN = std::numeric_limits<A>::quiet_NaN();

// ---- exp of a shifted logit -----------------------------------------------------------
//
// RowExp(z) = exp(z) for the z = x − m ≤ 0 (or NaN) that the row loops produce.
//
// Generic packets: Eigen's pexp, the function TF's own CPU kernels evaluate.
// AVX-512: the same Cephes reduction and polynomial as Eigen's pexp_float / pexp_double,
// step for step, but the scaling by 2^k is one vscalefps instead of Eigen's per-packet test
// for |z| > 87 and its branch to a four-multiply ldexp (that test and branch alone cost a
// quarter of the exp-and-sum loop on AVX-512: 0.58 -> 0.36 ns/element, L1-resident).
// With the Eigen of TF 2.21 the result equals pexp bit for bit for every float z ≤ 88,
// NaN and −inf, including the subnormal results of z ∈ [−104, −87] and 0 below (all 2^32
// floats checked on the development machine; tests/build/cc samples float and double). Older
// Eigen versions (TF 2.12) round some results differently, by at most an ulp for z ≥ −86.
// Only z = +inf differs on purpose: NaN here, +inf in Eigen. The row loops never produce
// it, since x = +inf makes m = +inf and z = inf − inf = NaN.
template <typename P>
EIGEN_STRONG_INLINE P RowExp(const P& z) {
  return ei::pexp(z);
}

#if defined(EIGEN_VECTORIZE_AVX512)
template <>
EIGEN_STRONG_INLINE ei::Packet16f RowExp<ei::Packet16f>(const ei::Packet16f& z) {
  using P = ei::Packet16f;
  // Eigen's constants (GenericPacketMathFunctions.h, pexp_float).
  const P cst_one = ei::pset1<P>(1.0f);
  const P cst_half = ei::pset1<P>(0.5f);
  const P cst_exp_lo = ei::pset1<P>(-104.f);
  const P cst_log2e = ei::pset1<P>(1.44269504088896341f);
  const P cst_c1 = ei::pset1<P>(-0.693359375f);
  const P cst_c2 = ei::pset1<P>(2.12194440e-4f);
  const P cst_p2 = ei::pset1<P>(0.49999988079071044921875f);
  const P cst_p3 = ei::pset1<P>(0.16666518151760101318359375f);
  const P cst_p4 = ei::pset1<P>(4.166965186595916748046875e-2f);
  const P cst_p5 = ei::pset1<P>(8.36894474923610687255859375e-3f);
  const P cst_p6 = ei::pset1<P>(1.37449637986719608306884765625e-3f);
  // x = max(z, −104): exp(−104) rounds to 0 like Eigen's zero mask; −inf → 0.
  // (vmaxps returns its second operand, z, when either is NaN: NaN stays NaN.)
  const P x = _mm512_max_ps(cst_exp_lo, z);
  // k = floor(x·log2(e) + 1/2),  r = x − k·ln 2  (ln 2 in two parts)
  const P k = ei::pfloor(ei::pmadd(x, cst_log2e, cst_half));
  P r = ei::pmadd(k, cst_c1, x);
  r = ei::pmadd(k, cst_c2, r);
  // exp(r) ≈ 1 + r + r²·(p2 + r·p3 + r²·(p4 + r·p5 + r²·p6)), Eigen's evaluation order
  const P r2 = ei::pmul(r, r);
  P p_even = ei::pmadd(r2, cst_p6, cst_p4);
  const P p_odd = ei::pmadd(r2, cst_p5, cst_p3);
  p_even = ei::pmadd(r2, p_even, cst_p2);
  const P p_low = ei::padd(r, cst_one);
  P y = ei::pmadd(r, p_odd, p_even);
  y = ei::pmadd(r2, y, p_low);
  // exp(x) = exp(r) · 2^k, one rounding (also into the subnormals)
  return _mm512_scalef_ps(y, k);
}

template <>
EIGEN_STRONG_INLINE ei::Packet8d RowExp<ei::Packet8d>(const ei::Packet8d& z) {
  using P = ei::Packet8d;
  // Eigen's constants (GenericPacketMathFunctions.h, pexp_double).
  const P cst_1 = ei::pset1<P>(1.0);
  const P cst_2 = ei::pset1<P>(2.0);
  const P cst_half = ei::pset1<P>(0.5);
  const P cst_exp_lo = ei::pset1<P>(-745.519);
  const P cst_log2e = ei::pset1<P>(1.4426950408889634073599);
  const P cst_p0 = ei::pset1<P>(1.26177193074810590878e-4);
  const P cst_p1 = ei::pset1<P>(3.02994407707441961300e-2);
  const P cst_p2 = ei::pset1<P>(9.99999999999999999910e-1);
  const P cst_q0 = ei::pset1<P>(3.00198505138664455042e-6);
  const P cst_q1 = ei::pset1<P>(2.52448340349684104192e-3);
  const P cst_q2 = ei::pset1<P>(2.27265548208155028766e-1);
  const P cst_q3 = ei::pset1<P>(2.00000000000000000009e0);
  const P cst_c1 = ei::pset1<P>(0.693145751953125);
  const P cst_c2 = ei::pset1<P>(1.42860682030941723212e-6);
  // x = max(z, −745.519): below, exp rounds to 0 like Eigen's zero mask; NaN stays NaN.
  P x = _mm512_max_pd(cst_exp_lo, z);
  // k = floor(log2(e)·x + 1/2),  r = x − k·ln 2  (ln 2 in two parts)
  const P k = ei::pfloor(ei::pmadd(cst_log2e, x, cst_half));
  const P t1 = ei::pmul(k, cst_c1);
  const P t2 = ei::pmul(k, cst_c2);
  x = ei::psub(x, t1);
  x = ei::psub(x, t2);
  // exp(r) ≈ 1 + 2·P(r²)·r / (Q(r²) − P(r²)·r), Eigen's Padé form and order
  const P x2 = ei::pmul(x, x);
  P px = cst_p0;
  px = ei::pmadd(px, x2, cst_p1);
  px = ei::pmadd(px, x2, cst_p2);
  px = ei::pmul(px, x);
  P qx = cst_q0;
  qx = ei::pmadd(qx, x2, cst_q1);
  qx = ei::pmadd(qx, x2, cst_q2);
  qx = ei::pmadd(qx, x2, cst_q3);
  x = ei::pdiv(px, ei::psub(qx, px));
  x = ei::pmadd(cst_2, x, cst_1);
  // exp(z) = exp(r) · 2^k, one rounding
  return _mm512_scalef_pd(x, k);
}
#endif  // EIGEN_VECTORIZE_AVX512

// ---- Widen on load, narrow on store ----------------------------------------------------

// Eigen's cast expression uses the CPU's vector conversion where it has one
// (vcvtph2ps for half, a 16-bit shift for bfloat16) and a scalar conversion otherwise.
template <typename From, typename To>
inline void Convert(const From* src, int64_t len, To* dst) {
  using SrcArray = Eigen::Array<From, Eigen::Dynamic, 1>;
  using DstArray = Eigen::Array<To, Eigen::Dynamic, 1>;
  Eigen::Map<DstArray>(dst, len) = Eigen::Map<const SrcArray>(src, len).template cast<To>();
}

// A view of up to kBlock values of T as values of A: the memory itself when T is A,
// otherwise an exact widening into a block buffer on the stack.
template <typename T, typename A, bool kSame = std::is_same<T, A>::value>
struct WidenOnLoad {
  alignas(64) A buffer[kBlock];
  const A* operator()(const T* src, int64_t len) {
    Convert(src, len, buffer);
    return buffer;
  }
};
template <typename T, typename A>
struct WidenOnLoad<T, A, true> {
  const A* operator()(const T* src, int64_t /*len*/) { return src; }
};

// Where a block of results in A is written: the output itself when T is A, otherwise a
// block buffer that Commit() rounds to T (nearest-even, as TF's Cast) into the output.
template <typename T, typename A, bool kSame = std::is_same<T, A>::value>
struct NarrowOnStore {
  alignas(64) A buffer[kBlock];
  A* Target(T* /*dst*/) { return buffer; }
  void Commit(T* dst, int64_t len) { Convert(buffer, len, dst); }
};
template <typename T, typename A>
struct NarrowOnStore<T, A, true> {
  A* Target(T* dst) { return dst; }
  void Commit(T* /*dst*/, int64_t /*len*/) {}
};

// Asks for the cache lines of p[0, count) ahead of their use; never faults.
// Why: the blocked forward pass reads memory only in its max pass and computes in its
// sweep; prefetching block b+1 during the sweep of block b keeps memory busy throughout
// (measured: dense forward 1.09 -> 0.73 ns/element, dense backward 1.33 -> 0.98,
// [8192, 32000] f32, one thread of the AVX-512 development machine).
template <typename T>
EIGEN_STRONG_INLINE void Prefetch(const T* p, int64_t count) {
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < count * static_cast<int64_t>(sizeof(T)); off += 64) {
    ei::prefetch(bytes + off);
  }
}

// ---- Packet helpers for the last n mod W classes ---------------------------------------

// The first `rem` (< W) values at src, the other lanes `fill`.
template <typename A>
inline Packet<A> LoadPadded(const A* src, int64_t rem, A fill) {
  alignas(64) A lanes[kLanes<A>];
  for (int64_t k = 0; k < kLanes<A>; ++k) lanes[k] = k < rem ? src[k] : fill;
  return ei::pload<Packet<A>>(lanes);
}

// Stores the first `rem` (< W) lanes of p at dst.
template <typename A>
inline void StorePartial(A* dst, const Packet<A>& p, int64_t rem) {
  alignas(64) A lanes[kLanes<A>];
  ei::pstore(lanes, p);
  std::memcpy(dst, lanes, static_cast<size_t>(rem) * sizeof(A));
}

#if defined(EIGEN_VECTORIZE_AVX512)
// AVX-512 has masked loads and stores that never touch the masked-off lanes' memory.
// Why: the copies above cost a store-to-load forwarding stall per call, a third of the
// time of a row of fewer than 16 classes.
template <>
inline ei::Packet16f LoadPadded<float>(const float* src, int64_t rem, float fill) {
  return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), static_cast<__mmask16>((1u << rem) - 1), src);
}
template <>
inline ei::Packet8d LoadPadded<double>(const double* src, int64_t rem, double fill) {
  return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), static_cast<__mmask8>((1u << rem) - 1), src);
}
template <>
inline void StorePartial<float>(float* dst, const ei::Packet16f& p, int64_t rem) {
  _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << rem) - 1), p);
}
template <>
inline void StorePartial<double>(double* dst, const ei::Packet8d& p, int64_t rem) {
  _mm512_mask_storeu_pd(dst, static_cast<__mmask8>((1u << rem) - 1), p);
}
#endif  // EIGEN_VECTORIZE_AVX512

// Lane k is all-ones where k < rem, zero elsewhere.
template <typename A>
inline Packet<A> FirstLanesMask(int64_t rem) {
  using P = Packet<A>;
  return ei::pcmp_lt(ei::plset<P>(A(0)), ei::pset1<P>(static_cast<A>(rem)));
}

// ---- Label sources ---------------------------------------------------------------------
//
// The row loops are written once against this interface:
//   kPresent            false for sparse: the label sums are compiled out;
//   StartBlock(b, len)  classes [b, b + len) of the run are next;
//   Load(i)             labels of classes i .. i+W−1 of the current block;
//   LoadTail(i, rem)    the same for the last rem < W classes, other lanes 0;
//   Prefetch(j, count)  labels of classes [j, j + count) of the run will be read soon.

// y_stride == 1: one label per class.
template <typename L, typename A>
class PerClassLabels {
 public:
  static constexpr bool kPresent = true;
  explicit PerClassLabels(const L* y) : y_(y) {}
  void StartBlock(int64_t begin, int64_t len) { block_ = widen_(y_ + begin, len); }
  Packet<A> Load(int64_t i) const { return ei::ploadu<Packet<A>>(block_ + i); }
  Packet<A> LoadTail(int64_t i, int64_t rem) const { return LoadPadded(block_ + i, rem, A(0)); }
  void Prefetch(int64_t j, int64_t count) const { internal::Prefetch(y_ + j, count); }

 private:
  const L* y_;
  const A* block_ = nullptr;
  WidenOnLoad<L, A> widen_;
};

// y_stride == 0: one label value for every class of the run (TF's BCast of labels [N, 1]).
template <typename A>
class BroadcastLabel {
 public:
  static constexpr bool kPresent = true;
  explicit BroadcastLabel(A y) : y_(ei::pset1<Packet<A>>(y)) {}
  void StartBlock(int64_t /*begin*/, int64_t /*len*/) {}
  Packet<A> Load(int64_t /*i*/) const { return y_; }
  Packet<A> LoadTail(int64_t /*i*/, int64_t /*rem*/) const { return y_; }  // lanes masked later
  void Prefetch(int64_t /*j*/, int64_t /*count*/) const {}

 private:
  Packet<A> y_;
};

// Sparse: no label terms in the sums (the label's class is handled by the caller).
template <typename A>
class NoLabels {
 public:
  static constexpr bool kPresent = false;
  void StartBlock(int64_t /*begin*/, int64_t /*len*/) {}
  Packet<A> Load(int64_t /*i*/) const { return ei::pzero(Packet<A>()); }
  Packet<A> LoadTail(int64_t /*i*/, int64_t /*rem*/) const { return ei::pzero(Packet<A>()); }
  void Prefetch(int64_t /*j*/, int64_t /*count*/) const {}
};

// ---- Forward: the online max / sum over one run ----------------------------------------

// Per-lane partial sums of a run, relative to the running reference r.
template <typename A>
struct LaneSums {
  Packet<A> s, sy, syz;
  static LaneSums Zero() {
    const Packet<A> zero = ei::pzero(Packet<A>());
    return {zero, zero, zero};
  }
  void Add(const LaneSums& o, bool with_labels) {
    s = ei::padd(s, o.s);
    if (with_labels) {
      sy = ei::padd(sy, o.sy);
      syz = ei::padd(syz, o.syz);
    }
  }
};

// The terms of W classes, added into acc:
//   z_j = x_j − r;  s += exp(z_j);  Σy += y_j;  Σyz += y_j · z_j
// With a mask (the last n mod W classes) the lanes outside the run add 0 instead; the
// terms themselves are computed by the same expressions as in the main loop.
template <bool kLabels, bool kMasked, typename A>
EIGEN_STRONG_INLINE void AddTerms(const Packet<A>& x, const Packet<A>& y, const Packet<A>& r,
                                  const Packet<A>& mask, LaneSums<A>& acc) {
  using P = Packet<A>;
  const P zero = ei::pzero(P());
  // z_j = x_j − r        (exact for x_j within a factor 2 of r, Sterbenz)
  const P z = ei::psub(x, r);
  // exp(z_j) ≤ 1: one exp per element (RowExp: Eigen's pexp, as in TF's own kernels)
  P e = RowExp(z);
  P yv = y;
  if (kMasked) {
    // Lanes past the run add +0: e masked, y masked, and y·z = 0·(0 − r) = 0 because
    // LoadPadded gave them x = 0 (finite; r = +inf only in a row that is NaN anyway).
    e = ei::pselect(mask, e, zero);
    yv = ei::pselect(mask, yv, zero);
  }
  acc.s = ei::padd(acc.s, e);
  if (kLabels) {
    acc.sy = ei::padd(acc.sy, yv);
    // Σyz += y_j · z_j     (0 · (−inf) = NaN, as in TF's Σ y_j (log s − z_j))
    acc.syz = ei::pmadd(yv, z, acc.syz);
  }
}

// max over len values of a block (pmax; a NaN logit may or may not win, which does not
// matter: its own term exp(NaN − r) makes s NaN either way).
template <typename A>
inline A BlockMax(const A* xb, int64_t len) {
  using P = Packet<A>;
  constexpr int64_t W = kLanes<A>;
  const P neg_inf = ei::pset1<P>(kNegInf<A>);
  P mx[kUnroll];
  for (int u = 0; u < kUnroll; ++u) mx[u] = neg_inf;
  int64_t i = 0;
  for (; i + kUnroll * W <= len; i += kUnroll * W) {
    for (int u = 0; u < kUnroll; ++u) mx[u] = ei::pmax(mx[u], ei::ploadu<P>(xb + i + u * W));
  }
  for (; i + W <= len; i += W) mx[0] = ei::pmax(mx[0], ei::ploadu<P>(xb + i));
  if (i < len) mx[0] = ei::pmax(mx[0], LoadPadded(xb + i, len - i, kNegInf<A>));
  for (int u = 1; u < kUnroll; ++u) mx[0] = ei::pmax(mx[0], mx[u]);
  return ei::predux_max(mx[0]);
}

// The online statistics of one run, fed one block at a time (AddBlock for b = 0, kBlock,
// 2·kBlock, ... < n), so that the blocks of two runs can be interleaved (AccumulatePair).
template <typename T, typename Labels>
class OnlineRun {
 public:
  using A = typename Widen<T>::type;

  OnlineRun(const T* x, Labels& labels, int64_t n) : x_(x), labels_(labels), n_(n) {
    for (int u = 0; u < kUnroll; ++u) run_[u] = LaneSums<A>::Zero();
  }

  // Adds the terms of classes [b, min(b + kBlock, n)).
  void AddBlock(int64_t b) {
    using P = Packet<A>;
    constexpr int64_t W = kLanes<A>;
    constexpr bool kLabels = Labels::kPresent;
    const int64_t len = std::min(kBlock, n_ - b);
    const A* xb = widen_x_(x_ + b, len);
    labels_.StartBlock(b, len);

    // Pass 1, from memory:  m_B = max_{j ∈ block} x_j
    const A block_max = BlockMax(xb, len);

    // Rescale when the maximum grows (m < m_B):
    //   s ← s · exp(m − m_B),   Σyz ← Σyz + Σy · (m − m_B),   m ← m_B
    // A −inf m means the sums so far are relative to 0 and reference-free (see
    // RowAccumulator): they are kept as they are.
    if (block_max > m_) {
      if (m_ != kNegInf<A>) {
        // Why: d = m − m_B first (exact when m and m_B are close, Sterbenz), so the shift
        // is the same one an offset-free row would see.
        const A d = m_ - block_max;
        const P pd = ei::pset1<P>(d);
        const P scale = ei::pset1<P>(std::exp(d));
        for (int u = 0; u < kUnroll; ++u) {
          run_[u].s = ei::pmul(run_[u].s, scale);
          if (kLabels) run_[u].syz = ei::pmadd(run_[u].sy, pd, run_[u].syz);
        }
      }
      m_ = block_max;
    }
    // The reference of this block's terms: m, or 0 while every logit so far is −inf.
    const P r = ei::pset1<P>(m_ == kNegInf<A> ? A(0) : m_);

    // Pass 2, from L1: for j in block
    //   s += exp(x_j − m),   Σy += y_j,   Σyz += y_j · (x_j − m)
    LaneSums<A> blk[kUnroll];
    for (int u = 0; u < kUnroll; ++u) blk[u] = LaneSums<A>::Zero();
    const P no_mask = r;                       // unused by the unmasked AddTerms
    const int64_t next_len = n_ - b - kBlock;  // classes of the run after this block
    int64_t i = 0;
    for (; i + kUnroll * W <= len; i += kUnroll * W) {
      // Why: while this block computes, memory streams in the next one (see Prefetch).
      if (i + kUnroll * W <= next_len) {
        Prefetch(x_ + b + kBlock + i, kUnroll * W);
        labels_.Prefetch(b + kBlock + i, kUnroll * W);
      }
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t k = i + u * W;
        AddTerms<kLabels, false, A>(ei::ploadu<P>(xb + k), labels_.Load(k), r, no_mask, blk[u]);
      }
    }
    for (; i + W <= len; i += W) {
      AddTerms<kLabels, false, A>(ei::ploadu<P>(xb + i), labels_.Load(i), r, no_mask, blk[0]);
    }
    if (i < len) {
      const int64_t rem = len - i;
      AddTerms<kLabels, true, A>(LoadPadded(xb + i, rem, A(0)), labels_.LoadTail(i, rem), r,
                                 FirstLanesMask<A>(rem), blk[0]);
    }
    for (int u = 0; u < kUnroll; ++u) run_[u].Add(blk[u], kLabels);
  }

  // The run's statistics, once all its blocks are added; call it once (it folds the lane
  // sums in place). Horizontal sums in a fixed order: ((lanes0 + lanes1) +
  // (lanes2 + lanes3)), then predux.
  RowAccumulator<A> Result() {
    constexpr bool kLabels = Labels::kPresent;
    static_assert(kUnroll == 4, "the reduction below is written for 4 accumulators");
    for (int u = 0; u < 2; ++u) run_[u].Add(run_[u + 2], kLabels);
    run_[0].Add(run_[1], kLabels);
    RowAccumulator<A> acc;
    acc.max = m_;
    acc.sum_exp = ei::predux(run_[0].s);
    acc.sum_y = kLabels ? ei::predux(run_[0].sy) : A(0);
    acc.sum_y_z = kLabels ? ei::predux(run_[0].syz) : A(0);
    return acc;
  }

 private:
  const T* x_;
  Labels& labels_;
  int64_t n_;
  WidenOnLoad<T, A> widen_x_;
  A m_ = kNegInf<A>;  // running max over the blocks seen so far
  LaneSums<A> run_[kUnroll];
};

// Two runs with their blocks interleaved: a's block k, then b's block k. Each run's
// statistics are bit-identical to those of the run alone (b empty), since each run's own
// blocks are added in the same order; only the instruction stream is shared.
// Why: one run's loop waits on memory in pass 1 and on exp in pass 2, and a core overlaps
// the two poorly within one stream. With a second, independent stream the core computes
// one block's exps while the other block's loads are in flight (measured on the AVX-512
// development VM, tests/build/cc --bench --rows 2048 --cols 30522: sparse forward 0.45 -> 0.35
// ns/element on one thread, where a plain streaming read takes 0.34-0.36; dense forward
// 0.64 -> 0.59).
template <typename T, typename Labels>
std::array<RowAccumulator<typename Widen<T>::type>, 2> AccumulatePair(
    const T* x_a, Labels& labels_a, int64_t n_a, const T* x_b, Labels& labels_b, int64_t n_b) {
  OnlineRun<T, Labels> a(x_a, labels_a, n_a), b(x_b, labels_b, n_b);
  for (int64_t k = 0; k < std::max(n_a, n_b); k += kBlock) {
    if (k < n_a) a.AddBlock(k);
    if (k < n_b) b.AddBlock(k);
  }
  return {a.Result(), b.Result()};
}

// ---- Backward: one pass over a run ------------------------------------------------------

// grad_j = g · (exp(x_j − m) · c − y_j),  c = scale / s,  for j in [0, n)
template <typename T, typename Labels>
void WriteBackprop(const T* x, Labels& labels, int64_t n, typename Widen<T>::type max,
                   typename Widen<T>::type sum_exp, typename Widen<T>::type g,
                   typename Widen<T>::type scale, T* grad) {
  using A = typename Widen<T>::type;
  using P = Packet<A>;
  constexpr int64_t W = kLanes<A>;
  constexpr bool kLabels = Labels::kPresent;

  // Why: one division per run, then a multiply per element (TF divides per element;
  // the results differ by at most an ulp of the softmax).
  const P c = ei::pset1<P>(scale / sum_exp);
  const P pm = ei::pset1<P>(max);
  const P pg = ei::pset1<P>(g);
  // grad = g · (exp(x − m) · c − y)
  // Why: p − y before the product with g, so p ≈ y cancels exactly (Sterbenz) instead of
  // subtracting two rounded products.
  auto grad_of = [&](const P& xv, const P& yv) {
    const P p = ei::pmul(RowExp(ei::psub(xv, pm)), c);
    return ei::pmul(pg, kLabels ? ei::psub(p, yv) : p);
  };

  WidenOnLoad<T, A> widen_x;
  NarrowOnStore<T, A> narrow;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = std::min(kBlock, n - b);
    const A* xb = widen_x(x + b, len);
    labels.StartBlock(b, len);
    A* out = narrow.Target(grad + b);
    const int64_t next_len = n - b - kBlock;  // classes of the run after this block
    int64_t i = 0;
    for (; i + W <= len; i += W) {
      if (i + W <= next_len) {  // Why: as in OnlineRun, keep the next block streaming in.
        Prefetch(x + b + kBlock + i, W);
        labels.Prefetch(b + kBlock + i, W);
      }
      ei::pstoreu(out + i, grad_of(ei::ploadu<P>(xb + i), labels.Load(i)));
    }
    if (i < len) {
      const int64_t rem = len - i;
      StorePartial(out + i, grad_of(LoadPadded(xb + i, rem, A(0)), labels.LoadTail(i, rem)), rem);
    }
    narrow.Commit(grad + b, len);
  }
}

}  // namespace internal

// ---- Public row functions ----------------------------------------------------------------

// Combines the statistics of two runs of one row into those of their union:
//   m = max(a.m, b.m);  s = a.s·exp(a.m − m) + b.s·exp(b.m − m);  Σy = a.Σy + b.Σy;
//   Σyz = (a.Σyz + a.Σy·(a.m − m)) + (b.Σyz + b.Σy·(b.m − m))
// A side whose max already equals m (or is −inf, see RowAccumulator) is taken unchanged,
// so merging with an empty run is exact. Merge(a, b) == Merge(b, a) bit for bit; the glue
// merges in a fixed order, which makes the row's result independent of the thread count.
template <typename A>
RowAccumulator<A> Merge(const RowAccumulator<A>& a, const RowAccumulator<A>& b) {
  using std::isnan;
  const A m = (isnan(a.max) || isnan(b.max)) ? internal::kNaN<A> : std::max(a.max, b.max);
  auto moved_to_m = [m](const RowAccumulator<A>& r) {
    if (r.max == m || r.max == internal::kNegInf<A>) return r;
    // Why: d = r.m − m first, exact for nearby maxima (Sterbenz).
    const A d = r.max - m;
    return RowAccumulator<A>{m, r.sum_exp * std::exp(d), r.sum_y, r.sum_y_z + r.sum_y * d};
  };
  const RowAccumulator<A> ra = moved_to_m(a);
  const RowAccumulator<A> rb = moved_to_m(b);
  return {m, ra.sum_exp + rb.sum_exp, ra.sum_y + rb.sum_y, ra.sum_y_z + rb.sum_y_z};
}

// Dense statistics of two runs (either may be empty) with the same y_stride, bit-identical
// to two AccumulateDense calls and faster on long runs (see internal::AccumulatePair).
// Labels element j of a run at y[j * y_stride], y_stride ∈ {0, 1} (0: the single value y[0]
// for every class); an empty run's y is not read.
template <typename T, typename L>
std::array<RowAccumulator<typename Widen<T>::type>, 2> AccumulateDensePair(
    const T* x_a, const L* y_a, int64_t n_a, const T* x_b, const L* y_b, int64_t n_b,
    int64_t y_stride) {
  using A = typename Widen<T>::type;
  eigen_assert(y_stride == 0 || y_stride == 1);
  if (y_stride == 0) {
    internal::BroadcastLabel<A> labels_a(n_a > 0 ? static_cast<A>(y_a[0]) : A(0));
    internal::BroadcastLabel<A> labels_b(n_b > 0 ? static_cast<A>(y_b[0]) : A(0));
    return internal::AccumulatePair(x_a, labels_a, n_a, x_b, labels_b, n_b);
  }
  internal::PerClassLabels<L, A> labels_a(y_a), labels_b(y_b);
  return internal::AccumulatePair(x_a, labels_a, n_a, x_b, labels_b, n_b);
}

// Sparse statistics of two runs (either may be empty): max and sum_exp only; bit-identical
// to two AccumulateLogits calls and faster on long runs (see internal::AccumulatePair).
template <typename T>
std::array<RowAccumulator<typename Widen<T>::type>, 2> AccumulateLogitsPair(const T* x_a,
                                                                            int64_t n_a,
                                                                            const T* x_b,
                                                                            int64_t n_b) {
  internal::NoLabels<typename Widen<T>::type> labels_a, labels_b;
  return internal::AccumulatePair(x_a, labels_a, n_a, x_b, labels_b, n_b);
}

// The statistics of one run: the pair functions with an empty second run, which is what the
// kernels compute for a shard's odd last unit (so every test of these runs the kernels' code).
template <typename T, typename L>
RowAccumulator<typename Widen<T>::type> AccumulateDense(const T* x, const L* y, int64_t y_stride,
                                                        int64_t n) {
  return AccumulateDensePair(x, y, n, x, y, 0, y_stride)[0];
}
template <typename T>
RowAccumulator<typename Widen<T>::type> AccumulateLogits(const T* x, int64_t n) {
  return AccumulateLogitsPair(x, n, x, 0)[0];
}

// Loss of a whole row (n ≥ 1) from its merged statistics:
//   kernel mode:        loss = Σy · log s − Σ y_j z_j
//   deterministic mode: loss = −(Σ y_j z_j − Σy · log s)
template <typename A>
A DenseLoss(const RowAccumulator<A>& acc, bool deterministic) {
  // Every logit −inf: TF's z_j = −inf − (−inf) = NaN for all j.
  if (acc.max == internal::kNegInf<A>) return internal::kNaN<A>;
  const A log_s = std::log(acc.sum_exp);
  if (deterministic) return -(acc.sum_y_z - acc.sum_y * log_s);
  return acc.sum_y * log_s - acc.sum_y_z;
}

// Dense loss of a whole row term by term, in TF's own order of operations:
//   kernel mode:        loss = Σ_j y_j · (log s − z_j)      (xent_op.h,
// docs/tf_behaviour.md#dense-kernel)
//   deterministic mode: loss = −Σ_j y_j · (z_j − log s)     (−reduce_sum(y · log_softmax),
// docs/tf_behaviour.md#determinism)
// DenseLoss factors Σy out of the sum, which overflows when the labels are huge (Σy = inf
// where every term is finite) and turns inf − inf into NaN where TF's terms give inf. The
// kernel calls this instead for the rare rows whose factored result or statistics are not
// finite; it reads the row a second time, so it is not the fast path.
template <typename T, typename L>
typename Widen<T>::type DenseLossByTerms(const T* x, const L* y, int64_t y_stride, int64_t n,
                                         typename Widen<T>::type max,
                                         typename Widen<T>::type sum_exp, bool deterministic) {
  using A = typename Widen<T>::type;
  const A log_s = std::log(sum_exp);
  A sum = A(0);
  for (int64_t j = 0; j < n; ++j) {
    const A z = static_cast<A>(x[j]) - max;
    const A y_j = static_cast<A>(y[j * y_stride]);
    sum += deterministic ? y_j * (z - log_s) : y_j * (log_s - z);
  }
  return deterministic ? -sum : sum;
}

// Sparse loss of a whole row from its statistics and the label's logit (widened):
//   loss = log s − (x_l − m)
template <typename A>
A SparseLoss(const RowAccumulator<A>& acc, A x_label) {
  // Why: z_l = x_l − m first, as TF does (exact near the maximum), then log s − z_l.
  const A z_label = x_label - acc.max;
  return std::log(acc.sum_exp) - z_label;
}

// Dense backprop over one run, one pass, written in T:
//   grad_j = g · (exp(x_j − max) / sum_exp · scale − y_j)
// max and sum_exp are the whole row's (merged) statistics; scale = 1 in kernel mode, Σ_j y_j
// of the whole row in deterministic mode.
template <typename T, typename L>
void WriteDenseBackprop(const T* x, const L* y, int64_t y_stride, int64_t n,
                        typename Widen<T>::type max, typename Widen<T>::type sum_exp,
                        typename Widen<T>::type g, typename Widen<T>::type scale, T* grad) {
  using A = typename Widen<T>::type;
  eigen_assert(y_stride == 0 || y_stride == 1);
  if (n <= 0) return;
  if (y_stride == 0) {
    internal::BroadcastLabel<A> labels(static_cast<A>(y[0]));
    internal::WriteBackprop(x, labels, n, max, sum_exp, g, scale, grad);
    return;
  }
  internal::PerClassLabels<L, A> labels(y);
  internal::WriteBackprop(x, labels, n, max, sum_exp, g, scale, grad);
}

// Sparse backprop over one run:
//   grad_j = g · (exp(x_j − max) / sum_exp − [j = label_in_run])
// label_in_run outside [0, n) means the label's class is in another run.
template <typename T>
void WriteSparseBackprop(const T* x, int64_t n, int64_t label_in_run, typename Widen<T>::type max,
                         typename Widen<T>::type sum_exp, typename Widen<T>::type g, T* grad) {
  using A = typename Widen<T>::type;
  using P = internal::Packet<A>;
  namespace ei = Eigen::internal;
  if (n <= 0) return;
  internal::NoLabels<A> labels;
  internal::WriteBackprop(x, labels, n, max, sum_exp, g, A(1), grad);
  if (label_in_run < 0 || label_in_run >= n) return;
  // The label's class again, by the dense packet expression with y = 1 in every lane, so
  // the value is bit-identical to the dense backprop of a one-hot row:
  //   grad_l = g · (exp(x_l − max) · (1 / s) − 1)
  const P xl = ei::pset1<P>(static_cast<A>(x[label_in_run]));
  const P c = ei::pset1<P>(A(1) / sum_exp);
  const P p = ei::pmul(internal::RowExp(ei::psub(xl, ei::pset1<P>(max))), c);
  const P gl = ei::pmul(ei::pset1<P>(g), ei::psub(p, ei::pset1<P>(A(1))));
  grad[label_in_run] = static_cast<T>(ei::pfirst(gl));
}

}  // namespace tfxent

#endif  // TFXENT_CC_XENT_ROWS_H_
