// CPU kernels for the ops of xent_ops.cc: validate inputs with TF's messages, allocate the
// outputs, split the rows over TF's intra-op thread pool and call the row math of xent_rows.h.
//
// Work unit: one (row, class chunk) pair. A row longer than kClassChunk is always cut at the
// same multiples of kClassChunk and its chunk statistics are merged in chunk order, so a
// result never depends on how many threads ran or how the pool sharded the units (results
// are bit-identical for any intra-op thread count), and a few rows with a huge class count
// still spread over every thread.

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/util/bcast.h"
#include "tensorflow/core/util/work_sharder.h"
#include "xent_exact.h"
#include "xent_layout.h"
#include "xent_rows.h"

namespace tfxent {

using ::tensorflow::BCast;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::TensorShapeUtils;
namespace errors = ::tensorflow::errors;

namespace {

// Where long rows are cut. 32768 f32 classes are 128 KiB: a chunk's second sweep over its
// L1-sized blocks never leaves L2, and [8, 10^6] still yields 248 units for the pool.
constexpr int64_t kClassChunk = 32768;
// Cycles per element of a forward or backward sweep, for the pool's cost model: measured
// 0.8-1.5 (f32, f16, bf16) and 2.4-3.2 (f64) on one core of the 2.6 GHz AVX-512 dev VM, output
// allocation included, and rounded up. The pool (Eigen's cost model) runs work of under
// ~2e5 cycles inline, where waking a second thread costs more than it saves; an estimate
// several times too high made it split [128, 1000] calls and run them slower than on one
// thread.
template <typename A>
constexpr double kCyclesPerElement = sizeof(A) == sizeof(double) ? 3.0 : 1.5;

int64_t ChunksPerRow(int64_t classes) {
  return std::max<int64_t>(1, (classes + kClassChunk - 1) / kClassChunk);
}

// One work unit: classes [begin, begin + size) of row `row`.
struct Unit {
  int64_t row;
  int64_t begin;
  int64_t size;
};

// Unit u is chunk u mod chunks of row u / chunks.
Unit UnitAt(int64_t u, int64_t classes) {
  const int64_t chunks = ChunksPerRow(classes);
  const int64_t begin = (u % chunks) * kClassChunk;
  return {u / chunks, begin, std::min(kClassChunk, classes - begin)};
}

// Runs work(first_unit, end_unit) over ranges of the rows × chunks units on TF's intra-op
// pool; A is the compute type, which sets the cost per element.
template <typename A, typename Work>
void ShardUnits(OpKernelContext* ctx, int64_t rows, int64_t classes, Work work) {
  const auto& threads = *ctx->device()->tensorflow_cpu_worker_threads();
  const auto unit_cycles =
      static_cast<int64_t>(std::min(classes, kClassChunk) * kCyclesPerElement<A>);
  ::tensorflow::Shard(threads.num_threads, threads.workers, rows * ChunksPerRow(classes),
                      std::max<int64_t>(1, unit_cycles), work);
}

// Runs fn(unit) for every unit on TF's intra-op pool.
template <typename A, typename Fn>
void ForEachUnit(OpKernelContext* ctx, int64_t rows, int64_t classes, Fn fn) {
  ShardUnits<A>(ctx, rows, classes, [&](int64_t first, int64_t end) {
    for (int64_t u = first; u < end; ++u) fn(UnitAt(u, classes));
  });
}

// The rows of a dense call after TF's BCast (xent_op.cc): x is [rows, classes] row-major;
// labels are read with zero strides where they broadcast ([1, C], [N, 1], [C], scalar).
template <typename T, typename L>
struct DenseRows {
  const T* x = nullptr;
  const L* y = nullptr;
  int64_t y_row_stride = 0;
  int64_t y_col_stride = 0;
  int64_t rows = 0;
  int64_t classes = 0;
  Tensor x_broadcast;  // owns logits materialised to [rows, classes] when *they* broadcast

