"""Runtime audit: the call sites where a v1 → v2 migration, op determinism or a device change
would silently alter training, recorded while the real program runs (docs/migration.md).

    with tfxent.audit():          # or TFXENT_AUDIT=1 for the whole process (json: =json;
        train()                   # TFXENT_AUDIT_FILE=path writes the report to a file)

The report goes to stderr when the block exits (at process exit for TFXENT_AUDIT), or is
returned on demand by `Audit.report()` / `tfxent.audit.report()`.

Each call of a tfxent function is checked at the user's call site (file:line, tfxent's,
TensorFlow's and Keras' frames skipped, autograph's source map applied) for:

* `v1-labels-trainable` (risk): the v1 dense function's labels depend on trainable
  variables, which it keeps out of the gradient and a plain v2 call would train. Graph mode
  (tf.function, v1 graphs) walks the graph from the labels to the variables they are read
  from along differentiable paths and names those (all inputs of function-call and
  control-flow ops are followed, so through them it is a superset). Eager tensors have no
  provenance: a label tensor that an active `tf.GradientTape` records is reported with the
  trainable variables that tape watches (`exact: false`: a superset; trace the step with
  tf.function for exact names).
* `labels-not-normalized`, `labels-zero-rows` (warning): TF's kernel gradient `softmax −
  labels` is the true gradient only for rows that sum to 1, and op determinism changes it.
* `labels-broadcast` (warning): dense labels whose shape differs from the logits' shape.
* `sparse-labels-out-of-range` (risk): an error on CPU (recorded before it is raised), a
  silent NaN on GPU and under XLA.

Values are read in eager mode on every call (one host copy of the labels). In graph mode
only constant labels are checked, since the audit adds nothing to the user's graph by
default; `audit(graph_values=True)` adds a host-side check op to tf.function graphs (not
to XLA-compiled functions or v1 graphs, where it would not compile or not run); it stays in
functions traced during the audit, as a no-op once the audit ends. With no audit running
no observer is registered and a call costs one falsy check.
"""

from __future__ import annotations

import atexit
import dataclasses
import gc
import json as _json
import os
import sys
import threading
import types
from collections import Counter
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import backprop
from tensorflow.python.framework import func_graph, ops
from tensorflow.python.util import tf_stack

from tfxent import _backend, _hooks, _versions

# The tape-recording helpers moved modules in TF 2.13 (see _versions).
record = _versions.module("eager_record_module")

__all__ = ["Audit", "Finding", "audit", "report"]

CODES = {  # code -> risk, in report order
    "v1-labels-trainable": "risk",
    "sparse-labels-out-of-range": "risk",
    "labels-not-normalized": "warning",
    "labels-zero-rows": "warning",
    "labels-broadcast": "warning",
}
_EPS = {tf.float16: 2.0**-10, tf.bfloat16: 2.0**-7, tf.float32: 2.0**-23, tf.float64: 2.0**-52}
# Ops whose gradient is None (or an error) for every input: the labels' gradient stops there.
_NO_GRADIENT_OPS = frozenset(
    {"StopGradient", "PreventGradient", "Floor", "Ceil", "Round", "Rint", "Sign"}
)
_VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable"})
_running: list[Audit] = []  # started and not yet stopped, oldest first


