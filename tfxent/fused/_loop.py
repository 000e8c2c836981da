"""The loop over chunks of tokens (docs/fused.md#memory).

Each iteration holds one chunk's [chunk, V] blocks; what crosses iterations is O(chunk)
per-row values, the [N, D] hidden gradient and the [D, V] + [V] accumulators. The loop is a
`tf.while_loop` with one iteration in flight, so that neither eager execution nor TF's
executor keeps two chunks' blocks alive, and so that XLA can compile it.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from tfxent import _ops
from tfxent.fused import _chunk, _plan

F32 = tf.float32


@dataclass
class Inputs:
    """A call's tensors, flattened to rows: hidden [N, D], labels [N] (in range wherever
    valid, 0 elsewhere) and valid [N] (False for ignore_index rows)."""

    hidden: tf.Tensor
    kernel: tf.Tensor
    bias: tf.Tensor | None
    labels: tf.Tensor
    valid: tf.Tensor


@dataclass
class Result:
    loss: tf.Tensor | None  # [N] float32
    z_term: tf.Tensor | None  # [N] float32
    d_hidden: tf.Tensor | None = None  # [N, D] in hidden's dtype
    d_kernel: tf.Tensor | None = None  # [D, V], float32 for half kernels (accumulated so)
    d_bias: tf.Tensor | None = None  # [V] float32


class _Chunking:
    """How the rows are cut into chunks of `chunk` rows.

    Padded (the composite path): XLA needs static shapes, so every per-row input is padded
    to whole chunks and reshaped to [chunks, chunk, ...], a copy of each; the padding rows
    carry zero weight. Sliced (the op path): TF's kernels take any shape, so chunk i is rows
    [i·chunk, min((i + 1)·chunk, N)) of the inputs themselves and the last chunk is shorter:
    nothing of size N is copied, which at N = 4096, D = 1024 saves five [N, D] copies
    (docs/fused.md#memory)."""

    def __init__(self, n: tf.Tensor, static_n: int | None, chunk, padded: bool):
        self.n, self.chunk, self.padded = n, chunk, padded
        if padded and isinstance(chunk, int) and static_n is not None:
            # A constant trip count and TensorArray size, as XLA needs.
            self.count = max(1, -(-static_n // chunk))
            self.pad = self.count * chunk - static_n
            self.rows = chunk
        else:  # shapes and chunk known only at run time (eager calls' relaxed traces)
            self.count = tf.maximum(1, (n + chunk - 1) // chunk)
            self.pad = self.count * chunk - n
            self.rows = chunk if padded and isinstance(chunk, int) else None

    def split(self, t: tf.Tensor) -> tf.Tensor:
        """t [N, ...] ready for `take`: padded with zeros and reshaped, or as it is."""
        if not self.padded:
            return t
        padded = tf.pad(t, [[0, self.pad]] + [[0, 0]] * (t.shape.rank - 1))
        return tf.reshape(padded, tf.concat([[self.count, self.chunk], tf.shape(t)[1:]], 0))

    def take(self, split: tf.Tensor, i: tf.Tensor) -> tf.Tensor:
        """Chunk i of a `split` tensor."""
        if self.padded:
            return split[i]
        begin = i * self.chunk
        return split[begin : tf.minimum(begin + self.chunk, self.n)]

    def put(self, split: tf.Tensor, i: tf.Tensor, value: tf.Tensor) -> tf.Tensor:
        """`split` with chunk i replaced by value (in place when TF can forward the buffer)."""
        if self.padded:
            return tf.tensor_scatter_nd_update(split, [[i]], value[None])
        rows = tf.range(i * self.chunk, i * self.chunk + tf.shape(value)[0])
        return tf.tensor_scatter_nd_update(split, rows[:, None], value)

    def join(self, split: tf.Tensor) -> tf.Tensor:
        """The [N, ...] rows of a `split` tensor."""
        if not self.padded:
            return split
        return tf.reshape(split, tf.concat([[-1], tf.shape(split)[2:]], 0))[: self.n]

    def array(self) -> tf.TensorArray:
        """A TensorArray for one float32 value per row, a chunk per element."""
        return tf.TensorArray(
            F32, size=self.count, element_shape=[self.rows], infer_shape=self.padded
        )

    def rows_of(self, array: tf.TensorArray) -> tf.Tensor:
        """The [N] values of an `array`."""
        if not self.padded:
            return array.concat()
        return tf.reshape(array.stack(), [-1])[: self.n]


@tf.RegisterGradient("TfxentFusedAddColumns")
def _add_columns_grad(op: tf.Operation, grad: tf.Tensor):
    """sum = acc + block placed at columns [offset, offset + width): the accumulator's
    gradient passes through, the block's is those columns. (TF differentiates the chunk
    loop's body when it builds the loop's gradient function, even if unused.)"""
    width = tf.shape(op.inputs[1], out_type=tf.int64)[1]
    block = tf.slice(grad, tf.stack([0, op.inputs[2]]), tf.stack([-1, width]))
    return grad, tf.cast(block, op.inputs[1].dtype), None


def _accumulate_kernel_gradient(
    acc: tf.Tensor, h: tf.Tensor, g: tf.Tensor, opts: _chunk.Options
) -> tf.Tensor:
    """acc + hᵀ·g. With the op, one block of vocabulary columns at a time added in place
    (`TfxentFusedAddColumns`), so no second [D, V] product exists; XLA plans its own
    buffers, so the composite path adds the whole product."""
    if opts.composite:
        return acc + tf.cast(tf.matmul(h, g, transpose_a=True), acc.dtype)
    library = _ops._library()
    vocab = tf.shape(g, out_type=tf.int64)[1]
    width = tf.constant(_plan.column_block(h.shape[1]), tf.int64)

    def add_block(start, acc):
        block = tf.slice(g, tf.stack([0, start]), tf.stack([-1, tf.minimum(width, vocab - start)]))
        product = tf.matmul(h, block, transpose_a=True)
        return start + width, library.tfxent_fused_add_columns(acc, product, start)

    _, acc = tf.while_loop(
        lambda start, _: start < vocab,
        add_block,
        (tf.constant(0, tf.int64), acc),
        parallel_iterations=1,
    )
    return acc


def run(
    inputs: Inputs,
    opts: _chunk.Options,
    chunk: int | tf.Tensor,
    weight: tf.Tensor | None = None,
    z_weight: tf.Tensor | None = None,
    losses: bool = True,
    skip: tf.Tensor | None = None,
    start: Result | None = None,
) -> Result:
    """Loss and z-term of every row (unless `losses` is False); with `weight` ([N], the
    upstream gradient, 0 on invalid rows) and `z_weight` also the gradients of
    Σ weight·loss + z_weight·z_term, added to `start`'s. With `skip` true at run time no chunk
    runs and the gradients are `start`'s: the backward pass's choice between scaling the
    forward pass's gradients and recomputing is one loop, not a `tf.cond` around loops
    (which grappler cannot sort, and then leaves the whole step unoptimised)."""
    h, kernel, bias = inputs.hidden, inputs.kernel, inputs.bias
    n = tf.shape(h, out_type=tf.int32)[0]
    cut = _Chunking(n, h.shape[0], chunk, padded=opts.composite)
    h_c = cut.split(h)
    labels_c = cut.split(inputs.labels)
    grads = weight is not None
    weights_c = None
    if grads:
        weights_c = (cut.split(weight), cut.split(z_weight))
    iterations = cut.count if skip is None else tf.where(skip, 0, cut.count)

    loss_ta, z_ta = cut.array(), cut.array()
    acc_dtype = F32 if kernel.dtype in (tf.float16, tf.bfloat16) else kernel.dtype
    vocab = tf.shape(kernel)[1]
    no_grad = tf.zeros([], acc_dtype)
    d_hidden, d_kernel, d_bias = no_grad, no_grad, tf.zeros([], F32)
    if grads and start is not None:
        d_hidden = cut.split(start.d_hidden)
        d_kernel, d_bias = start.d_kernel, start.d_bias if bias is not None else d_bias
    elif grads:
        d_hidden = tf.zeros_like(h_c)
        d_kernel = tf.zeros(tf.shape(kernel), acc_dtype)
        d_bias = tf.zeros([vocab], F32) if bias is not None else d_bias

    def body(i, loss_ta, z_ta, d_hidden, d_kernel, d_bias):
        h_i = cut.take(h_c, i)
        labels_i = cut.take(labels_c, i)
        stats = _chunk.statistics(_chunk.logits(h_i, kernel, bias, opts), labels_i, opts)
        if losses:
            loss_ta = loss_ta.write(i, stats.loss)
            z_ta = z_ta.write(i, stats.z_term)
        if grads:
            weight_i, z_weight_i = (cut.take(w, i) for w in weights_c)
            g = _chunk.logit_gradient(stats, labels_i, weight_i, z_weight_i, opts, kernel.dtype)
            dh = tf.matmul(g, kernel, transpose_b=True)
            d_hidden = cut.put(d_hidden, i, dh)
            d_kernel = _accumulate_kernel_gradient(d_kernel, h_i, g, opts)
            if bias is not None:
                d_bias += tf.reduce_sum(tf.cast(g, F32), axis=0)
        return i + 1, loss_ta, z_ta, d_hidden, d_kernel, d_bias

    _, loss_ta, z_ta, d_hidden, d_kernel, d_bias = tf.while_loop(
        lambda i, *_: i < iterations,
        body,
        (tf.constant(0), loss_ta, z_ta, d_hidden, d_kernel, d_bias),
        parallel_iterations=1,
    )
    result = Result(None, None)
    if losses:
        valid = inputs.valid
        zero = tf.zeros_like(valid, F32)
        result.loss = tf.where(valid, cut.rows_of(loss_ta), zero)
        result.z_term = tf.where(valid, cut.rows_of(z_ta), zero)
    if grads:
        result.d_hidden = cut.join(d_hidden)
        result.d_kernel = d_kernel
        if bias is not None:
            result.d_bias = d_bias
    return result
