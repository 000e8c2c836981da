// tfxent/cc/xent_exact.h: row functions that return TF's own CPU kernels' bits.
//
// TF's SoftmaxCrossEntropyWithLogits and SparseSoftmaxCrossEntropyWithLogits kernels are
// Eigen tensor expressions (docs/tf_behaviour.md#dense-kernel,
// docs/tf_behaviour.md#sparse-forward). A result of theirs depends not only on the formula but
// on which instructions compute each element:
//   * a row reduction (max, Σ exp) runs Eigen's inner-most-dimension reducer: four packet
//     accumulators over the row's whole 4-packet groups, folded ((a0 + a1) + a2) + a3, then
//     single packets, then a scalar accumulator over the last n mod W elements, and
//     finalizeBoth = scalar + predux(packets). Sums longer than 1024 packets are split in two
//     at a packet boundary counted from the start of the *tensor* (not of the row), and each
//     half is reduced the same way;
//   * exp and log run Eigen's packet functions (pexp, plog) on full packets and the scalar
//     functions (the C library's) on the rest. In a reduction "the rest" is each leaf's tail;
//     in an elementwise assignment over a whole tensor it is the tensor's last (size mod W)
//     elements, since Eigen's thread-pool executor cuts its work at multiples of W;
//   * the packet width W and whether a·b + c is fused come from the ISA TF's wheel was
//     compiled for, so tfxent compiles these functions with the same flags (see
//     tfxent/_build.py, `arithmetic_flags`, and docs/exactness.md).
// The functions below call Eigen's own reducers and functors from the installed TF's headers
// in that order, so every element sees the same operations as in TF. Each row is independent
// of the others (a reduction never splits a row across threads), so rows can be spread over
// threads in any way without changing a bit.

#ifndef TFXENT_CC_XENT_EXACT_H_
#define TFXENT_CC_XENT_EXACT_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "unsupported/Eigen/CXX11/Tensor"