  const T* x_row(int64_t i) const { return x + i * classes; }
  const L* y_row(int64_t i) const { return y + i * y_row_stride; }
  const T* x_at(const Unit& unit) const { return x_row(unit.row) + unit.begin; }
  const L* y_at(const Unit& unit) const { return y_row(unit.row) + unit.begin * y_col_stride; }
};

// A rank <= 2 shape as [rows, cols], padding leading dimensions with 1 (BCast's rule).
void AsMatrix(const TensorShape& shape, int64_t* rows, int64_t* cols) {
  const int d = shape.dims();
  *cols = d >= 1 ? shape.dim_size(d - 1) : 1;
  *rows = d >= 2 ? shape.dim_size(d - 2) : 1;
}

template <typename T, typename L>
::tensorflow::Status PrepareDense(OpKernelContext* ctx, const Tensor& logits, const Tensor& labels,
                                  bool deterministic, DenseRows<T, L>* out) {
  TensorShape shape = logits.shape();
  if (logits.shape() != labels.shape()) {
    BCast bcast(BCast::FromShape(logits.shape()), BCast::FromShape(labels.shape()),
                /*fewer_dims_optimization=*/false);
    if (!bcast.IsValid()) {
      // Determinism mode: TF multiplies labels by log_softmax(logits) and Mul's broadcast
      // check fires (docs/tf_behaviour.md#determinism); otherwise the kernel's BCast message
      // (docs/tf_behaviour.md#dense-kernel).
      if (deterministic) {
        return errors::InvalidArgument("Incompatible shapes: ", labels.shape().DebugString(),
                                       " vs. ", logits.shape().DebugString());
      }
      return errors::InvalidArgument(
          "logits and labels must be broadcastable: logits_size=", logits.shape().DebugString(),
          " labels_size=", labels.shape().DebugString());
    }
    shape = BCast::ToShape(bcast.output_shape());
  }
  if (shape.dims() != 2) {
    return errors::InvalidArgument(
        "logits and labels must be either 2-dimensional, or broadcasted to be 2-dimensional");
  }
  out->rows = shape.dim_size(0);
  out->classes = shape.dim_size(1);

  int64_t y_rows, y_cols;
  AsMatrix(labels.shape(), &y_rows, &y_cols);
  out->y = labels.flat<L>().data();
  out->y_col_stride = y_cols == 1 ? 0 : 1;
  out->y_row_stride = y_rows == 1 ? 0 : y_cols;

  int64_t x_rows, x_cols;
  AsMatrix(logits.shape(), &x_rows, &x_cols);
  out->x = logits.flat<T>().data();
  if (x_rows != out->rows || x_cols != out->classes) {
    // Logits broadcast against labels (e.g. [N, 1] vs [N, C],
    // docs/tf_behaviour.md#dense-values-and-broadcasting): rare enough that a
    // materialised copy is simpler than a second stride pattern in every row function.
    TF_RETURN_IF_ERROR(ctx->allocate_temp(logits.dtype(), shape, &out->x_broadcast));
    T* dst = out->x_broadcast.template flat<T>().data();
    for (int64_t i = 0; i < out->rows; ++i) {
      for (int64_t j = 0; j < out->classes; ++j) {
        dst[i * out->classes + j] = out->x[(x_rows == 1 ? 0 : i) * x_cols + (x_cols == 1 ? 0 : j)];
      }
    }
    out->x = dst;
  }
  return ::tensorflow::OkStatus();
}

template <typename A>
void StoreRowStats(const RowAccumulator<A>& acc, double* stats) {
  stats[0] = static_cast<double>(acc.max);
  stats[1] = static_cast<double>(acc.sum_exp);
  stats[2] = static_cast<double>(acc.sum_y);
}

// Computes every row's merged accumulator with `accumulate(unit_a, unit_b)`, which returns
// the statistics of two units (the AccumulatePair functions; unit_b may be empty), and hands
// it to `finish(row, acc)`. Rows of a single chunk finish inside their unit; longer rows
// merge their chunk statistics afterwards, in chunk order. How units are paired follows the
// pool's sharding, which cannot change a result: a pair's statistics are bit-identical to
// its units' own.
template <typename A, typename Accumulate, typename Finish>
void ReduceRows(OpKernelContext* ctx, int64_t rows, int64_t classes, Accumulate accumulate,
                Finish finish) {
  const int64_t chunks = ChunksPerRow(classes);
  std::vector<RowAccumulator<A>> partial(chunks == 1 ? 0 : rows * chunks);
  auto store = [&](const Unit& unit, const RowAccumulator<A>& acc) {
    if (chunks == 1) {
      finish(unit.row, acc);
    } else {
      partial[unit.row * chunks + unit.begin / kClassChunk] = acc;
    }
  };
  ShardUnits<A>(ctx, rows, classes, [&](int64_t first, int64_t end) {
    // Why two at a time: see AccumulatePair (xent_rows.h). An odd last unit goes with an
    // empty one.
    for (int64_t u = first; u < end; u += 2) {
      const Unit a = UnitAt(u, classes);
      const Unit b = u + 1 < end ? UnitAt(u + 1, classes) : Unit{a.row, a.begin, 0};
      const auto acc = accumulate(a, b);
      store(a, acc[0]);
      if (b.size > 0) store(b, acc[1]);
    }
  });
  if (chunks == 1) return;
  for (int64_t row = 0; row < rows; ++row) {
    RowAccumulator<A> acc = partial[row * chunks];
    for (int64_t k = 1; k < chunks; ++k) acc = Merge(acc, partial[row * chunks + k]);
    finish(row, acc);
  }
}

// A zero loss carries TF's sign: its kernel sums from +0 (so +0), while its determinism
// path negates such a sum (so −0, docs/tf_behaviour.md#numerics,
// docs/tf_behaviour.md#determinism). Rounding can leave either sign here.
template <typename A>
A SignedLikeTf(A loss, bool deterministic) {
  if (loss != A(0)) return loss;
  return deterministic ? -A(0) : A(0);
}

// One dense row's loss from its merged statistics, as TF computes it.
template <typename T, typename L, typename A>
A DenseRowLoss(const DenseRows<T, L>& in, int64_t i, const RowAccumulator<A>& acc,
               bool deterministic) {
  using std::isfinite;
  const A loss = DenseLoss(acc, deterministic);
  if (acc.max != -std::numeric_limits<A>::infinity() &&
      !(isfinite(loss) && isfinite(acc.sum_y) && isfinite(acc.sum_y_z))) {
    // Huge labels or special values: TF's term-by-term sum (see DenseLossByTerms).
    return SignedLikeTf(DenseLossByTerms(in.x_row(i), in.y_row(i), in.y_col_stride, in.classes,
                                         acc.max, acc.sum_exp, deterministic),
                        deterministic);
  }
  if (deterministic && in.classes == 1 && loss == A(0)) {
    // TF's reduce_sum over a single class is a copy, not a sum from +0, so the one term
    // y·log_softmax = y·(+0) keeps the label's sign before the negation
    // (docs/tf_behaviour.md#determinism).
    return -(static_cast<A>(in.y_row(i)[0]) * A(0));
  }
  return SignedLikeTf(loss, deterministic);
}

// Whether a call takes the exact row functions of xent_exact.h, which return TF's kernels'
// bits (docs/exactness.md): float and double. The other types run the blocked single-pass
// functions of xent_rows.h.
template <typename T>
constexpr bool kHasExactPath = std::is_same<T, float>::value || std::is_same<T, double>::value;
// Whether the installed TF's dense kernel is the plain row loop of TF 2.16 rather than Eigen
// expressions: defined by tfxent/_build_flags.py from tfxent/_versions.py
// ("dense_kernel_row_loop"), since the op is compiled against one TF version.
#ifndef XENT_DENSE_ROW_LOOP
#define XENT_DENSE_ROW_LOOP 0
#endif
constexpr bool kDenseRowLoop = XENT_DENSE_ROW_LOOP != 0;
// The sparse ops also take them for bfloat16: TF's sparse kernel and its determinism path
// (LogSoftmax) compute in bfloat16, every Eigen operation rounded to it, and the same row
// functions instantiated for bfloat16 do the same (docs/exactness.md). Dense bfloat16 and all
// float16 calls never reach these ops in their own type: the core widens them to float32 where
// TF does.
template <typename T>
constexpr bool kHasExactSparsePath = kHasExactPath<T> || std::is_same<T, Eigen::bfloat16>::value;

// Runs fn(row) for every row on TF's intra-op pool, `passes` sweeps of `classes` each. A row
// is never split: each is reduced whole, as Eigen's reducer does, so results do not depend on
// the thread count.
template <typename A, typename Fn>
void ForEachRow(OpKernelContext* ctx, int64_t rows, int64_t classes, int passes, Fn fn) {
  const auto& threads = *ctx->device()->tensorflow_cpu_worker_threads();
  const auto row_cycles = static_cast<int64_t>(classes * passes * kCyclesPerElement<A>);
  ::tensorflow::Shard(threads.num_threads, threads.workers, rows, std::max<int64_t>(1, row_cycles),
                      [&](int64_t first, int64_t end) {
                        for (int64_t i = first; i < end; ++i) fn(i);
                      });
}

// TF's Sum op over the classes of a tensor with a single row (determinism mode): TF's
// reduction helper drops the size-1 axis, so Eigen runs a *full* reduction on the intra-op
// pool, summing one block per thread its cost model grants and then the blocks' sums
// (docs/exactness.md). So the terms are materialised, as TF's Mul output is, and summed by the
// same expression on the same device. One class is a copy, not a sum (−0 stays −0).
template <typename T, typename Term>
::tensorflow::Status SingleRowSumOp(OpKernelContext* ctx, int64_t classes, Term term, T* sum) {
  if (classes == 1) {
    *sum = term(0);
    return ::tensorflow::OkStatus();
  }
  Tensor terms, result;
  const ::tensorflow::DataType dtype = ::tensorflow::DataTypeToEnum<T>::value;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(dtype, TensorShape({classes}), &terms));
  TF_RETURN_IF_ERROR(ctx->allocate_temp(dtype, TensorShape({}), &result));
  auto flat = terms.flat<T>();
  for (int64_t j = 0; j < classes; ++j) flat(j) = term(j);
  const Eigen::IndexList<Eigen::type2index<0>> only_axis;
  result.tensor<T, 0>().device(ctx->eigen_device<Eigen::ThreadPoolDevice>()) =
      terms.tensor<T, 1>().reduce(only_axis, Eigen::internal::SumReducer<T>());
  *sum = result.tensor<T, 0>()();
  return ::tensorflow::OkStatus();
}

// loss_i = Σ_j y_ij·(log s_i − z_ij), z = x − max (docs/tf_behaviour.md#dense-kernel);
// deterministic: docs/tf_behaviour.md#determinism.
template <typename T, typename L>
class DenseXentOp : public OpKernel {
 public:
  explicit DenseXentOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("deterministic", &deterministic_));
  }

  void Compute(OpKernelContext* ctx) override {
    using A = typename Widen<T>::type;
    DenseRows<T, L> in;
    OP_REQUIRES_OK(ctx, PrepareDense(ctx, ctx->input(0), ctx->input(1), deterministic_, &in));
    Tensor* loss = nullptr;
    Tensor* stats = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({in.rows}), &loss));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({in.rows, kRowStats}), &stats));
    T* loss_out = loss->flat<T>().data();
    double* stats_out = stats->flat<double>().data();
    if (in.rows == 0) return;
    if (in.classes == 0) {
      // An empty sum: TF returns 0, and −0 from the determinism path's negation
      // (docs/tf_behaviour.md#determinism).
      std::fill_n(loss_out, in.rows, static_cast<T>(deterministic_ ? -0.0f : 0.0f));
      for (int64_t i = 0; i < in.rows; ++i) {
        StoreRowStats(RowAccumulator<A>{-std::numeric_limits<A>::infinity(), A(0), A(0), A(0)},
                      stats_out + i * kRowStats);
      }
      return;
    }
    if constexpr (kHasExactPath<T>) {
      if (deterministic_ && in.rows == 1) {
        const T* x = in.x_row(0);
        const T m = exact::RowMax(x, in.classes);
        const T s = exact::RowSumExp(x, in.classes, m, 0);
        const T log_s = exact::RowLogSum(s, 0, 1);
        const exact::internal::RowLabels<T, L> labels{in.y_row(0), in.y_col_stride};
        T sum;
        OP_REQUIRES_OK(ctx, SingleRowSumOp<T>(
                                ctx, in.classes,
                                [&](int64_t j) {
                                  return exact::DeterministicLossTerm(x, labels, j, m, log_s);
                                },
                                &sum));
        loss_out[0] = -sum;
        StoreRowStats(RowAccumulator<A>{m, s, A(0), A(0)}, stats_out);
        return;
      }
      if (kDenseRowLoop && !deterministic_) {
        // TF 2.16's kernel: a plain loop over each row (xent_exact.h).
        ForEachRow<A>(ctx, in.rows, in.classes, 3, [&](int64_t i) {
          const T* x = in.x_row(i);
          const T m = exact::LoopRowMax(x, in.classes);
          const T s = exact::LoopRowSumExp(x, in.classes, m);
          loss_out[i] =
              exact::LoopRowDenseLoss(x, in.y_row(i), in.y_col_stride, in.classes, m, std::log(s));
          StoreRowStats(RowAccumulator<A>{m, s, A(0), A(0)}, stats_out + i * kRowStats);
        });
        return;
      }
      // TF's kernel, row by row (xent_exact.h): max, Σ exp, log s, then Σ y·(log s − z), or
      // in determinism mode −Σ y·(z − log s).
      ForEachRow<A>(ctx, in.rows, in.classes, 3, [&](int64_t i) {
        const T* x = in.x_row(i);
        const int64_t first = i * in.classes;
        const T m = exact::RowMax(x, in.classes);
        const T s = exact::RowSumExp(x, in.classes, m, first);
        const T log_s = exact::RowLogSum(s, i, in.rows);
        const auto* y = in.y_row(i);
        loss_out[i] =
            deterministic_
                ? exact::RowDeterministicLoss(x, y, in.y_col_stride, in.classes, m, log_s, first)
                : exact::RowDenseLoss(x, y, in.y_col_stride, in.classes, m, log_s, first);
        StoreRowStats(RowAccumulator<A>{m, s, A(0), A(0)}, stats_out + i * kRowStats);
      });
      return;
    }
    ReduceRows<A>(
        ctx, in.rows, in.classes,
        [&](const Unit& a, const Unit& b) {
          return AccumulateDensePair(in.x_at(a), in.y_at(a), a.size, in.x_at(b), in.y_at(b), b.size,
                                     in.y_col_stride);
        },
        [&](int64_t i, const RowAccumulator<A>& acc) {
          loss_out[i] = static_cast<T>(DenseRowLoss(in, i, acc, deterministic_));
          StoreRowStats(acc, stats_out + i * kRowStats);
        });
  }

 private:
  bool deterministic_ = false;
};

