// The fused language-model head's two ops (tfxent/fused, docs/fused.md#memory):
// TfxentFusedLogitGradient writes a chunk's logit gradient over its logits, and
// TfxentFusedAddColumns accumulates the kernel gradient in place.
//
// TfxentFusedAddColumns. The head accumulates ∂loss/∂kernel = Σ_chunks hᵀ·G over chunks of tokens.
// TF's MatMul has no "C += A·B", so a plain `acc + matmul(...)` holds a second [D, V] product next
// to the accumulator. Instead the head multiplies one block of vocabulary columns at a time
// ([D, block]) and this op adds the block into the accumulator's columns
// [offset, offset + block). It forwards the accumulator's buffer when TF says no one else
// holds it (a loop variable of the chunk loop), so the accumulation needs no second [D, V];
// otherwise it copies first, which is still correct.

#include <algorithm>
#include <cstdint>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"
#include "xent_rows.h"

namespace tfxent {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::TensorShapeUtils;
namespace errors = ::tensorflow::errors;

REGISTER_OP("TfxentFusedAddColumns")
    .Input("accumulator: T")
    .Input("block: Tblock")
    .Input("offset: int64")
    .Output("sum: T")
    .Attr("T: {float, double}")
    .Attr("Tblock: {half, bfloat16, float, double}")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle acc;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &acc));
      c->set_output(0, acc);
      return ::tensorflow::OkStatus();
    })
    .Doc(R"doc(
sum = accumulator with block [D, b] added to columns [offset, offset + b); in place when the
accumulator's buffer can be forwarded.
)doc");

template <typename T, typename B>
class FusedAddColumnsOp : public OpKernel {
 public:
  explicit FusedAddColumnsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& acc = ctx->input(0);
    const Tensor& block = ctx->input(1);
    const Tensor& offset_t = ctx->input(2);
    OP_REQUIRES(
        ctx,
        TensorShapeUtils::IsMatrix(acc.shape()) && TensorShapeUtils::IsMatrix(block.shape()) &&
            TensorShapeUtils::IsScalar(offset_t.shape()),
        errors::InvalidArgument("accumulator and block must be matrices, offset a "
                                "scalar; got ",
                                acc.shape().DebugString(), ", ", block.shape().DebugString(), ", ",
                                offset_t.shape().DebugString()));
    const int64_t rows = acc.dim_size(0);
    const int64_t cols = acc.dim_size(1);
    const int64_t width = block.dim_size(1);
    const int64_t offset = offset_t.scalar<int64_t>()();
    OP_REQUIRES(
        ctx, block.dim_size(0) == rows && offset >= 0 && width >= 0 && offset + width <= cols,
        errors::InvalidArgument("block ", block.shape().DebugString(), " at column ", offset,
                                " does not fit in accumulator ", acc.shape().DebugString()));
    Tensor* sum = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, acc.shape(), &sum));
    const T* in = acc.flat<T>().data();
    T* out = sum->flat<T>().data();
    const B* add = block.flat<B>().data();
    const bool copy = out != in;
    const auto& threads = *ctx->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(threads.num_threads, threads.workers, rows, copy ? cols : width,
                        [&](int64_t first, int64_t end) {
                          for (int64_t r = first; r < end; ++r) {
                            if (copy) std::copy_n(in + r * cols, cols, out + r * cols);
                            T* dst = out + r * cols + offset;
                            const B* src = add + r * width;
                            for (int64_t j = 0; j < width; ++j) dst[j] += static_cast<T>(src[j]);
                          }
                        });
  }
};

#define TFXENT_REGISTER_ADD_COLUMNS(T, B)                       \
  REGISTER_KERNEL_BUILDER(Name("TfxentFusedAddColumns")         \
                              .Device(::tensorflow::DEVICE_CPU) \
                              .TypeConstraint<T>("T")           \
                              .TypeConstraint<B>("Tblock")      \
                              .HostMemory("offset"),            \
                          FusedAddColumnsOp<T, B>);

TFXENT_REGISTER_ADD_COLUMNS(float, Eigen::half)
TFXENT_REGISTER_ADD_COLUMNS(float, Eigen::bfloat16)
TFXENT_REGISTER_ADD_COLUMNS(float, float)
TFXENT_REGISTER_ADD_COLUMNS(double, double)

// TfxentFusedLogitGradient: the chunk's gradient w.r.t. its logits, written over the logits
// (docs/fused.md#memory). For row i with label y_i and class j:
//
//   ∂/∂x_ij = a_i·exp(x_ij − lse_i) − b_i·[j = y_i] − u_i
//   a_i = softmax_scale (g_i, plus 2ζ·lse_i·g_z,i with z-loss)
//   b_i = label_scale   (g_i·(1 − ε) with label smoothing ε)
//   u_i = uniform       (g_i·ε/V)
//
// and, with a soft cap c (x = c·tanh(z/c)), times dx/dz = 1 − (x/c)². One pass over the
// block, in place when TF can forward the logits' buffer: the chunk then holds one
// [chunk, V] block instead of two (docs/fused.md#mathematics). The per-row values arrive in
// float64 (lse straight from the row kernel's float64 statistics), so a float64 head keeps
// its precision; float16/bfloat16 logits are computed in float.
REGISTER_OP("TfxentFusedLogitGradient")
    .Input("logits: T")
    .Input("labels: Tlabels")
    .Input("lse: double")
    .Input("softmax_scale: double")
    .Input("label_scale: double")
    .Input("uniform: double")
    .Input("soft_cap: double")
    .Output("gradient: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tlabels: {int32, int64}")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle logits;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &logits));
      c->set_output(0, logits);
      return ::tensorflow::OkStatus();
    })
    .Doc(R"doc(
The fused head's logit gradient a·softmax − b·onehot(labels) − u, times 1 − (x/c)² when
soft_cap c > 0; in place over logits when their buffer can be forwarded.
)doc");

