"""The calls `tfxent bench` times, built in a worker: inputs, the loss or forward+backward
step of each implementation, the call floor, and the check that tfxent's op computed them."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tfxent import _op_names
from tfxent.bench import cases

# The op types that must appear in the traced graphs: tf.nn's native op, and tfxent's.
NATIVE_OP = {
    "dense": "SoftmaxCrossEntropyWithLogits",
    "sparse": "SparseSoftmaxCrossEntropyWithLogits",
}
CUSTOM_OP = {"dense": _op_names.DENSE, "sparse": _op_names.SPARSE}
CUSTOM_GRAD_OP = {"dense": _op_names.DENSE_GRAD, "sparse": _op_names.SPARSE_GRAD}


def error(err: BaseException) -> str:
    """An exception in one line, as the report shows it."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:160] if text else ''}"


def inputs(tf, n: int, c: int, dtype: str, dense: bool) -> dict:
    """Logits ~ N(0, 1), class indices, and (dense) label-smoothed one-hot rows."""
    tdt = getattr(tf, cases.TF_DTYPE[dtype])
    out = {"logits": tf.random.stateless_normal([n, c], seed=[7, 11], dtype=tdt)}
    if c > 0:
        out["sparse"] = tf.random.stateless_uniform(
            [n], seed=[5, 3], minval=0, maxval=c, dtype=tf.int32
        )
    else:
        out["sparse"] = tf.zeros([n], tf.int32)
    if dense:
        off = 0.1 / max(c, 1)
        out["dense"] = tf.one_hot(out["sparse"], c, on_value=0.9 + off, off_value=off, dtype=tdt)
    return out


def step(tf, fn: Callable, mode: str) -> Callable:
    """loss only, or loss and d loss / d logits through a GradientTape."""
    if mode == "loss":

        def loss_only(labels, logits):
            return fn(labels=labels, logits=logits)

        return loss_only

    def forward_backward(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = fn(labels=labels, logits=logits)
        return loss, tape.gradient(loss, logits)

    return forward_backward


def functions(tf, kind: str) -> dict:
    import tfxent

    name = "softmax_cross_entropy_with_logits"
    if kind == "sparse":
        name = "sparse_" + name
    return {"tfxent": getattr(tfxent.nn, name), "tf.nn": getattr(tf.nn, name)}


def _floor(tf, kind: str, mode: str) -> Callable:
    """The least a call with the same inputs and outputs can do: one elementwise pass over
    the logits (and, for forward+backward, the labels), no exp. Any implementation pays at
    least this in the same exec mode (the report's `floor` column)."""

    def floor(labels, logits):
        rows = tf.reduce_sum(logits, axis=-1)
        if mode == "loss":
            return rows
        if kind == "sparse":
            labels = tf.expand_dims(tf.cast(labels, logits.dtype), -1)
        return rows, logits - labels

    return floor


def variants(
    tf, kind: str, mode: str, execs: tuple[str, ...], with_floor: bool
) -> dict[str, Callable]:
    fns = functions(tf, kind)
    out: dict[str, Callable] = {}
    for impl in ("tfxent", "tf.nn"):
        if "eager" in execs:
            out[f"{impl}/eager"] = step(tf, fns[impl], mode)
        if "function" in execs:
            out[f"{impl}/function"] = tf.function(step(tf, fns[impl], mode))
    out["xla"] = tf.function(step(tf, fns["tf.nn"], mode), jit_compile=True)
    if with_floor:
        if "eager" in execs:
            out["floor/eager"] = _floor(tf, kind, mode)
        if "function" in execs:
            out["floor/function"] = tf.function(_floor(tf, kind, mode))
    return out


class _BackendLog(logging.Handler):
    """Collects the backend named by each `tfxent backend: ...` debug record."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.backends: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("tfxent backend") and record.args:
            self.backends.append(str(record.args[0]))


def eager_backends(call: Callable) -> tuple[list[str], object]:
    """Run `call` once with tfxent's debug log captured: which backend each call chose."""
    logger = logging.getLogger("tfxent")
    handler, level = _BackendLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        result = call()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return handler.backends, result


def _graph_ops(tf, fn: Callable, labels, logits) -> list[str]:
    graph = tf.function(fn).get_concrete_function(labels, logits).graph
    return sorted({op.type for op in graph.get_operations()})


def op_check(tf, kind: str, mode: str, labels, logits) -> dict:
    """Which ops the traced graphs contain, and what `_backend.choose` says for these
    logits: the evidence that tfxent's custom op (and TF's native op) computed the calls."""
    from tfxent import _backend

    fns = functions(tf, kind)
    check: dict = {"choose": _backend.choose(logits).backend}
    expected = {CUSTOM_OP[kind]} | ({CUSTOM_GRAD_OP[kind]} if mode == "fwdbwd" else set())
    try:
        ops = _graph_ops(tf, step(tf, fns["tfxent"], mode), labels, logits)
        check["tfxent_graph_ops"] = [op for op in ops if op.startswith(_op_names.PREFIX)]
        native = _graph_ops(tf, step(tf, fns["tf.nn"], mode), labels, logits)
        check["tf.nn_graph_native_op"] = NATIVE_OP[kind] in native
        check["graph_ok"] = expected <= set(ops) and not any(
            op.startswith(_op_names.PREFIX) for op in native
        )
    except Exception as err:  # noqa: BLE001 - e.g. a shape TF rejects at trace time
        check["graph_error"] = error(err)
        check["graph_ok"] = None
    check["verified"] = check["choose"] == _backend.OP and check["graph_ok"] is not False
    return check