// Checks that a gradient op's saved statistics and upstream gradient match its rows.
::tensorflow::Status CheckGradInputs(const Tensor& stats, const Tensor& grad_loss, int64_t rows) {
  if (stats.dims() != 2 || stats.dim_size(0) != rows || stats.dim_size(1) != kRowStats) {
    return errors::InvalidArgument("row_stats must be [", rows, ",", kRowStats, "], but got shape ",
                                   stats.shape().DebugString());
  }
  // One upstream value may broadcast over the rows, as TF's gradient multiplies with
  // broadcasting: with dynamic shapes the static loss shape can be [1]
  // (docs/tf_behaviour.md#gradients).
  if (grad_loss.dims() != 1 || (grad_loss.dim_size(0) != rows && grad_loss.dim_size(0) != 1)) {
    return errors::InvalidArgument("grad_loss must be [", rows, "], but got shape ",
                                   grad_loss.shape().DebugString());
  }
  return ::tensorflow::OkStatus();
}

// TF's dense backprop, g · (exp(z) / s − y), as the same Eigen expressions on the same device.
// Why not a row loop: Eigen evaluates `exp(z) / s − y` in tiles whose shape its cost model
// picks, and the scalar exp runs on each tile's last (size mod W) elements; evaluating the
// identical expression reproduces those tiles without restating Eigen's tiling here.
template <typename T, typename L>
::tensorflow::Status ExactDenseBackprop(OpKernelContext* ctx, const DenseRows<T, L>& in,
                                        const Tensor& labels, const double* row_stats, const T* g,
                                        int64_t g_stride, Tensor* backprop) {
  using Matrix = typename ::tensorflow::TTypes<T>::Matrix;
  using ConstMatrix = typename ::tensorflow::TTypes<T>::ConstMatrix;
  const auto& d = ctx->eigen_device<Eigen::ThreadPoolDevice>();
  const int64_t rows = in.rows;
  const int64_t classes = in.classes;
  Tensor max_t, sum_t, g_t;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(backprop->dtype(), TensorShape({rows, 1}), &max_t));
  TF_RETURN_IF_ERROR(ctx->allocate_temp(backprop->dtype(), TensorShape({rows, 1}), &sum_t));
  TF_RETURN_IF_ERROR(ctx->allocate_temp(backprop->dtype(), TensorShape({rows, 1}), &g_t));
  Matrix max_m = max_t.matrix<T>(), sum_m = sum_t.matrix<T>(), g_m = g_t.matrix<T>();
  for (int64_t i = 0; i < rows; ++i) {
    max_m(i, 0) = static_cast<T>(row_stats[i * kRowStats]);
    sum_m(i, 0) = static_cast<T>(row_stats[i * kRowStats + 1]);
    g_m(i, 0) = g[i * g_stride];
  }
  // Labels as TF's kernel sees them: in T, at their own [rows or 1, classes or 1] shape.
  int64_t y_rows, y_cols;
  AsMatrix(labels.shape(), &y_rows, &y_cols);
  Tensor y_t;
  const T* y = reinterpret_cast<const T*>(in.y);
  if (!std::is_same<T, L>::value) {
    TF_RETURN_IF_ERROR(ctx->allocate_temp(backprop->dtype(), TensorShape({y_rows, y_cols}), &y_t));
    T* dst = y_t.flat<T>().data();
    for (int64_t k = 0; k < y_rows * y_cols; ++k) dst[k] = static_cast<T>(in.y[k]);
    y = dst;
  }
  ConstMatrix y_m(y, y_rows, y_cols);
  const Eigen::array<Eigen::DenseIndex, 2> y_bcast{rows / y_rows, classes / y_cols};
  Eigen::IndexList<Eigen::type2index<1>, int> one_by_class;
  one_by_class.set(1, static_cast<int>(classes));
  Matrix out = backprop->matrix<T>();
  ConstMatrix x_m(in.x, rows, classes);
  out.device(d) = x_m - max_m.broadcast(one_by_class);
  out.device(d) = (out.exp() / sum_m.broadcast(one_by_class)) - y_m.broadcast(y_bcast);
  out.device(d) = g_m.broadcast(one_by_class) * out;  // TF's gradient: a Mul by g
  return ::tensorflow::OkStatus();
}