namespace tfxent {
namespace exact {

namespace internal {

namespace ei = Eigen::internal;

template <typename T>
using Packet = typename ei::packet_traits<T>::type;

// Elements per packet of T for this build (1 where Eigen does not vectorize T).
template <typename T>
constexpr int64_t kWidth = ei::unpacket_traits<Packet<T>>::size;

// Whether Eigen evaluates T with packets in this build (not with EIGEN_DONT_VECTORIZE, say).
template <typename T>
constexpr bool kVectorized = ei::packet_traits<T>::Vectorizable;

// Eigen's leaf size of its tree-shaped sums, in packets: 1024 for float and double, 128 for
// bfloat16 (TensorReduction.h's own LeafSize<T>, so a new Eigen brings its own sizes).
template <typename T>
int64_t LeafPackets() {
  return ei::LeafSize<T>();
}

// One leaf of the inner-most-dimension reducer over elements [begin, begin + n) of a row:
// packet_at(j) gives the packet of elements j..j+W-1, coeff_at(j) element j.
template <typename T, typename Reducer, typename PacketAt, typename CoeffAt>
T ReduceLeaf(const Reducer& reducer, int64_t begin, int64_t n, PacketAt packet_at,
             CoeffAt coeff_at) {
  constexpr int64_t W = kWidth<T>;
  using P = Packet<T>;
  if constexpr (!kVectorized<T>) {
    // Eigen without packets for T: one scalar accumulator, in order.
    T acc = reducer.initialize();
    for (int64_t j = 0; j < n; ++j) reducer.reduce(coeff_at(begin + j), &acc);
    return reducer.finalize(acc);
  }
  int64_t start = 0;
  P acc0 = reducer.template initializePacket<P>();
  if (n >= 4 * W) {
    const int64_t whole4 = (n / (4 * W)) * (4 * W);
    P acc1 = reducer.template initializePacket<P>();
    P acc2 = reducer.template initializePacket<P>();
    P acc3 = reducer.template initializePacket<P>();
    for (int64_t j = 0; j < whole4; j += 4 * W) {
      reducer.reducePacket(packet_at(begin + j), &acc0);
      reducer.reducePacket(packet_at(begin + j + W), &acc1);
      reducer.reducePacket(packet_at(begin + j + 2 * W), &acc2);
      reducer.reducePacket(packet_at(begin + j + 3 * W), &acc3);
    }
    reducer.reducePacket(acc1, &acc0);
    reducer.reducePacket(acc2, &acc0);
    reducer.reducePacket(acc3, &acc0);
    start = whole4;
  }
  if (start <= n - W) {
    const int64_t whole = (n / W) * W;
    for (int64_t j = start; j < whole; j += W) reducer.reducePacket(packet_at(begin + j), &acc0);
    start = whole;
  }
  T acc = reducer.initialize();
  for (int64_t j = start; j < n; ++j) reducer.reduce(coeff_at(begin + j), &acc);
  return reducer.finalizeBoth(acc, acc0);
}

// The reducer's tree over [begin, begin + n) of a row whose first element has flat index
// row_first in the tensor: halves longer than LeafPackets<T>() packets are split at the packet
// boundary (counted in flat indices) nearest above their middle.
template <typename T, typename Reducer, typename PacketAt, typename CoeffAt>
T ReduceTree(const Reducer& reducer, int64_t row_first, int64_t begin, int64_t n,
             PacketAt packet_at, CoeffAt coeff_at) {
  constexpr int64_t W = kWidth<T>;
  if (n <= W * LeafPackets<T>()) return ReduceLeaf<T>(reducer, begin, n, packet_at, coeff_at);
  const int64_t first = row_first + begin;
  // Without packets Eigen splits at the middle; with them, at a packet boundary above it.
  const int64_t split = kVectorized<T> ? W * ((first + (n + 1) / 2 + W - 1) / W) : first + n / 2;
  const int64_t left = std::min(split - first, n);
  T acc = reducer.initialize();
  reducer.reduce(ReduceTree<T>(reducer, row_first, begin, left, packet_at, coeff_at), &acc);
  if (left < n) {
    reducer.reduce(ReduceTree<T>(reducer, row_first, begin + left, n - left, packet_at, coeff_at),
                   &acc);
  }
  return reducer.finalize(acc);
}

// Labels of a row as packets of T: per class (stride 1) or one value for every class
// (stride 0); widened exactly from L when L is not T, as TF's cast to T is exact.
template <typename T, typename L>
struct RowLabels {
  const L* y;
  int64_t stride;
  T at(int64_t j) const { return static_cast<T>(y[j * stride]); }
  Packet<T> packet(int64_t j) const {
    if (stride == 0) return ei::pset1<Packet<T>>(at(0));
    if constexpr (std::is_same<T, L>::value) {
      return ei::ploadu<Packet<T>>(y + j);
    } else {
      alignas(64) T lanes[kWidth<T>];
      for (int64_t k = 0; k < kWidth<T>; ++k) lanes[k] = static_cast<T>(y[j + k]);
      return ei::pload<Packet<T>>(lanes);
    }
  }
};

}  // namespace internal

// How many leading elements of an elementwise assignment over `size` elements Eigen evaluates
// with packets: all but the last size mod W, or none without packets.
template <typename T>
int64_t PacketElements(int64_t size) {
  constexpr int64_t W = internal::kWidth<T>;
  return internal::kVectorized<T> ? (size / W) * W : 0;
}

// Whether element `index` of an elementwise assignment over `size` elements runs Eigen's
// packet function (true) or the scalar one (false): only the last size mod W are scalar.
template <typename T>
bool InPacketRange(int64_t index, int64_t size) {
  return index < PacketElements<T>(size);
}

// max_j x_j of a row, by Eigen's max reducer (TF's logits.maximum(along_class)).
template <typename T>
T RowMax(const T* x, int64_t n) {
  namespace ei = Eigen::internal;
  using P = internal::Packet<T>;
  ei::MaxReducer<T> reducer;
  return internal::ReduceLeaf<T>(
      reducer, 0, n, [x](int64_t j) { return ei::ploadu<P>(x + j); },
      [x](int64_t j) { return x[j]; });
}

// Σ_j exp(x_j − m) of a row starting at flat index row_first, by Eigen's sum reducer over
// Eigen's exp functor (TF's backprop.exp().sum(along_class), backprop = x − m).
template <typename T>
T RowSumExp(const T* x, int64_t n, T m, int64_t row_first) {
  namespace ei = Eigen::internal;
  using P = internal::Packet<T>;
  const ei::scalar_exp_op<T> exp_op;
  const P pm = ei::pset1<P>(m);
  ei::SumReducer<T> reducer;
  return internal::ReduceTree<T>(
      reducer, row_first, 0, n,
      [&](int64_t j) { return exp_op.packetOp(ei::psub(ei::ploadu<P>(x + j), pm)); },
      [&](int64_t j) { return exp_op(x[j] - m); });
}

// log s of row `row` of `rows`: TF evaluates scratch.log() over the [rows] vector, so the
// packet plog serves every row but the last rows mod W, which get the scalar log.
template <typename T>
T RowLogSum(T sum_exp, int64_t row, int64_t rows) {
  namespace ei = Eigen::internal;
  const ei::scalar_log_op<T> log_op;
  if (!InPacketRange<T>(row, rows)) return log_op(sum_exp);
  return ei::pfirst(log_op.packetOp(ei::pset1<internal::Packet<T>>(sum_exp)));
}

// Dense loss of a row, term by term in TF's order: Σ_j y_j · (log s − (x_j − m)), the sum by
// Eigen's sum reducer (xent_op.h's loss expression).
template <typename T, typename L>
T RowDenseLoss(const T* x, const L* y, int64_t y_stride, int64_t n, T m, T log_s,
               int64_t row_first) {
  namespace ei = Eigen::internal;
  using P = internal::Packet<T>;
  const internal::RowLabels<T, L> labels{y, y_stride};
  const P pm = ei::pset1<P>(m);
  const P pl = ei::pset1<P>(log_s);
  ei::SumReducer<T> reducer;
  return internal::ReduceTree<T>(
      reducer, row_first, 0, n,
      [&](int64_t j) {
        return ei::pmul(labels.packet(j), ei::psub(pl, ei::psub(ei::ploadu<P>(x + j), pm)));
      },
      [&](int64_t j) { return labels.at(j) * (log_s - (x[j] - m)); });
}

// Sparse loss of a row: TF sums a generated row that is log s − z_l at the label and 0
// elsewhere, with the scalar log; the sum of that one value and zeros is the value itself,
// except that −0 becomes +0.
template <typename T>
T RowSparseLoss(T sum_exp, T x_label, T m) {
  const T loss = Eigen::internal::scalar_log_op<T>()(sum_exp) - (x_label - m);
  return loss == T(0) ? T(0) : loss;
}

// Sparse backprop of elements [begin, begin + n) of a row with flat index row_first, total
// tensor size `size`: g · (exp(x_j − m) / s − [j = label]). TF takes exp over the whole
// tensor (packet but for its last size mod W elements), divides and subtracts per element,
// and its gradient multiplies by g.
template <typename T>
void RowSparseBackprop(const T* x, int64_t begin, int64_t n, int64_t label, T m, T sum_exp, T g,
                       int64_t row_first, int64_t size, T* out) {
  namespace ei = Eigen::internal;
  using P = internal::Packet<T>;
  constexpr int64_t W = internal::kWidth<T>;
  const ei::scalar_exp_op<T> exp_op;
  const P pm = ei::pset1<P>(m);
  const P ps = ei::pset1<P>(sum_exp);
  const P pg = ei::pset1<P>(g);
  const int64_t packet_end = std::max<int64_t>(
      begin,
      std::min(begin + n, PacketElements<T>(size) - row_first));  // row index where scalars start
  int64_t j = begin;
  for (; j + W <= packet_end; j += W) {
    const P e = exp_op.packetOp(ei::psub(ei::ploadu<P>(x + j), pm));
    ei::pstoreu(out + j, ei::pmul(pg, ei::pdiv(e, ps)));
  }
  for (; j < packet_end; ++j) {
    // A packet that straddles this run's end: its lanes are computed by pexp all the same.
    const T e = ei::pfirst(exp_op.packetOp(ei::pset1<P>(x[j] - m)));
    out[j] = g * (e / sum_exp);
  }
  for (; j < begin + n; ++j) out[j] = g * (exp_op(x[j] - m) / sum_exp);
  if (label >= begin && label < begin + n) {
    const bool packet = label < packet_end;
    const T z = x[label] - m;
    const T e = packet ? ei::pfirst(exp_op.packetOp(ei::pset1<P>(z))) : exp_op(z);
    out[label] = g * (e / sum_exp - T(1));
  }
}

// ---- TF 2.16's dense kernel (docs/exactness.md) ---------------------------------------------
// TF 2.16 computes SoftmaxCrossEntropyWithLogits on the CPU with a plain loop over each row
// instead of the Eigen expressions above: a running max, then Σ exp(z_j) with z_j = x_j − m
// added in order, log s, then Σ y_j · (log s − z_j) in order, and the backprop
// exp(z_j) / s − y_j; exp and log are the C library's for every element. The build selects
// these functions for that version (XENT_DENSE_ROW_LOOP, set by tfxent/_build_flags.py).

// max_j x_j, as std::max(m, x_j) from the first element on (so a NaN is kept only when it
// comes first, as TF's loop keeps it).
template <typename T>
T LoopRowMax(const T* x, int64_t n) {
  T m = x[0];
  for (int64_t j = 1; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

// Σ_j exp(x_j − m), one element after the other.
template <typename T>
T LoopRowSumExp(const T* x, int64_t n, T m) {
  T sum = T(0);
  for (int64_t j = 0; j < n; ++j) sum = sum + std::exp(x[j] - m);
  return sum;
}

// Σ_j y_j · (log s − (x_j − m)), one term after the other.
template <typename T, typename L>
T LoopRowDenseLoss(const T* x, const L* y, int64_t y_stride, int64_t n, T m, T log_s) {
  const internal::RowLabels<T, L> labels{y, y_stride};
  T loss = T(0);
  for (int64_t j = 0; j < n; ++j) loss = loss + labels.at(j) * (log_s - (x[j] - m));
  return loss;
}

// g · (exp(x_j − m) / s − y_j): TF's backprop, then its gradient's multiplication by g.
template <typename T, typename L>
void LoopRowDenseBackprop(const T* x, const L* y, int64_t y_stride, int64_t n, T m, T sum_exp, T g,
                          T* out) {
  const internal::RowLabels<T, L> labels{y, y_stride};
  for (int64_t j = 0; j < n; ++j) out[j] = g * (std::exp(x[j] - m) / sum_exp - labels.at(j));
}

// ---- Determinism mode (docs/tf_behaviour.md#determinism) -----------------------------------
// TF builds the loss from ops: log_probs = LogSoftmax(x) (TF's softmax functor: z = x − m,
// then z − log Σ exp(z), the log over the [N] vector as above), then Mul by the labels, a Sum
// over the classes and a Neg. Its gradient is autodiff through them: G = y · (−g), then
// LogSoftmax's gradient G − Σ_j G_j · exp(log_probs), the exp over the whole [N, C] tensor.

// The Sum op over one row: Eigen's sum reducer, except that TF's Sum over a single class
// drops the axis and copies the value (so −0 stays −0).
template <typename T, typename PacketAt, typename CoeffAt>
T RowSumOp(int64_t n, int64_t row_first, PacketAt packet_at, CoeffAt coeff_at) {
  if (n == 1) return coeff_at(0);
  Eigen::internal::SumReducer<T> reducer;
  return internal::ReduceTree<T>(reducer, row_first, 0, n, packet_at, coeff_at);
}

// The Mul op's term y_j · log_probs_j, log_probs_j = (x_j − m) − log s. Elementwise
// multiplies and subtractions round the same in packets and scalars, so one formula serves.
template <typename T, typename L>
T DeterministicLossTerm(const T* x, const internal::RowLabels<T, L>& labels, int64_t j, T m,
                        T log_s) {
  return labels.at(j) * ((x[j] - m) - log_s);
}

// −Σ_j y_j · ((x_j − m) − log s), for a row of a tensor of several rows (a single row's Sum
// is a full reduction on the thread pool, which the kernel evaluates with Eigen itself).
template <typename T, typename L>
T RowDeterministicLoss(const T* x, const L* y, int64_t y_stride, int64_t n, T m, T log_s,
                       int64_t row_first) {
  namespace ei = Eigen::internal;
  using P = internal::Packet<T>;
  const internal::RowLabels<T, L> labels{y, y_stride};
  const P pm = ei::pset1<P>(m);
  const P pl = ei::pset1<P>(log_s);
  return -RowSumOp<T>(
      n, row_first,
      [&](int64_t j) {
        return ei::pmul(labels.packet(j), ei::psub(ei::psub(ei::ploadu<P>(x + j), pm), pl));
      },
      [&](int64_t j) { return DeterministicLossTerm(x, labels, j, m, log_s); });
}

// S = Σ_j G_j, G_j = y_j · (−g), by the Sum op, for a row of a tensor of several rows.
template <typename T, typename L>
T RowDeterministicGradSum(const L* y, int64_t y_stride, int64_t n, T g, int64_t row_first) {
  namespace ei = Eigen::internal;
  const internal::RowLabels<T, L> labels{y, y_stride};
  const T neg_g = -g;
  const auto png = ei::pset1<internal::Packet<T>>(neg_g);
  return RowSumOp<T>(
      n, row_first, [&](int64_t j) { return ei::pmul(labels.packet(j), png); },
      [&](int64_t j) { return labels.at(j) * neg_g; });
}

// G_j − S · exp((x_j − m) − log s),  G_j = y_j · (−g),  S = Σ_j G_j  (the Sum op's result,
// from the caller); exp is the packet function but for the tensor's last size mod W elements.
template <typename T, typename L>
void RowDeterministicBackprop(const T* x, const L* y, int64_t y_stride, int64_t n, T m, T log_s,
                              T g, T sum, int64_t row_first, int64_t size, T* out) {
  namespace ei = Eigen::internal;
  using P = internal::Packet<T>;
  constexpr int64_t W = internal::kWidth<T>;
  const internal::RowLabels<T, L> labels{y, y_stride};
  const T neg_g = -g;
  const P png = ei::pset1<P>(neg_g);
  const ei::scalar_exp_op<T> exp_op;
  const P pm = ei::pset1<P>(m);
  const P pl = ei::pset1<P>(log_s);
  const P psum = ei::pset1<P>(sum);
  const int64_t packet_end = std::max<int64_t>(0, std::min(n, PacketElements<T>(size) - row_first));
  int64_t j = 0;
  for (; j + W <= packet_end; j += W) {
    const P e = exp_op.packetOp(ei::psub(ei::psub(ei::ploadu<P>(x + j), pm), pl));
    ei::pstoreu(out + j, ei::psub(ei::pmul(labels.packet(j), png), ei::pmul(psum, e)));
  }
  for (; j < n; ++j) {
    const T ls = (x[j] - m) - log_s;
    const T e = j < packet_end ? ei::pfirst(exp_op.packetOp(ei::pset1<P>(ls))) : exp_op(ls);
    out[j] = labels.at(j) * neg_g - sum * e;
  }
}

// Sparse determinism mode: the gradient of −gather(log_probs, label) is G = −g at the label
// and +0 elsewhere; then LogSoftmax's gradient G_j − S · exp((x_j − m) − log s). S, the Sum
// op over G, is −g itself (a one-class row is copied; otherwise adding +0s turns −0 into +0).
template <typename T>
void RowSparseDeterministicBackprop(const T* x, int64_t n, int64_t label, T m, T log_s, T g,
                                    int64_t row_first, int64_t size, T* out) {
  namespace ei = Eigen::internal;
  using P = internal::Packet<T>;
  constexpr int64_t W = internal::kWidth<T>;
  const T neg_g = -g;
  const T sum = (n == 1 || neg_g != T(0)) ? neg_g : T(0);
  const ei::scalar_exp_op<T> exp_op;
  const P pm = ei::pset1<P>(m);
  const P pl = ei::pset1<P>(log_s);
  const P psum = ei::pset1<P>(sum);
  const P zero = ei::pset1<P>(T(0));
  const int64_t packet_end = std::max<int64_t>(0, std::min(n, PacketElements<T>(size) - row_first));
  int64_t j = 0;
  for (; j + W <= packet_end; j += W) {
    const P e = exp_op.packetOp(ei::psub(ei::psub(ei::ploadu<P>(x + j), pm), pl));
    ei::pstoreu(out + j, ei::psub(zero, ei::pmul(psum, e)));
  }
  for (; j < n; ++j) {
    const T ls = (x[j] - m) - log_s;
    const T e = j < packet_end ? ei::pfirst(exp_op.packetOp(ei::pset1<P>(ls))) : exp_op(ls);
    out[j] = T(0) - sum * e;
  }
  if (label < 0 || label >= n) return;  // the forward op has rejected such labels
  const T ls = (x[label] - m) - log_s;
  const T e = label < packet_end ? ei::pfirst(exp_op.packetOp(ei::pset1<P>(ls))) : exp_op(ls);
  out[label] = neg_g - sum * e;
}

}  // namespace exact
}  // namespace tfxent

#endif  // TFXENT_CC_XENT_EXACT_H_
