"""One chunk of tokens: its logits, loss and (optionally) logit gradient, never more than
[chunk, V] at a time (docs/fused.md#mathematics).

For logits x = cap·tanh(z/cap) (or z), z = h·W + b, label y, smoothing ε, z-loss weight ζ:

    lse  = log Σ_j exp(x_j)
    loss = lse − (1 − ε)·x_y − (ε / V)·Σ_j x_j + ζ·lse²
    ∂loss/∂x_j = (1 + 2ζ·lse)·softmax_j − (1 − ε)·[j = y] − ε / V

The softmax statistics come from tfxent's sparse row kernel (`TfxentSparseSoftmaxXent`), the
whole logit gradient from one pass of `TfxentFusedLogitGradient` (tfxent/cc/fused_ops.cc)
over the logits, in place. The composite backend writes the same mathematics in TF
primitives for XLA.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from tfxent import _backend, _ops

F32 = tf.float32

# TF differentiates the chunk loop's body when it builds the loop's gradient function, even
# though the fused head's backward pass never uses it; the logit gradient's own gradient is
# second order, which `_api._first_order_only` refuses with a clear error.
tf.no_gradient("TfxentFusedLogitGradient")


@dataclass(frozen=True)
class Options:
    """The configuration of one fused call. A value is a float, or (inside the eager
    runner, so that a new value does not retrace) a float32 scalar tensor; 0.0 and None
    are the static "off" that skips the term's work."""

    label_smoothing: float | tf.Tensor
    z_loss: float | tf.Tensor
    soft_cap: float | tf.Tensor | None
    composite: bool

    @property
    def smoothing(self) -> bool:
        return _on(self.label_smoothing)

    @property
    def zeta(self) -> bool:
        return _on(self.z_loss)

    def key(self) -> tuple[bool, bool, bool, bool]:
        """What a trace depends on: which terms are on, and the backend."""
        return (self.smoothing, self.zeta, self.soft_cap is not None, self.composite)

    def values(self) -> list[float]:
        return [float(self.label_smoothing), float(self.z_loss), float(self.soft_cap or 0.0)]

    def with_values(self, values: tf.Tensor) -> Options:
        """These options with the values read from `values` (from `values()`)."""
        return Options(
            values[0] if self.smoothing else 0.0,
            values[1] if self.zeta else 0.0,
            values[2] if self.soft_cap is not None else None,
            self.composite,
        )


def _on(value: float | tf.Tensor) -> bool:
    return isinstance(value, tf.Tensor) or value != 0.0


@dataclass
class Stats:
    """Per-row statistics of one chunk, in float32 unless noted."""

    x: tf.Tensor  # logits after the soft cap, [c, V], the dtype the row kernels read
    lse: tf.Tensor
    loss: tf.Tensor  # the full per-token loss, z-loss included
    z_term: tf.Tensor
    lse64: tf.Tensor | None = None  # lse in float64, from the row kernel's statistics (op path)


def logits(h: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None, opts: Options) -> tf.Tensor:
    """x for one chunk: the product in the input dtype (oneDNN; AMX for bfloat16), the soft
    cap in float32."""
    z = tf.matmul(h, kernel)
    if bias is not None:
        z = tf.nn.bias_add(z, bias)
    if opts.soft_cap is not None:
        return opts.soft_cap * tf.tanh(tf.cast(z, F32) / opts.soft_cap)
    return z


def statistics(x: tf.Tensor, labels: tf.Tensor, opts: Options) -> Stats:
    """The loss terms of each row of x against labels (every label in range)."""
    lse64 = None
    if opts.composite:
        lse = tf.reduce_logsumexp(tf.cast(x, F32), axis=1)
        x_label = tf.gather(x, labels, axis=1, batch_dims=1)
    else:
        _, kernel_stats = _ops._library().tfxent_sparse_softmax_xent(x, labels)
        # lse = max + log Σ exp(x − max), from the kernel's float64 statistics.
        lse64 = kernel_stats[:, 0] + tf.math.log(kernel_stats[:, 1])
        lse = tf.cast(lse64, F32)
        with tf.control_dependencies([kernel_stats]):  # the kernel checks the label range
            x_label = tf.gather(x, labels, axis=1, batch_dims=1)
    x_label = tf.cast(x_label, F32)
    loss = lse - x_label
    if opts.smoothing:
        eps = opts.label_smoothing
        mean_x = tf.reduce_mean(tf.cast(x, F32), axis=1)
        loss = lse - (1.0 - eps) * x_label - eps * mean_x
    z_term = opts.z_loss * tf.square(lse) if opts.zeta else tf.zeros_like(lse)
    return Stats(x, lse, loss + z_term, z_term, lse64)


def logit_gradient(
    stats: Stats,
    labels: tf.Tensor,
    weight: tf.Tensor,
    z_weight: tf.Tensor,
    opts: Options,
    out_dtype: tf.DType,
) -> tf.Tensor:
    """∂/∂z of Σ_i weight_i·loss_i + z_weight_i·z_term_i, as [c, V] in out_dtype.

    weight is g·valid per row; z_weight the z-loss term's own upstream gradient plus g.
    """
    x = stats.x
    softmax_scale = weight + 2.0 * opts.z_loss * stats.lse * z_weight
    label_scale = weight * (1.0 - opts.label_smoothing)
    uniform = weight * (opts.label_smoothing / tf.cast(tf.shape(x)[1], F32))
    if opts.composite:
        xf = tf.cast(x, F32)
        probs = tf.exp(xf - stats.lse[:, None])
        onehot = tf.one_hot(labels, tf.shape(x)[1], dtype=F32)
        grad = softmax_scale[:, None] * probs - label_scale[:, None] * onehot
        if opts.smoothing:
            grad -= uniform[:, None]
        if opts.soft_cap is not None:
            # d(cap·tanh(z/cap))/dz = 1 − tanh² = 1 − (x/cap)².
            grad *= 1.0 - tf.square(xf / opts.soft_cap)
        return tf.cast(grad, out_dtype)
    # One pass over the block, written over x: every other reader of x (the loss's label
    # gather and mean) runs first, so that TF can hand x's buffer to the gradient.
    f64 = tf.float64
    with tf.control_dependencies([stats.loss]):
        grad = _ops._library().tfxent_fused_logit_gradient(
            x,
            labels,
            stats.lse64,
            tf.cast(softmax_scale, f64),
            tf.cast(label_scale, f64),
            tf.cast(uniform, f64),
            tf.cast(0.0 if opts.soft_cap is None else opts.soft_cap, f64),
        )
    return tf.cast(grad, out_dtype)


def options(
    label_smoothing: float, z_loss: float, soft_cap: float | None, probe: tf.Tensor
) -> Options:
    """The call's options, with the backend `tfxent._backend` picks for it (composite inside
    XLA, with TFXENT_FORCE_COMPOSITE=1, or where the op cannot run)."""
    choice = _backend.choose(probe)
    _backend.describe(choice)
    return Options(
        float(label_smoothing),
        float(z_loss),
        None if soft_cap is None else float(soft_cap),
        choice.backend == _backend.COMPOSITE,
    )