// backprop_ij = g_i·(exp(z_ij)/s_i·scale_i − y_ij); scale = 1 (TF's kernel,
// docs/tf_behaviour.md#gradients) or
// Σ_j y_ij (the true gradient of the determinism path, docs/tf_behaviour.md#determinism).
template <typename T, typename L>
class DenseXentGradOp : public OpKernel {
 public:
  explicit DenseXentGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("deterministic", &deterministic_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("exact", &exact_));
  }

  void Compute(OpKernelContext* ctx) override {
    using A = typename Widen<T>::type;
    DenseRows<T, L> in;
    OP_REQUIRES_OK(ctx, PrepareDense(ctx, ctx->input(0), ctx->input(1), deterministic_, &in));
    const Tensor& stats = ctx->input(2);
    const Tensor& grad_loss = ctx->input(3);
    OP_REQUIRES_OK(ctx, CheckGradInputs(stats, grad_loss, in.rows));
    Tensor* backprop = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({in.rows, in.classes}), &backprop));
    if (in.rows == 0 || in.classes == 0) return;
    const double* row_stats = stats.flat<double>().data();
    const T* g = grad_loss.flat<T>().data();
    const int64_t g_stride = grad_loss.dim_size(0) == 1 ? 0 : 1;
    T* out = backprop->flat<T>().data();
    if constexpr (kHasExactPath<T>) {
      if (kDenseRowLoop && !deterministic_) {
        // TF 2.16's kernel: a plain loop over each row (xent_exact.h).
        ForEachRow<A>(ctx, in.rows, in.classes, 1, [&](int64_t i) {
          const double* st = row_stats + i * kRowStats;
          exact::LoopRowDenseBackprop(in.x_row(i), in.y_row(i), in.y_col_stride, in.classes,
                                      static_cast<T>(st[0]), static_cast<T>(st[1]), g[i * g_stride],
                                      out + i * in.classes);
        });
        return;
      }
      if (!deterministic_ && exact_) {
        OP_REQUIRES_OK(
            ctx, ExactDenseBackprop(ctx, in, ctx->input(1), row_stats, g, g_stride, backprop));
        return;
      }
      if (deterministic_) {
        // Determinism mode: autodiff through TF's LogSoftmax, Mul, Sum and Neg, row by row.
        T single_row_sum = T(0);
        if (in.rows == 1) {
          const exact::internal::RowLabels<T, L> labels{in.y_row(0), in.y_col_stride};
          const T neg_g = -g[0];
          OP_REQUIRES_OK(ctx, SingleRowSumOp<T>(
                                  ctx, in.classes, [&](int64_t j) { return labels.at(j) * neg_g; },
                                  &single_row_sum));
        }
        ForEachRow<A>(ctx, in.rows, in.classes, 3, [&](int64_t i) {
          const double* st = row_stats + i * kRowStats;
          const T log_s = exact::RowLogSum(static_cast<T>(st[1]), i, in.rows);
          const T sum = in.rows == 1 ? single_row_sum
                                     : exact::RowDeterministicGradSum<T>(
                                           in.y_row(i), in.y_col_stride, in.classes,
                                           g[i * g_stride], i * in.classes);
          exact::RowDeterministicBackprop(
              in.x_row(i), in.y_row(i), in.y_col_stride, in.classes, static_cast<T>(st[0]), log_s,
              g[i * g_stride], sum, i * in.classes, in.rows * in.classes, out + i * in.classes);
        });
        return;
      }
    }
    // Half types, and the one-pass backward of the TFXENT_FAST_BACKPROP opt-in (exact = false).
    ForEachUnit<A>(ctx, in.rows, in.classes, [&](const Unit& unit) {
      const int64_t i = unit.row;
      const double* s = row_stats + i * kRowStats;
      const A scale = deterministic_ ? static_cast<A>(s[2]) : A(1);
      WriteDenseBackprop(in.x_at(unit), in.y_at(unit), in.y_col_stride, unit.size,
                         static_cast<A>(s[0]), static_cast<A>(s[1]),
                         static_cast<A>(g[i * g_stride]), scale, out + i * in.classes + unit.begin);
    });
  }

 private:
  bool deterministic_ = false;
  bool exact_ = true;
};

