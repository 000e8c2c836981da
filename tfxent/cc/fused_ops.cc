// TfxentFusedAddColumns: the fused language-model head's in-place kernel-gradient
// accumulation (tfxent/fused, docs/fused.md#memory).
//
// The head accumulates ∂loss/∂kernel = Σ_chunks hᵀ·G over chunks of tokens. TF's MatMul has
// no "C += A·B", so a plain `acc + matmul(...)` holds a second [D, V] product next to the
// accumulator. Instead the head multiplies one block of vocabulary columns at a time
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

namespace tfxent {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
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

}  // namespace tfxent
