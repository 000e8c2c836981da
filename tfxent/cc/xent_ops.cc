// Op registrations for tfxent's softmax cross-entropy (REGISTER_OP only; kernels live in
// xent_kernels.cc, row math in xent_rows.h).
//
// The ops mirror TF's SoftmaxCrossEntropyWithLogits / SparseSoftmaxCrossEntropyWithLogits
// where users can see it: the input names `features` and `labels` and the allowed dtype lists
// are TF's, so a bad dtype fails with TF's message (docs/tf_behaviour.md#dtypes), and the shape
// functions are TF's,
// so graph construction fails where TF's does (docs/tf_behaviour.md#static-shapes). They differ
// where that makes them
// lean: the forward op returns one row statistic instead of the [N, C] backprop, and separate
// gradient ops write g·(softmax − labels) only when a gradient is asked for.

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "xent_layout.h"

namespace tfxent {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

namespace {

// TF's SoftmaxCrossEntropyWithLogits shape function (core/ops/nn_ops.cc): equal [N, C]
// shapes merge; otherwise the two inputs must broadcast to a rank-2 shape.
::tensorflow::Status DenseXentShape(InferenceContext* c) {
  bool deterministic = false;
  TF_RETURN_IF_ERROR(c->GetAttr("deterministic", &deterministic));
  if (deterministic) {
    // TF's determinism path is Mul(labels, LogSoftmax(logits)): plain broadcasting, with the
    // labels' dimension named first in a static mismatch (docs/tf_behaviour.md#determinism).
    ShapeHandle broadcast;
    TF_RETURN_IF_ERROR(::tensorflow::shape_inference::BroadcastBinaryOpOutputShapeFnHelper(
        c, c->input(1), c->input(0), true, &broadcast));
    TF_RETURN_IF_ERROR(c->WithRank(broadcast, 2, &broadcast));
    c->set_output(0, c->Vector(c->Dim(broadcast, 0)));
    c->set_output(1, c->Matrix(c->Dim(broadcast, 0), kRowStats));
    return ::tensorflow::OkStatus();
  }
  ShapeHandle input;
  if (c->WithRank(c->input(0), 2, &input).ok() && c->Merge(input, c->input(1), &input).ok()) {
    DimensionHandle batch_size = c->Dim(input, 0);
    c->set_output(0, c->Vector(batch_size));
    c->set_output(1, c->Matrix(batch_size, kRowStats));
    return ::tensorflow::OkStatus();
  }
  TF_RETURN_IF_ERROR(::tensorflow::shape_inference::BroadcastBinaryOpOutputShapeFn(c, 1));
  if (!c->RankKnown(c->output(1))) {
    return ::tensorflow::errors::InvalidArgument(
        "Shape must be broadcasted with rank 2, but is rank is unknown.");
  }
  if (c->Rank(c->output(1)) != 2) {
    return ::tensorflow::errors::InvalidArgument(
        "Shape must be broadcasted with rank 2, but is rank ", c->Rank(c->output(1)));
  }
  DimensionHandle batch_size = c->Dim(c->output(1), 0);
  c->set_output(0, c->Vector(batch_size));
  c->set_output(1, c->Matrix(batch_size, kRowStats));
  return ::tensorflow::OkStatus();
}

// TF's SparseSoftmaxCrossEntropyWithLogits shape function: [N, C] logits, [N] labels.
::tensorflow::Status SparseXentShape(InferenceContext* c) {
  ShapeHandle features;
  ShapeHandle labels;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &features));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &labels));
  DimensionHandle batch_size;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(features, 0), c->Dim(labels, 0), &batch_size));
  c->set_output(0, c->Vector(batch_size));
  c->set_output(1, c->Matrix(batch_size, kRowStats));
  return ::tensorflow::OkStatus();
}

// The gradient is [N, C]: the broadcast of features and labels, as TF's backprop output.
::tensorflow::Status DenseXentGradShape(InferenceContext* c) {
  return ::tensorflow::shape_inference::BroadcastBinaryOpOutputShapeFn(c, 0);
}

::tensorflow::Status SparseXentGradShape(InferenceContext* c) {
  ShapeHandle features;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &features));
  c->set_output(0, features);
  return ::tensorflow::OkStatus();
}

}  // namespace

REGISTER_OP("TfxentSoftmaxXent")
    .Input("features: T")
    .Input("labels: Tlabels")
    .Output("loss: T")
    .Output("row_stats: double")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tlabels: {half, bfloat16, float, double}")
    .Attr("deterministic: bool = false")
    .SetShapeFn(DenseXentShape)
    .Doc(R"doc(
loss_i = Σ_j y_ij·(lse_i − x_ij), rows of the broadcast of features [N, C] and labels.
deterministic selects TF's determinism-mode formula −Σ_j y_ij·log_softmax(x)_ij
(docs/tf_behaviour.md#determinism).
)doc");

REGISTER_OP("TfxentSoftmaxXentGrad")
    .Input("features: T")
    .Input("labels: Tlabels")
    .Input("row_stats: double")
    .Input("grad_loss: T")
    .Output("backprop: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tlabels: {half, bfloat16, float, double}")
    .Attr("deterministic: bool = false")
    .Attr("exact: bool = true")
    .SetShapeFn(DenseXentGradShape)
    .Doc(R"doc(
backprop_ij = g_i·(softmax(x)_ij − y_ij), or g_i·(softmax(x)_ij·Σ_k y_ik − y_ij) when
deterministic (docs/tf_behaviour.md#gradients, docs/tf_behaviour.md#determinism).
exact = false (TFXENT_FAST_BACKPROP) trades TF's bits for one pass over each row
(docs/exactness.md#the-fast-backward-opt-in).
)doc");

REGISTER_OP("TfxentSparseSoftmaxXent")
    .Input("features: T")
    .Input("labels: Tlabels")
    .Output("loss: T")
    .Output("row_stats: double")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tlabels: {int32, int64} = DT_INT64")
    .Attr("deterministic: bool = false")
    .SetShapeFn(SparseXentShape)
    .Doc(R"doc(
loss_i = lse_i − x_i,label_i with TF's label range check (docs/tf_behaviour.md#sparse-forward;
deterministic: docs/tf_behaviour.md#determinism).
)doc");

REGISTER_OP("TfxentSparseSoftmaxXentGrad")
    .Input("features: T")
    .Input("labels: Tlabels")
    .Input("row_stats: double")
    .Input("grad_loss: T")
    .Output("backprop: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tlabels: {int32, int64} = DT_INT64")
    .Attr("deterministic: bool = false")
    .SetShapeFn(SparseXentGradShape)
    .Doc(R"doc(
backprop_ij = g_i·(softmax(x)_ij − [j == label_i]) (docs/tf_behaviour.md#gradients);
deterministic: the gradient of TF's −gather(log_softmax(x)) (docs/tf_behaviour.md#determinism).
)doc");

// A marker that tfxent.saved_model.save / add_import_hint put first in every function of a
// SavedModel that uses the ops above. TF's loader resolves a function's op types in node
// order and its error names only the first unknown type, so a process that has not imported
// tfxent fails on this name, which says what to do. No inputs or outputs; computes nothing.
REGISTER_OP("Tfxent>ImportTfxentBeforeLoadingThisSavedModel")
    .SetShapeFn(::tensorflow::shape_inference::NoOutputs)
    .Doc(R"doc(
Marks a SavedModel that needs tfxent's ops: `import tfxent` before `tf.saved_model.load`.
)doc");

}  // namespace tfxent