// TF's sparse kernel checks, in TF's order (docs/tf_behaviour.md#sparse-forward); in determinism
// mode TF gathers with
// batch_dims=1 instead, whose batch check words the mismatch differently
// (docs/tf_behaviour.md#determinism).
::tensorflow::Status CheckSparseShapes(const Tensor& logits, const Tensor& labels,
                                       bool deterministic) {
  if (!TensorShapeUtils::IsMatrix(logits.shape())) {
    return errors::InvalidArgument("logits must be 2-D, but got shape ",
                                   logits.shape().DebugString());
  }
  if (!TensorShapeUtils::IsVector(labels.shape())) {
    return errors::InvalidArgument("labels must be 1-D, but got shape ",
                                   labels.shape().DebugString());
  }
  if (logits.dim_size(0) != labels.dim_size(0)) {
    if (deterministic) {
      return errors::InvalidArgument("params.shape[0]: ", logits.dim_size(0),
                                     " should be equal to indices.shape[0]: ", labels.dim_size(0));
    }
    return errors::InvalidArgument(
        "logits and labels must have the same first dimension, got logits shape ",
        logits.shape().DebugString(), " and labels shape ", labels.shape().DebugString());
  }
  return ::tensorflow::OkStatus();
}

// Every label must lie in [0, C) before any logit is read with it. TF's kernel reports the
// minimum when it is negative, else the maximum, followed by all label values
// (docs/tf_behaviour.md#sparse-forward);
// the determinism path's gather reports the first bad position instead
// (docs/tf_behaviour.md#determinism).
template <typename Index>
::tensorflow::Status CheckLabelRange(const Tensor& labels, int64_t classes, bool deterministic) {
  const Index* label = labels.flat<Index>().data();
  const int64_t n = labels.NumElements();
  if (n == 0) return ::tensorflow::OkStatus();
  if (deterministic) {
    for (int64_t i = 0; i < n; ++i) {
      if (label[i] < 0 || label[i] >= classes) {
        return errors::InvalidArgument("indices[", i, "] = ", label[i], " is not in [0, ", classes,
                                       ")");
      }
    }
    return ::tensorflow::OkStatus();
  }
  const auto [lowest, highest] = std::minmax_element(label, label + n);
  if (*lowest < 0 || *highest >= classes) {
    const int64_t bad = *lowest < 0 ? *lowest : *highest;
    return errors::InvalidArgument("Received a label value of ", bad,
                                   " which is outside the valid range of [0, ", classes,
                                   ").  Label values: ", labels.SummarizeValue(n));
  }
  return ::tensorflow::OkStatus();
}