template <typename T, typename Index>
class FusedLogitGradientOp : public OpKernel {
 public:
  explicit FusedLogitGradientOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    using A = typename Widen<T>::type;  // float, or double for double
    using Vector = Eigen::Array<T, Eigen::Dynamic, 1>;
    const Tensor& logits = ctx->input(0);
    const Tensor& labels = ctx->input(1);
    OP_REQUIRES(ctx, TensorShapeUtils::IsMatrix(logits.shape()),
                errors::InvalidArgument("logits must be [rows, classes], got ",
                                        logits.shape().DebugString()));
    const int64_t rows = logits.dim_size(0);
    const int64_t classes = logits.dim_size(1);
    for (int input = 1; input < 6; ++input) {
      OP_REQUIRES(ctx, ctx->input(input).shape() == TensorShape({rows}),
                  errors::InvalidArgument("input ", input, " must be [", rows, "], got ",
                                          ctx->input(input).shape().DebugString()));
    }
    OP_REQUIRES(ctx, TensorShapeUtils::IsScalar(ctx->input(6).shape()),
                errors::InvalidArgument("soft_cap must be a scalar"));
    const Index* label = labels.flat<Index>().data();
    // Every label indexes its row below, so none may be outside it.
    for (int64_t i = 0; i < rows; ++i) {
      OP_REQUIRES(ctx, label[i] >= 0 && label[i] < classes,
                  errors::InvalidArgument("label ", label[i], " of row ", i, " is not in [0, ",
                                          classes, ")"));
    }
    Tensor* gradient = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, logits.shape(), &gradient));
    if (rows == 0 || classes == 0) return;
    const double* lse = ctx->input(2).flat<double>().data();
    const double* softmax_scale = ctx->input(3).flat<double>().data();
    const double* label_scale = ctx->input(4).flat<double>().data();
    const double* uniform = ctx->input(5).flat<double>().data();
    const A cap = static_cast<A>(ctx->input(6).scalar<double>()());
    const T* x = logits.flat<T>().data();
    T* out = gradient->flat<T>().data();

    // ∂/∂z of one class whose capped logit is x.
    auto cap_factor = [cap](A x) { return cap > 0 ? A(1) - (x / cap) * (x / cap) : A(1); };
    const auto& threads = *ctx->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(
        threads.num_threads, threads.workers, rows, classes * 20, [&](int64_t first, int64_t end) {
          for (int64_t i = first; i < end; ++i) {
            const A a = static_cast<A>(softmax_scale[i]), b = static_cast<A>(label_scale[i]),
                    u = static_cast<A>(uniform[i]), m = static_cast<A>(lse[i]);
            const A x_label = static_cast<A>(x[i * classes + label[i]]);
            // Element-wise, so reading x_j and writing out_j in the same buffer is safe.
            const auto x_row =
                Eigen::Map<const Vector>(x + i * classes, classes).template cast<A>();
            Eigen::Map<Vector> out_row(out + i * classes, classes);
            if (cap > 0) {
              out_row = ((a * (x_row - m).exp() - u) * (A(1) - (x_row / cap).square()))
                            .template cast<T>();
            } else {
              out_row = (a * (x_row - m).exp() - u).template cast<T>();
            }
            // The label's class, from the logit read before the row was overwritten.
            out[i * classes + label[i]] =
                static_cast<T>((a * std::exp(x_label - m) - b - u) * cap_factor(x_label));
          }
        });
  }
};

#define TFXENT_REGISTER_LOGIT_GRADIENT(T, Index)                \
  REGISTER_KERNEL_BUILDER(Name("TfxentFusedLogitGradient")      \
                              .Device(::tensorflow::DEVICE_CPU) \
                              .TypeConstraint<T>("T")           \
                              .TypeConstraint<Index>("Tlabels") \
                              .HostMemory("soft_cap"),          \
                          FusedLogitGradientOp<T, Index>);
#define TFXENT_REGISTER_LOGIT_GRADIENT_INDICES(T) \
  TFXENT_REGISTER_LOGIT_GRADIENT(T, int32_t)      \
  TFXENT_REGISTER_LOGIT_GRADIENT(T, int64_t)

TFXENT_REGISTER_LOGIT_GRADIENT_INDICES(Eigen::half)
TFXENT_REGISTER_LOGIT_GRADIENT_INDICES(Eigen::bfloat16)
TFXENT_REGISTER_LOGIT_GRADIENT_INDICES(float)
TFXENT_REGISTER_LOGIT_GRADIENT_INDICES(double)

}  // namespace tfxent
