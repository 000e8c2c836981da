"""Run one catalogue case on one side (tfxent or the installed TF) in one execution mode and
record everything observable (docs/tf_behaviour.md#checklist).

Modes: eager, `tf.function`, a v1 graph run in a Session with fully dynamic placeholders,
and `tf.function(jit_compile=True)`. What is recorded: the loss's value, dtype and static
shape; first-order gradients with respect to logits and labels (or their absence);
Hessian-vector products with respect to both; the exception of a failing call or gradient;
and the op types of traced graphs, so that the comparison can prove which backend ran.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config

import tfxent
from tfxent.parity.cases import APIS, Case


def surfaces(api: str) -> tuple[object, object]:
    """(tfxent function, TF function) for a catalogue api key."""
    ours, theirs = tfxent, tf
    for part in APIS[api].split("."):
        ours, theirs = getattr(ours, part), getattr(theirs, part)
    return ours, theirs


@dataclass
class Outcome:
    """Everything observable about one call (and its gradients) on one side."""

    error: BaseException | None = None
    values: dict[str, np.ndarray | None] = field(default_factory=dict)
    dtypes: dict[str, str | None] = field(default_factory=dict)
    static_shape: str | None = None
    grad_error: BaseException | None = None
    op_types: frozenset[str] = frozenset()  # op types of the traced graphs (not eager)


def is_float(value: object) -> bool:
    """Whether a case input is a float NumPy array or scalar (bfloat16 included)."""
    if not isinstance(value, np.ndarray | np.generic):
        return False
    return value.dtype.kind == "f" or value.dtype == tf.bfloat16.as_numpy_dtype


def second_order_supported(case: Case) -> bool:
    """Second order on small float cases only (it multiplies the work by ~4)."""
    size = np.size(case.logits) if isinstance(case.logits, np.ndarray) else 0
    return is_float(case.logits) and 0 < size <= 4096


def gradient_orders(case: Case) -> int:
    """How many gradient orders a comparison of this case covers when nothing raises."""
    if not (case.gradients and is_float(case.logits)):
        return 0
    return 2 if second_order_supported(case) else 1


def _weights(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 1.5, size=shape)


def _differentiate(fn, case: Case, labels, logits, loss_shape, order_two: bool):
    """Inside a tape context: first- and second-order gradients of a weighted loss sum."""
    watch_labels = is_float(case.labels)
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(logits)
        if watch_labels:
            outer.watch(labels)
        with tf.GradientTape(persistent=True) as inner:
            inner.watch(logits)
            if watch_labels:
                inner.watch(labels)
            loss = fn(labels=labels, logits=logits, **case.kwargs)
            weights = tf.constant(_weights(loss_shape, 11), dtype=loss.dtype)
            target = tf.reduce_sum(loss * weights)
        grad_logits = inner.gradient(target, logits)
        grad_labels = inner.gradient(target, labels) if watch_labels else None
        if order_two and grad_logits is not None:
            v = tf.constant(_weights(tuple(logits.shape), 12), dtype=grad_logits.dtype)
            hvp_target = tf.reduce_sum(grad_logits * v)
    out = {"grad_logits": grad_logits, "grad_labels": grad_labels}
    if order_two and grad_logits is not None:
        out["hvp_logits"] = outer.gradient(hvp_target, logits)
        out["hvp_labels"] = outer.gradient(hvp_target, labels) if watch_labels else None
    return out


def _as_numpy(tensors: dict) -> tuple[dict, dict]:
    values, dtypes = {}, {}
    for key, t in tensors.items():
        # t.numpy(), not np.asarray(t): NumPy cannot take a rank-0 bfloat16 EagerTensor
        # through __array__ ("object __array__ method not producing an array").
        values[key] = None if t is None else np.asarray(t.numpy() if hasattr(t, "numpy") else t)
        dtypes[key] = None if t is None else tf.as_dtype(t.dtype).name
    return values, dtypes


def _tensorize(value: object) -> object:
    return tf.constant(value) if isinstance(value, np.ndarray | np.generic) else value


def _op_types(function, *args) -> frozenset[str]:
    """Op types in a traced tf.function, including the functions it calls."""
    graph = function.get_concrete_function(*args).graph
    types = {op.type for op in graph.get_operations()}
    for sub in graph._functions.values():  # noqa: SLF001 - gradient and nested functions
        types |= {node.op for node in sub.definition.node_def}
    return frozenset(types)


def run_eager_or_function(fn, case: Case, mode: str) -> Outcome:
    outcome = Outcome()
    labels, logits = _tensorize(case.labels), _tensorize(case.logits)

    def forward(labels, logits):
        return fn(labels=labels, logits=logits, **case.kwargs)

    if mode != "eager":
        forward = tf.function(forward, jit_compile=(mode == "xla"), autograph=False)
    try:
        loss = forward(labels, logits)
    except Exception as err:  # noqa: BLE001 - the exception itself is what is compared
        outcome.error = err
        return outcome
    outcome.values, outcome.dtypes = _as_numpy({"loss": loss})
    outcome.static_shape = str(loss.shape)
    if mode != "eager":
        outcome.op_types = _op_types(forward, labels, logits)
    if not (case.gradients and is_float(case.logits)):
        return outcome

    order_two = second_order_supported(case)

    def grads(labels, logits):
        return _differentiate(fn, case, labels, logits, tuple(loss.shape), order_two)

    if mode != "eager":
        grads = tf.function(grads, jit_compile=(mode == "xla"), autograph=False)
    try:
        values, dtypes = _as_numpy(grads(labels, logits))
    except Exception as err:  # noqa: BLE001
        outcome.grad_error = err
        return outcome
    if mode != "eager":
        outcome.op_types |= _op_types(grads, labels, logits)
    outcome.values.update(values)
    outcome.dtypes.update(dtypes)
    return outcome


def _placeholder(value: object):
    """A fully dynamic placeholder (shapes unknown until run time) for array inputs."""
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        dims = [None] * array.ndim
        return tf.compat.v1.placeholder(tf.as_dtype(array.dtype), dims), array
    return value, None


def run_session(fn, case: Case) -> Outcome:
    outcome = Outcome()
    with tf.Graph().as_default() as graph:
        labels, labels_value = _placeholder(case.labels)
        logits, logits_value = _placeholder(case.logits)
        feeds = {t: v for t, v in ((labels, labels_value), (logits, logits_value)) if v is not None}
        try:
            loss = fn(labels=labels, logits=logits, **case.kwargs)
        except Exception as err:  # noqa: BLE001
            outcome.error = err
            return outcome
        outcome.static_shape = str(loss.shape)
        fetches = {"loss": loss}
        outcome.op_types = frozenset(op.type for op in graph.get_operations())
        grad_error = None
        if case.gradients and is_float(case.logits):
            try:
                weights = tf.compat.v1.placeholder(loss.dtype, None)
                target = tf.reduce_sum(loss * weights)
                xs = [logits, labels] if is_float(case.labels) else [logits]
                grads = tf.gradients(target, xs)
                fetches["grad_logits"] = grads[0]
                fetches["grad_labels"] = grads[1] if len(grads) > 1 else None
            except Exception as err:  # noqa: BLE001
                grad_error = err
        with tf.compat.v1.Session(graph=graph) as session:
            try:
                loss_value = session.run(loss, feeds)
            except Exception as err:  # noqa: BLE001
                outcome.error = err
                return outcome
            outcome.values["loss"] = np.asarray(loss_value)
            outcome.dtypes["loss"] = tf.as_dtype(loss.dtype).name
            if grad_error is not None:
                outcome.grad_error = grad_error
                return outcome
            if "grad_logits" in fetches:
                feeds[weights] = _weights(np.shape(loss_value), 11).astype(
                    tf.as_dtype(loss.dtype).as_numpy_dtype
                )
                # One gradient per run: when both fail, a joint run would report whichever
                # failing op the parallel executor reached first.
                for key in ("grad_logits", "grad_labels"):
                    t = fetches[key]
                    try:
                        value = None if t is None else session.run(t, feeds)
                    except Exception as err:  # noqa: BLE001
                        outcome.grad_error = err
                        return outcome
                    outcome.values[key] = None if t is None else np.asarray(value)
                    outcome.dtypes[key] = None if t is None else tf.as_dtype(t.dtype).name
    return outcome


@contextlib.contextmanager
def determinism(enabled: bool):
    """Op determinism on or off for the duration, restoring the previous state."""
    before = config.is_op_determinism_enabled()
    (config.enable_op_determinism if enabled else config.disable_op_determinism)()
    try:
        yield
    finally:
        (config.enable_op_determinism if before else config.disable_op_determinism)()


def run(fn, case: Case, mode: str) -> Outcome:
    """One side of a comparison: call `fn` on the case in `mode` and record the outcome."""
    if mode == "session":
        return run_session(fn, case)
    return run_eager_or_function(fn, case, mode)