// loss_i = log s_i − z_i,label_i (docs/tf_behaviour.md#sparse-forward); deterministic:
// −(z_i,label_i − log s_i) (docs/tf_behaviour.md#determinism).
template <typename T, typename Index>
class SparseXentOp : public OpKernel {
 public:
  explicit SparseXentOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("deterministic", &deterministic_));
  }

  void Compute(OpKernelContext* ctx) override {
    using A = typename Widen<T>::type;
    const Tensor& logits = ctx->input(0);
    const Tensor& labels = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckSparseShapes(logits, labels, deterministic_));
    const int64_t rows = logits.dim_size(0);
    const int64_t classes = logits.dim_size(1);
    // TF checks the class count before the empty-batch short-cut, so [0, 0] fails too; the
    // determinism path has no such check and fails in its gather instead.
    OP_REQUIRES(ctx, deterministic_ || classes > 0,
                errors::InvalidArgument("Must have at least one class, but got logits shape ",
                                        logits.shape().DebugString()));
    if (rows > 0) OP_REQUIRES_OK(ctx, CheckLabelRange<Index>(labels, classes, deterministic_));
    Tensor* loss = nullptr;
    Tensor* stats = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({rows}), &loss));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({rows, kRowStats}), &stats));
    if (rows == 0) return;
    const T* x = logits.flat<T>().data();
    const Index* label = labels.flat<Index>().data();
    T* loss_out = loss->flat<T>().data();
    double* stats_out = stats->flat<double>().data();
    if constexpr (kHasExactSparsePath<T>) {
      // TF's kernel, row by row (xent_exact.h): max, Σ exp, then log s − z_label; in
      // determinism mode −(z_label − log s), the negated gather of TF's LogSoftmax.
      ForEachRow<A>(ctx, rows, classes, 2, [&](int64_t i) {
        const T* row = x + i * classes;
        const T m = exact::RowMax(row, classes);
        const T s = exact::RowSumExp(row, classes, m, i * classes);
        loss_out[i] = deterministic_ ? -((row[label[i]] - m) - exact::RowLogSum(s, i, rows))
                                     : exact::RowSparseLoss(s, row[label[i]], m);
        StoreRowStats(RowAccumulator<A>{static_cast<A>(m), static_cast<A>(s), A(0), A(0)},
                      stats_out + i * kRowStats);
      });
      return;
    }
    ReduceRows<A>(
        ctx, rows, classes,
        [&](const Unit& a, const Unit& b) {
          return AccumulateLogitsPair(x + a.row * classes + a.begin, a.size,
                                      x + b.row * classes + b.begin, b.size);
        },
        [&](int64_t i, const RowAccumulator<A>& acc) {
          const A x_label = static_cast<A>(x[i * classes + label[i]]);
          loss_out[i] = static_cast<T>(
              SignedLikeTf(deterministic_ ? -((x_label - acc.max) - std::log(acc.sum_exp))
                                          : SparseLoss(acc, x_label),
                           deterministic_));
          StoreRowStats(acc, stats_out + i * kRowStats);
        });
  }

 private:
  bool deterministic_ = false;
};