@dataclasses.dataclass
class Finding:
    """One kind of problem at one call site, with how often it was seen."""

    code: str  # a key of CODES
    risk: str  # "risk" or "warning"
    path: str
    line: int
    function: str
    surface: str  # "dense v1 (labels stopped)", "dense", "sparse"
    message: str
    variables: list[str] = dataclasses.field(default_factory=list)
    exact: bool = True  # False: `variables` are what an eager tape watches, a superset
    occurrences: int = 0
    modes: Counter = dataclasses.field(default_factory=Counter)  # eager / traced / run

    @property
    def location(self) -> str:
        return f"{_display_path(self.path)}:{self.line}"

    def to_json(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["modes"] = dict(self.modes)
        data["location"] = self.location
        return data

    def to_text(self) -> str:
        modes = ", ".join(f"{m} ×{n}" for m, n in sorted(self.modes.items()))
        return (
            f"{self.location}: {self.risk.upper()} {self.code} in {self.function}() "
            f"[{self.surface}; {modes}]: {self.message}"
        )


class Audit:
    """Records findings while started; a context manager that prints its report on exit.

    Args:
      json: print the report as JSON instead of text.
      file: where to print: a text stream or a path (default: sys.stderr at print time).
      graph_values: also check label values at run time in tf.function graphs, through a
        host-side check op added beside the call (see the module docstring).
      report_at_exit: print the report when the `with` block exits.
    """

    def __init__(self, *, json=False, file=None, graph_values=False, report_at_exit=True):
        self.json, self.file = json, file
        self.graph_values, self.report_at_exit = graph_values, report_at_exit
        self._lock = threading.RLock()
        self._findings: dict[tuple[str, int, str], Finding] = {}
        self._calls: Counter = Counter()
        self._unchecked: dict[tuple[str, int, str], str] = {}
        self._errors: list[str] = []
        self._observer = self._observe

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Audit:
        with self._lock:
            if not self.active:
                _hooks.observers.append(self._observer)
                _running.append(self)
        return self

    def stop(self) -> None:
        with self._lock:
            while self._observer in _hooks.observers:
                _hooks.observers.remove(self._observer)
            if self in _running:
                _running.remove(self)

    @property
    def active(self) -> bool:
        return self._observer in _hooks.observers

    def __enter__(self) -> Audit:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        if self.report_at_exit:
            self.print_report()

    # -- results ---------------------------------------------------------------------------
    @property
    def findings(self) -> list[Finding]:
        with self._lock:
            order = list(CODES)
            return sorted(
                self._findings.values(), key=lambda f: (f.path, f.line, order.index(f.code))
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """Per finding code: how many call sites, and how many calls at those sites."""
        counts = {code: {"sites": 0, "occurrences": 0} for code in CODES}
        for f in self.findings:
            counts[f.code]["sites"] += 1
            counts[f.code]["occurrences"] += f.occurrences
        return counts

    def as_dict(self) -> dict[str, object]:
        with self._lock:
            calls = {"total": sum(self._calls.values()), **{m: 0 for m in ("eager", "traced")}}
            calls.update(self._calls)
            unchecked = [
                {"path": p, "line": n, "location": f"{_display_path(p)}:{n}", "reason": r}
                for (p, n, _), r in sorted(self._unchecked.items())
            ]
            return {
                "tool": "tfxent.audit",
                "version": 1,
                "calls": calls,
                "counts": self.counts(),
                "findings": [f.to_json() for f in self.findings],
                "unchecked": unchecked,
                "errors": list(self._errors),
            }

    def report(self, *, json: bool | None = None) -> str:
        """The report as text, or as JSON (`json=True`; default: the audit's setting)."""
        data = self.as_dict()
        if self.json if json is None else json:
            return _json.dumps(data, indent=2, sort_keys=False)
        findings, calls = self.findings, data["calls"]
        sites = {(f.path, f.line) for f in findings}
        lines = [
            f"tfxent audit: {len(findings)} finding{'s' * (len(findings) != 1)} at "
            f"{len(sites)} call site{'s' * (len(sites) != 1)}; {calls['total']} calls observed ("
            + ", ".join(f"{n} {m}" for m, n in calls.items() if m != "total")
            + ")"
        ]
        lines += [f"  {f.to_text()}" for f in findings] or ["  no findings"]
        summary = [
            f"{c} {n['sites']} ({n['occurrences']} calls)" for c, n in data["counts"].items()
        ]
        lines.append("  counts (sites): " + ", ".join(summary))
        for item in data["unchecked"]:
            lines.append(f"  not checked: {item['location']}: {item['reason']}")
        lines += [f"  audit error (ignored): {e}" for e in data["errors"]]
        return "\n".join(lines) + "\n"

    def print_report(self, *, json: bool | None = None, file=None) -> None:
        text, target = self.report(json=json), self.file if file is None else file
        if isinstance(target, str | os.PathLike):
            with open(target, "w", encoding="utf-8") as stream:
                stream.write(text)
        else:
            (target or sys.stderr).write(text)
            (target or sys.stderr).flush()

    # -- observation -----------------------------------------------------------------------
    def _observe(self, call: _hooks.XentCall) -> None:
        try:
            self._inspect(call)
        except Exception as err:  # an audit must never change what the program does
            with self._lock:
                if len(self._errors) < 20:
                    self._errors.append(f"{type(err).__name__}: {err}")

    def _inspect(self, call: _hooks.XentCall) -> None:
        site = _call_site()
        eager = tf.executing_eagerly()
        mode = "eager" if eager else "traced"
        with self._lock:
            self._calls[mode] += 1
        if call.kind == "sparse":
            surface = "sparse"
        else:
            surface = "dense v1 (labels stopped)" if call.labels_stopped else "dense"
        if call.labels_stopped:
            self._check_trainable(site, surface, mode, call.labels, eager)
        labels_shape, logits_shape = _shape(call.labels), _shape(call.logits)
        if call.kind == "dense" and _differs(labels_shape, logits_shape):
            message = (
                f"labels of shape {_fmt(labels_shape)} are broadcast against logits of shape "
                f"{_fmt(logits_shape)}; sparse-shaped labels belong in the sparse function"
            )
            self._record(site, surface, mode, "labels-broadcast", lambda: (message, [], True))
        axis = -1 if call.axis is None else call.axis
        eps = _eps(call.labels, call.logits)
        values = _values(call.labels, eager)
        if values is not None and logits_shape is not None:
            for code, message in _value_findings(call.kind, values, logits_shape, axis, eps):
                self._record(site, surface, mode, code, lambda m=message: (m, [], True))
        elif eager:
            pass  # labels that cannot be read as an array fail in the core with TF's error
        elif self.graph_values and isinstance(ops.get_default_graph(), func_graph.FuncGraph):
            if _backend.in_xla_context():
                self._not_checked(site, "labels not constant, inside an XLA-compiled function")
            else:
                self._add_run_check(call, site, surface, axis, eps)
        elif isinstance(ops.get_default_graph(), func_graph.FuncGraph):
            why = "labels not constant; tfxent.audit(graph_values=True) checks them at run time"
            self._not_checked(site, why)
        else:  # nothing would fetch a check op added to a v1 graph
            self._not_checked(site, "labels not constant in a v1 graph")

    def _check_trainable(self, site, surface, mode, labels, eager: bool) -> None:
        variable = _as_variable(labels)
        if variable is not None:
            if variable.trainable:
                names = [_variable_name(variable)]
                self._record(site, surface, mode, "v1-labels-trainable", _v1_message(names, True))
        elif not tf.is_tensor(labels):
            return
        elif eager:
            if record.should_record_backprop([labels]):
                build = lambda: _v1_message(_tape_variables(), False)()  # noqa: E731
                self._record(site, surface, mode, "v1-labels-trainable", build, exact=False)
        else:
            names = _graph_variables(labels)
            if names:
                self._record(site, surface, mode, "v1-labels-trainable", _v1_message(names, True))

    def _add_run_check(self, call, site, surface, axis, eps) -> None:
        kind = call.kind

        def check(labels: np.ndarray, logits_shape: np.ndarray) -> None:
            if not self.active:
                return
            with self._lock:
                self._calls["run"] += 1
            try:
                for code, message in _value_findings(kind, labels, logits_shape, axis, eps):
                    self._record(site, surface, "run", code, lambda m=message: (m, [], True))
            except Exception as err:  # never fail the user's step
                with self._lock:
                    self._errors.append(f"{type(err).__name__}: {err}")

        with ops.name_scope("tfxent_audit"):
            labels = tf.convert_to_tensor(call.labels)
            tf.numpy_function(check, [labels, tf.shape(call.logits)], Tout=[], stateful=True)

    def _record(self, site, surface, mode, code, build: Callable, exact: bool = True) -> None:
        path, line, function = site
        with self._lock:
            finding = self._findings.get((path, line, code))
            if finding is None or (exact and not finding.exact):
                message, variables, exact = build()
                if finding is None:
                    finding = Finding(code, CODES[code], path, line, function, surface, message)
                    self._findings[(path, line, code)] = finding
                finding.message, finding.variables, finding.exact = message, variables, exact
            finding.occurrences += 1
            finding.modes[mode] += 1

    def _not_checked(self, site, reason: str) -> None:
        with self._lock:
            self._unchecked.setdefault(site, reason)


def audit(*, json=False, file=None, graph_values=False, report_at_exit=True) -> Audit:
    """`with tfxent.audit(): ...` — see `Audit` for the arguments."""
    return Audit(json=json, file=file, graph_values=graph_values, report_at_exit=report_at_exit)


def report(*, json: bool | None = None) -> str:
    """The report of the most recently started audit still running (e.g. TFXENT_AUDIT=1)."""
    if not _running:
        raise RuntimeError(
            "tfxent: no audit is running: use `with tfxent.audit():` or TFXENT_AUDIT=1"
        )
    return _running[-1].report(json=json)


# -- call sites ----------------------------------------------------------------------------
def _call_site() -> tuple[str, int, str]:
    """The innermost frame of the user's code, through autograph's source map."""
    roots = [os.path.dirname(os.path.abspath(__file__))]
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


def _display_path(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


# -- labels that carry gradient ------------------------------------------------------------
def _v1_message(names: list[str], exact: bool) -> Callable:
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


def _as_variable(x):
    if isinstance(x, tf.Variable):
        return x
    if all(hasattr(x, a) for a in ("path", "trainable", "value", "assign")):
        return x  # a Keras 3 variable
    return None


def _variable_name(v) -> str:
    """TF's name (`teacher/w:0`); a Keras 3 variable by the tf.Variable it holds."""
    if not isinstance(v, tf.Variable) and isinstance(getattr(v, "value", None), tf.Variable):
        v = v.value
    return getattr(v, "name", None) or getattr(v, "path", None) or repr(v)


def _tape_variables() -> list[str]:
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
        {_variable_name(v) for t in tapes.values() for v in t.watched_variables() if v.trainable}
    )


def _graph_variables(labels) -> list[str]:
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
                    names.add(_variable_name(variable) if variable is not None else op.name)
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
            return _variable_name(variable)
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
def _values(labels, eager: bool) -> np.ndarray | None:
    """The labels as an array: read in eager mode, constant-folded in graph mode."""
    variable = _as_variable(labels)
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


def _value_findings(kind, labels, logits_shape, axis, eps) -> list[tuple[str, str]]:
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


def _shape(x) -> list[int | None] | None:
    try:
        shape = getattr(x, "shape", None)
        shape = np.shape(x) if shape is None else shape
        return tf.TensorShape(shape).as_list()
    except (ValueError, TypeError):
        return None


def _differs(a, b) -> bool:
    if a is None or b is None:
        return False
    return len(a) != len(b) or any(x != y for x, y in zip(a, b, strict=True) if None not in (x, y))


def _fmt(shape) -> str:
    return str(tuple("?" if d is None else d for d in shape)).replace("'", "")


def _eps(labels, logits) -> float:
    """The precision of TF's label arithmetic: half logits compute in float32."""
    try:
        compute = tf.as_dtype(getattr(logits, "dtype", tf.float32))
        compute = tf.float32 if compute in (tf.float16, tf.bfloat16) else compute
        dtype = tf.as_dtype(getattr(labels, "dtype", tf.float32))
    except TypeError:
        return _EPS[tf.float32]
    return max(_EPS.get(compute, _EPS[tf.float32]), _EPS.get(dtype, 0.0))


# -- TFXENT_AUDIT and `tfxent.audit()` on the module ---------------------------------------
class _CallableModule(types.ModuleType):
    """`tfxent.audit(...)` works whether `tfxent.audit` is this module or the function."""

    def __call__(self, **kwargs) -> Audit:
        return audit(**kwargs)


sys.modules[__name__].__class__ = _CallableModule


def _start_from_environment() -> Audit | None:
    value = os.environ.get("TFXENT_AUDIT", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return None
    process = Audit(json=value == "json", file=os.environ.get("TFXENT_AUDIT_FILE") or None)
    process.report_at_exit = False
    atexit.register(process.print_report)
    return process.start()


_process_audit = _start_from_environment()
