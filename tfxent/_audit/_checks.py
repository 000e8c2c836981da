"""What the audit checks in one call: the user's call site, whether the labels depend on
trainable variables, and what their values and shapes say (docs/migration.md)."""

from __future__ import annotations

import gc
import os
import sys
import types
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import backprop
from tensorflow.python.framework import func_graph, ops
from tensorflow.python.util import tf_stack

from tfxent import _versions
from tfxent._dtypes import EPSILON

# The tape-recording helpers moved modules in TF 2.13 (see _versions).
record = _versions.module("eager_record_module")

# Ops whose gradient is None (or an error) for every input: the labels' gradient stops there.
_NO_GRADIENT_OPS = frozenset(
    {"StopGradient", "PreventGradient", "Floor", "Ceil", "Round", "Rint", "Sign"}
)
_VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable"})


# -- call sites ----------------------------------------------------------------------------
def call_site() -> tuple[str, int, str]:
    """The innermost frame of the user's code, through autograph's source map."""
    roots = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]  # tfxent/
    roots += [os.path.dirname(m.__file__) for m in _loaded("tensorflow", "keras", "tf_keras")]
    skip = (*(os.path.join(r, "") for r in roots), "<frozen")
    for frame in reversed(list(tf_stack.extract_stack())):
        name = frame.filename
        if name.startswith(skip) or "__autograph_generated" in name:
            continue
        return (name, frame.lineno, frame.name)
    return ("<unknown>", 0, "?")


def _loaded(*names: str) -> list[types.ModuleType]:
    return [sys.modules[n] for n in names if getattr(sys.modules.get(n), "__file__", None)]


# -- labels that carry gradient ------------------------------------------------------------
def v1_message(names: list[str], exact: bool) -> Callable:
    def build():
        listed = ", ".join(names) if names else "(tensors the tape watches)"
        if exact:
            what = f"labels depend on trainable variables {listed}"
        else:
            what = (
                "labels are recorded by an active GradientTape that watches trainable "
                f"variables {listed} (eager mode cannot tell which of them; trace the step "
                "with tf.function for exact names)"
            )
        return (
            f"{what}. The v1 function stops the labels' gradient; a plain v2 call would "
            "train them: migrate with labels=tf.stop_gradient(...) (tfxent migrate does)",
            list(names),
            bool(exact),
        )

    return build


def as_variable(x):
    if isinstance(x, tf.Variable):
        return x
    if all(hasattr(x, a) for a in ("path", "trainable", "value", "assign")):
        return x  # a Keras 3 variable
    return None


def variable_name(v) -> str:
    """TF's name (`teacher/w:0`); a Keras 3 variable by the tf.Variable it holds."""
    if not isinstance(v, tf.Variable) and isinstance(getattr(v, "value", None), tf.Variable):
        v = v.value
    return getattr(v, "name", None) or getattr(v, "path", None) or repr(v)


def tape_variables() -> list[str]:
    """Trainable variables watched by the recording GradientTapes: those bound to a local of
    a frame on the stack, else any alive (a garbage-collector scan, once per call site)."""
    tapes, frame = {}, sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if isinstance(value, backprop.GradientTape) and getattr(value, "_recording", 0):
                tapes[id(value)] = value
        frame = frame.f_back
    if not tapes:
        for obj in gc.get_objects():
            if isinstance(obj, backprop.GradientTape) and getattr(obj, "_recording", False):
                tapes[id(obj)] = obj
    return sorted(
        {variable_name(v) for t in tapes.values() for v in t.watched_variables() if v.trainable}
    )


def graph_variables(labels) -> list[str]:
    """Trainable variables the labels are computed from along differentiable paths, walking
    into outer graphs through a FuncGraph's captures. Function-call and control-flow ops
    are followed through all their inputs (a superset for those)."""
    names, seen, stack = set(), set(), [labels]
    while stack:
        tensor = stack.pop()
        key = (id(tensor.graph), tensor.name)
        if key in seen:
            continue
        seen.add(key)
        op = tensor.op
        if op.type in _NO_GRADIENT_OPS:
            continue
        if op.type in _VARIABLE_OPS:
            name = _graph_variable_name(op)
            if name is not None:
                names.add(name)
            continue
        if op.type == "Placeholder":
            source = _captured(tensor)
            if source is None:
                continue  # a function argument or a fed placeholder: no variable behind it
            if not isinstance(source, ops.EagerTensor):
                stack.append(source)  # a tensor of the enclosing graph
            elif source.dtype == tf.resource:
                variable = _captured_variable(tensor.graph, source)
                if variable is None or variable.trainable:
                    names.add(variable_name(variable) if variable is not None else op.name)
            continue
        if _differentiable(op):
            stack.extend(t for t in op.inputs if _carries_gradient(t))
    return sorted(names)


def _captured(tensor):
    for external, internal in getattr(tensor.graph, "captures", ()):
        if internal is tensor:
            return external
    return None


def _captured_variable(graph, handle):
    while isinstance(graph, func_graph.FuncGraph):
        for variable in list(getattr(graph, "_watched_variables", ())):
            if getattr(variable, "handle", None) is handle:
                return variable
        graph = graph.outer_graph
    return None