// backprop_ij = g_i·(exp(z_ij)/s_i − [j == label_i]) (docs/tf_behaviour.md#gradients).
template <typename T, typename Index>
class SparseXentGradOp : public OpKernel {
 public:
  explicit SparseXentGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("deterministic", &deterministic_));
  }

  void Compute(OpKernelContext* ctx) override {
    using A = typename Widen<T>::type;
    const Tensor& logits = ctx->input(0);
    const Tensor& labels = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckSparseShapes(logits, labels, /*deterministic=*/false));
    const int64_t rows = logits.dim_size(0);
    const int64_t classes = logits.dim_size(1);
    const Tensor& stats = ctx->input(2);
    const Tensor& grad_loss = ctx->input(3);
    OP_REQUIRES_OK(ctx, CheckGradInputs(stats, grad_loss, rows));
    Tensor* backprop = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, logits.shape(), &backprop));
    if (rows == 0 || classes == 0) return;
    const T* x = logits.flat<T>().data();
    const Index* label = labels.flat<Index>().data();  // only compared, never used to read
    const double* row_stats = stats.flat<double>().data();
    const T* g = grad_loss.flat<T>().data();
    const int64_t g_stride = grad_loss.dim_size(0) == 1 ? 0 : 1;
    T* out = backprop->flat<T>().data();
    if constexpr (kHasExactSparsePath<T>) {
      if (deterministic_) {
        // Autodiff through TF's LogSoftmax, gather and Neg, row by row (xent_exact.h).
        ForEachRow<A>(ctx, rows, classes, 2, [&](int64_t i) {
          const double* s = row_stats + i * kRowStats;
          const T log_s = exact::RowLogSum(static_cast<T>(s[1]), i, rows);
          exact::RowSparseDeterministicBackprop(
              x + i * classes, classes, static_cast<int64_t>(label[i]), static_cast<T>(s[0]), log_s,
              g[i * g_stride], i * classes, rows * classes, out + i * classes);
        });
        return;
      }
      ForEachUnit<A>(ctx, rows, classes, [&](const Unit& unit) {
        const int64_t i = unit.row;
        const double* s = row_stats + i * kRowStats;
        exact::RowSparseBackprop(x + i * classes, unit.begin, unit.size,
                                 static_cast<int64_t>(label[i]), static_cast<T>(s[0]),
                                 static_cast<T>(s[1]), g[i * g_stride], i * classes, rows * classes,
                                 out + i * classes);
      });
      return;
    }
    ForEachUnit<A>(ctx, rows, classes, [&](const Unit& unit) {
      const int64_t i = unit.row;
      const double* s = row_stats + i * kRowStats;
      WriteSparseBackprop(x + i * classes + unit.begin, unit.size,
                          static_cast<int64_t>(label[i]) - unit.begin, static_cast<A>(s[0]),
                          static_cast<A>(s[1]), static_cast<A>(g[i * g_stride]),
                          out + i * classes + unit.begin);
    });
  }

 private:
  bool deterministic_ = false;
};

}  // namespace

