"""`linear_sparse_softmax_cross_entropy`: the language-model head's loss without its [N, V]
logits (docs/fused.md)."""

from __future__ import annotations

import tensorflow as tf

from tfxent import _backend
from tfxent.fused import _checks, _chunk, _loop, _plan

try:  # TF >= 2.13
    from tensorflow.python.eager.record import should_record_backprop
except ImportError:  # TF 2.12
    from tensorflow.python.eager.tape import should_record_backprop

F32 = tf.float32
_RUNNERS: dict[tuple, object] = {}


def linear_sparse_softmax_cross_entropy(
    hidden: tf.Tensor,
    kernel: tf.Tensor,
    labels: tf.Tensor,
    bias: tf.Tensor | None = None,
    *,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    logit_soft_cap: float | None = None,
    chunk_size: int | None = None,
    return_z_loss: bool = False,
    gradient: str = "auto",
    name: str | None = None,
) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
    """Per-token softmax cross-entropy of the logits `hidden @ kernel + bias`, computed a
    chunk of tokens at a time so that the [N, V] logits never exist.

    For hidden hᵢ [..., D], kernel W [D, V], bias b [V] and int32/int64 labels yᵢ [...]:

    * logits zᵢ = hᵢ·W + b; with `logit_soft_cap` c, xᵢ = c·tanh(zᵢ / c) (Gemma 2's cap),
      else xᵢ = zᵢ;
    * lseᵢ = log Σⱼ exp(xᵢⱼ);
    * cross-entropy with `label_smoothing` ε, as `tf.keras.losses` and PyTorch's
      `CrossEntropyLoss` define it (target (1 − ε)·onehot(yᵢ) + ε/V):
      ceᵢ = lseᵢ − (1 − ε)·xᵢ,yᵢ − (ε/V)·Σⱼ xᵢⱼ;
    * `z_loss` ζ, as PaLM's auxiliary loss: zᵢ_term = ζ·lseᵢ²;
    * lossᵢ = ceᵢ + zᵢ_term, and 0 where yᵢ == `ignore_index` (whose gradient is 0 too).

    Returns lossᵢ with labels' shape in hidden's dtype, or (loss, z_term) with
    `return_z_loss=True`. float16/bfloat16 products run in the input dtype (as `tf.matmul`
    does) and every reduction and gradient accumulation in float32.

    Gradients flow to hidden, kernel and bias, to first order only: differentiating the
    gradient raises `LookupError`. With `gradient="auto"` a float32/float64 call recorded by
    a `GradientTape` (or traced under one) computes each chunk's gradients during the forward
    pass (`"forward"`), scaled at the backward pass when the upstream gradient is the same
    for every counted token (a sum or a mean); otherwise, for half dtypes (whose scaled
    gradient would be rounded twice) and with `gradient="recompute"`, the backward pass
    recomputes the chunks. Extra memory is O(chunk·V + D·V), never O(N·V); `chunk_size`
    overrides the planned chunk (`tfxent.fused.plan_chunk`).

    Labels outside [0, V) other than `ignore_index` raise `InvalidArgumentError`, as TF's
    sparse cross-entropy does (inside XLA their rows are NaN, as TF's XLA lowering gives).
    """
    _checks.options(label_smoothing, z_loss, logit_soft_cap, chunk_size, gradient)
    with tf.name_scope(name or "linear_sparse_softmax_cross_entropy"):
        hidden = tf.convert_to_tensor(hidden)
        kernel = tf.convert_to_tensor(kernel)
        labels = tf.convert_to_tensor(labels)
        bias = None if bias is None else tf.convert_to_tensor(bias)
        _checks.tensors(hidden, kernel, labels, bias)
        opts = _chunk.options(label_smoothing, z_loss, logit_soft_cap, hidden)
        differentiable = [t for t in (hidden, kernel, bias) if t is not None]
        # Half dtypes recompute: scaling a precomputed half-precision gradient rounds it a
        # second time, which would make it less accurate than TF's unfused head.
        precompute = gradient == "forward" or (
            gradient == "auto"
            and hidden.dtype not in (tf.float16, tf.bfloat16)
            and should_record_backprop(differentiable)
        )
        rows = tf.reshape(hidden, [-1, tf.shape(kernel)[0]])
        flat_labels = tf.reshape(labels, [-1])
        valid = tf.ones_like(flat_labels, tf.bool)
        if ignore_index is not None:
            valid = tf.not_equal(flat_labels, tf.cast(ignore_index, labels.dtype))
        safe = tf.where(valid, flat_labels, tf.zeros_like(flat_labels))
        vocab = tf.shape(kernel)[1]
        in_range = None
        if opts.composite and _backend.in_xla_context():
            in_range = tf.logical_and(safe >= 0, safe < tf.cast(vocab, safe.dtype))
            safe = tf.where(in_range, safe, tf.zeros_like(safe))
        elif opts.composite:
            with tf.control_dependencies(_checks.label_range(safe, vocab)):
                safe = tf.identity(safe)

        def plan(gradients: bool) -> int:
            return chunk_size or _plan.chunk_size(
                rows.shape[0],
                kernel.shape[1] or 1,
                hidden.dtype,
                logit_soft_cap is not None,
                gradients,
            )

        inputs = _loop.Inputs(rows, kernel, bias, safe, valid)
        loss, z_term = _fused(
            inputs, opts, (plan(precompute), plan(True)), precompute, return_z_loss
        )
        if in_range is not None:
            nan = tf.fill(tf.shape(loss), float("nan"))
            loss = tf.where(in_range, loss, nan)
        shape = tf.shape(labels)
        loss = tf.reshape(tf.cast(loss, hidden.dtype), shape)
        if return_z_loss:
            return loss, tf.reshape(tf.cast(z_term, hidden.dtype), shape)
        return loss