def _graph_variable_name(op) -> str | None:
    """The name of the trainable graph variable `op` creates; None if it is not trainable."""
    graph, keys = op.graph, tf.compat.v1.GraphKeys
    for variable in graph.get_collection(keys.TRAINABLE_VARIABLES):
        if getattr(variable.op, "name", None) == op.name:
            return variable_name(variable)
    for variable in graph.get_collection(keys.GLOBAL_VARIABLES) + graph.get_collection(
        keys.LOCAL_VARIABLES
    ):
        if getattr(variable.op, "name", None) == op.name:
            return None
    return op.name  # a variable op outside the collections: report it, unnamed


def _differentiable(op) -> bool:
    try:
        return ops.get_gradient_function(op) is not None
    except LookupError:
        return False


def _carries_gradient(tensor) -> bool:
    dtype = tensor.dtype.base_dtype
    return dtype.is_floating or dtype.is_complex or dtype in (tf.resource, tf.variant)


# -- values and shapes ---------------------------------------------------------------------
def values(labels, eager: bool) -> np.ndarray | None:
    """The labels as an array: read in eager mode, constant-folded in graph mode."""
    variable = as_variable(labels)
    try:
        if eager and (variable is not None or tf.is_tensor(labels)):
            with record.stop_recording():  # reading a variable must not make a tape watch it
                value = labels.numpy()
        elif variable is not None:
            return None
        elif tf.is_tensor(labels):
            value = tf.get_static_value(labels)
        else:
            value = np.asarray(labels)
    except Exception:
        return None
    if value is None or np.asarray(value).dtype == object:
        return None
    return np.asarray(value)


def value_findings(kind, labels, logits_shape, axis, eps) -> list[tuple[str, str]]:
    """(code, message) for the label values of one call; [] where the call itself fails."""
    logits_shape = [int(d) if d is not None else None for d in logits_shape]
    if kind == "sparse":
        classes = logits_shape[-1] if logits_shape else None
        if classes is None or not np.issubdtype(labels.dtype, np.integer):
            return []
        bad = (labels < 0) | (labels >= classes)
        if not bad.any():
            return []
        out = labels[bad]
        return [
            (
                "sparse-labels-out-of-range",
                f"{bad.sum()} of {labels.size} labels outside [0, {classes}) (e.g. "
                f"{out.flat[0]}; min {out.min()}, max {out.max()}): CPU raises "
                "InvalidArgumentError, GPU and XLA return NaN losses silently",
            )
        ]
    rank = len(logits_shape)
    axis = int(axis) + rank if int(axis) < 0 else int(axis)
    if not 0 <= axis < rank or labels.ndim > rank:
        return []
    aligned = [1] * (rank - labels.ndim) + list(labels.shape)
    shape = [a if d is None else d for d, a in zip(logits_shape, aligned, strict=True)]
    try:
        full = np.broadcast_to(labels.astype(np.float64), np.broadcast_shapes(labels.shape, shape))
    except (ValueError, TypeError):
        return []
    sums, zero = full.sum(axis=axis), np.all(full == 0, axis=axis)
    tolerance = 8 * eps * max(full.shape[axis], 1)
    off = (np.abs(sums - 1) > tolerance) & ~zero
    findings = []
    gradient = "TF's kernel gradient softmax − labels is not the true gradient there, and it "
    if off.any():
        row = tuple(int(i) for i in np.argwhere(off)[0])
        findings.append(
            (
                "labels-not-normalized",
                f"{off.sum()} of {sums.size} label rows do not sum to 1 ({_row(row)} sums to "
                f"{sums[row]:.6g}): {gradient}changes when op determinism is enabled",
            )
        )
    if zero.any():
        row = tuple(int(i) for i in np.argwhere(zero)[0])
        findings.append(
            (
                "labels-zero-rows",
                f"{zero.sum()} of {sums.size} label rows are all zero (e.g. {_row(row)}): loss 0, "
                f"but {gradient}becomes 0 when op determinism is enabled",
            )
        )
    return findings


def _row(index: tuple[int, ...]) -> str:
    return "the only row" if not index else f"row {index[0] if len(index) == 1 else index}"


def shape(x) -> list[int | None] | None:
    try:
        shape = getattr(x, "shape", None)
        shape = np.shape(x) if shape is None else shape
        return tf.TensorShape(shape).as_list()
    except (ValueError, TypeError):
        return None


def differs(a, b) -> bool:
    if a is None or b is None:
        return False
    return len(a) != len(b) or any(x != y for x, y in zip(a, b, strict=True) if None not in (x, y))


def fmt(shape) -> str:
    return str(tuple("?" if d is None else d for d in shape)).replace("'", "")


def eps(labels, logits) -> float:
    """The precision of TF's label arithmetic: half logits compute in float32."""
    try:
        compute = tf.as_dtype(getattr(logits, "dtype", tf.float32))
        compute = tf.float32 if compute in (tf.float16, tf.bfloat16) else compute
        dtype = tf.as_dtype(getattr(labels, "dtype", tf.float32))
    except TypeError:
        return EPSILON[tf.float32]
    return max(EPSILON.get(compute, EPSILON[tf.float32]), EPSILON.get(dtype, 0.0))