#define TFXENT_REGISTER_DENSE(T, L)                             \
  REGISTER_KERNEL_BUILDER(Name("TfxentSoftmaxXent")             \
                              .Device(::tensorflow::DEVICE_CPU) \
                              .TypeConstraint<T>("T")           \
                              .TypeConstraint<L>("Tlabels"),    \
                          DenseXentOp<T, L>);                   \
  REGISTER_KERNEL_BUILDER(Name("TfxentSoftmaxXentGrad")         \
                              .Device(::tensorflow::DEVICE_CPU) \
                              .TypeConstraint<T>("T")           \
                              .TypeConstraint<L>("Tlabels"),    \
                          DenseXentGradOp<T, L>);

// Labels arrive in the compute dtype, or as f16/bf16 when widening them is exact (the Python
// core casts everything else), so these pairs cover every call it makes.
#define TFXENT_REGISTER_DENSE_WIDE_LABELS(T) \
  TFXENT_REGISTER_DENSE(T, Eigen::half)      \
  TFXENT_REGISTER_DENSE(T, Eigen::bfloat16)  \
  TFXENT_REGISTER_DENSE(T, float)

TFXENT_REGISTER_DENSE_WIDE_LABELS(Eigen::half)
TFXENT_REGISTER_DENSE_WIDE_LABELS(Eigen::bfloat16)
TFXENT_REGISTER_DENSE_WIDE_LABELS(float)
TFXENT_REGISTER_DENSE(double, double)

#define TFXENT_REGISTER_SPARSE(T, Index)                         \
  REGISTER_KERNEL_BUILDER(Name("TfxentSparseSoftmaxXent")        \
                              .Device(::tensorflow::DEVICE_CPU)  \
                              .TypeConstraint<T>("T")            \
                              .TypeConstraint<Index>("Tlabels"), \
                          SparseXentOp<T, Index>);               \
  REGISTER_KERNEL_BUILDER(Name("TfxentSparseSoftmaxXentGrad")    \
                              .Device(::tensorflow::DEVICE_CPU)  \
                              .TypeConstraint<T>("T")            \
                              .TypeConstraint<Index>("Tlabels"), \
                          SparseXentGradOp<T, Index>);

#define TFXENT_REGISTER_SPARSE_INDICES(T) \
  TFXENT_REGISTER_SPARSE(T, int32_t)      \
  TFXENT_REGISTER_SPARSE(T, int64_t)

TFXENT_REGISTER_SPARSE_INDICES(Eigen::half)
TFXENT_REGISTER_SPARSE_INDICES(Eigen::bfloat16)
TFXENT_REGISTER_SPARSE_INDICES(float)
TFXENT_REGISTER_SPARSE_INDICES(double)

// The SavedModel loading hint of xent_ops.cc: it runs as part of a loaded function (TF does
// not prune it), and does nothing.
namespace {
class ImportHintOp : public OpKernel {
 public:
  explicit ImportHintOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}
  void Compute(OpKernelContext* /*ctx*/) override {}
};
}  // namespace
REGISTER_KERNEL_BUILDER(
    Name("Tfxent>ImportTfxentBeforeLoadingThisSavedModel").Device(::tensorflow::DEVICE_CPU),
    ImportHintOp);

}  // namespace tfxent