def _runner(opts: _chunk.Options, grads: bool, has_bias: bool, backward: bool, started: bool):
    """The chunk loop for these options. Run eagerly, it is one `tf.function` per options
    (the chunk is an argument, shapes relax after a retrace), so that TF's executor frees
    each chunk's blocks as soon as they are used and calls of new shapes do not retrace."""

    def run(values, chunk, h, w, labels, valid, weight, z_weight, skip, *rest):
        b, start = (rest[0] if has_bias else None), rest[has_bias:]
        inputs = _loop.Inputs(h, w, b, labels, valid)
        result = _loop.run(
            inputs,
            opts.with_values(values),
            chunk,
            weight if grads else None,
            z_weight,
            losses=not backward,
            skip=skip if backward else None,
            start=_loop.Result(None, None, *start, *([None] * (3 - len(start)))) if start else None,
        )
        out = [] if backward else [result.loss, result.z_term]
        if grads:
            out += [result.d_hidden, result.d_kernel] + ([result.d_bias] if has_bias else [])
        return out

    if not tf.executing_eagerly():
        return run
    key = (opts.key(), grads, has_bias, backward, started)
    if key not in _RUNNERS:
        _RUNNERS[key] = tf.function(run, reduce_retracing=True, autograph=False)
    return _RUNNERS[key]


def _call(
    inputs: _loop.Inputs, opts, chunk, weight=None, z_weight=None, skip=None, start=()
) -> list[tf.Tensor]:
    """The loop's outputs: [loss, z_term] then the gradients if `weight` is given; only the
    gradients when `skip` is given (the backward pass, see `_loop.run`)."""
    grads = weight is not None
    backward = skip is not None
    if not grads:
        weight = z_weight = tf.zeros([0], F32)
    if skip is None:
        skip = tf.constant(False)
    bias = [] if inputs.bias is None else [inputs.bias]
    runner = _runner(opts, grads, inputs.bias is not None, backward, bool(start))
    values = opts.values()
    if tf.executing_eagerly():
        chunk, values = tf.constant(chunk, tf.int32), tf.constant(values, F32)
    return runner(
        values,
        chunk,
        inputs.hidden,
        inputs.kernel,
        inputs.labels,
        inputs.valid,
        weight,
        z_weight,
        skip,
        *bias,
        *start,
    )


def _fused(inputs, opts, chunks, precompute, return_z_loss):
    """The call as a `tf.custom_gradient`; `chunks` is (the forward loop's chunk, the backward
    loop's), which differ when the forward pass computes the loss only."""
    has_bias = inputs.bias is not None
    chunk, gradient_chunk = chunks

    @tf.custom_gradient
    def fused(*params):
        bias = params[2] if has_bias else None
        ins = _loop.Inputs(params[0], params[1], bias, inputs.labels, inputs.valid)
        if precompute:
            ones = tf.cast(ins.valid, F32)
            loss, z_term, *saved = _call(ins, opts, chunk, ones, ones)
        else:
            loss, z_term = _call(ins, opts, chunk)
            saved = None

        def grad(d_loss, d_z):
            weight = tf.where(ins.valid, tf.cast(d_loss, F32), 0.0)
            z_weight = weight
            if return_z_loss:
                z_weight = weight + tf.where(ins.valid, tf.cast(d_z, F32), 0.0)
            skip, start = tf.constant(False), ()
            if saved is not None:
                skip, start = _scaled(saved, weight, z_weight, ins.valid)
            grads = _call(ins, opts, gradient_chunk, weight, z_weight, skip, start)
            return _first_order_only(*[tf.cast(grads[i], p.dtype) for i, p in enumerate(params)])

        return (loss, z_term), grad

    return fused(*[t for t in (inputs.hidden, inputs.kernel, inputs.bias) if t is not None])


def _scaled(saved, weight, z_weight, valid):
    """(uniform, start): whether the upstream gradient is one value g on every counted token
    with no gradient of the z-term's own, and the forward pass's gradients (computed for
    upstream gradient 1) times g if so, else times 0 for the backward loop to add to
    (docs/fused.md#gradients)."""
    inf = tf.constant(float("inf"), F32)
    g_max = tf.reduce_max(tf.where(valid, weight, -inf))
    g_min = tf.reduce_min(tf.where(valid, weight, inf))
    uniform = tf.logical_and(tf.equal(g_max, g_min), tf.reduce_all(tf.equal(z_weight, weight)))
    uniform = tf.logical_or(uniform, tf.logical_not(tf.reduce_any(valid)))
    g = tf.where(tf.logical_and(uniform, tf.reduce_any(valid)), g_max, 0.0)
    return uniform, [s * tf.cast(g, s.dtype) for s in saved]


@tf.custom_gradient
def _first_order_only(*grads: tf.Tensor):
    """Identity on the gradients whose own gradient is an error: the fused op's backward
    pass is not differentiable (its chunks are closed over, not traced as a function of the
    inputs)."""

    def no_second_order(*_):
        raise LookupError(
            "tfxent.fused.linear_sparse_softmax_cross_entropy has first-order gradients only; "
            "a second-order gradient (e.g. a Hessian or a nested GradientTape) needs the "
            "unfused head: tf.matmul followed by tfxent.nn.sparse_softmax_cross_entropy_"
            "with_logits"
        )

    return [tf.identity(g) for g in grads], no_second_order
