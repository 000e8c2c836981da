"""Recording: an `Audit` observes every core call while it runs (through _hooks) and keeps
one finding per call site and code; `audit()` makes one, and TFXENT_AUDIT=1 starts one for
the whole process."""

from __future__ import annotations

import atexit
import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import TextIO

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import func_graph, ops

from tfxent import _backend, _env, _hooks
from tfxent._audit import _checks, _report
from tfxent._audit._report import Finding

_running: list[Audit] = []  # started and not yet stopped, oldest first


class Audit:
    """Records findings while started; a context manager that prints its report on exit.

    Args:
      json: print the report as JSON instead of text.
      file: where to print: a text stream or a path (default: sys.stderr at print time).
      graph_values: also check label values at run time in tf.function graphs, through a
        host-side check op added beside the call (see the module docstring).
      report_at_exit: print the report when the `with` block exits.
    """

    def __init__(
        self,
        *,
        json: bool = False,
        file: TextIO | str | os.PathLike | None = None,
        graph_values: bool = False,
        report_at_exit: bool = True,
    ):
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
            return _report.ordered(self._findings.values())

    def counts(self) -> dict[str, dict[str, int]]:
        """Per finding code: how many call sites, and how many calls at those sites."""
        return _report.counts(self.findings)

    def as_dict(self) -> dict[str, object]:
        with self._lock:
            return _report.as_dict(self.findings, self._calls, self._unchecked, self._errors)

    def report(self, *, json: bool | None = None) -> str:
        """The report as text, or as JSON (`json=True`; default: the audit's setting)."""
        with self._lock:
            data, findings = self.as_dict(), self.findings
        return _report.render(data, findings, self.json if json is None else json)

    def print_report(self, *, json: bool | None = None, file=None) -> None:
        _report.write(self.report(json=json), self.file if file is None else file)

    # -- observation -----------------------------------------------------------------------
    def _observe(self, call: _hooks.XentCall) -> None:
        try:
            self._inspect(call)
        except Exception as err:  # an audit must never change what the program does
            with self._lock:
                if len(self._errors) < 20:
                    self._errors.append(f"{type(err).__name__}: {err}")

    def _inspect(self, call: _hooks.XentCall) -> None:
        site = _checks.call_site()
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
        labels_shape, logits_shape = _checks.shape(call.labels), _checks.shape(call.logits)
        if call.kind == "dense" and _checks.differs(labels_shape, logits_shape):
            labels_text, logits_text = _checks.fmt(labels_shape), _checks.fmt(logits_shape)
            message = (
                f"labels of shape {labels_text} are broadcast against logits of shape "
                f"{logits_text}; sparse-shaped labels belong in the sparse function"
            )
            self._record(site, surface, mode, "labels-broadcast", lambda: (message, [], True))
        axis = -1 if call.axis is None else call.axis
        eps = _checks.eps(call.labels, call.logits)
        values = _checks.values(call.labels, eager)
        if values is not None and logits_shape is not None:
            for code, message in _checks.value_findings(call.kind, values, logits_shape, axis, eps):
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
        variable = _checks.as_variable(labels)
        if variable is not None:
            if variable.trainable:
                names = [_checks.variable_name(variable)]
                self._record(
                    site, surface, mode, "v1-labels-trainable", _checks.v1_message(names, True)
                )
        elif not tf.is_tensor(labels):
            return
        elif eager:
            if _checks.record.should_record_backprop([labels]):
                build = lambda: _checks.v1_message(_checks.tape_variables(), False)()  # noqa: E731
                self._record(site, surface, mode, "v1-labels-trainable", build, exact=False)
        else:
            names = _checks.graph_variables(labels)
            if names:
                self._record(
                    site, surface, mode, "v1-labels-trainable", _checks.v1_message(names, True)
                )

    def _add_run_check(self, call, site, surface, axis, eps) -> None:
        kind = call.kind

        def check(labels: np.ndarray, logits_shape: np.ndarray) -> None:
            if not self.active:
                return
            with self._lock:
                self._calls["run"] += 1
            try:
                for code, message in _checks.value_findings(kind, labels, logits_shape, axis, eps):
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
                    finding = Finding(
                        code, _report.CODES[code], path, line, function, surface, message
                    )
                    self._findings[(path, line, code)] = finding
                finding.message, finding.variables, finding.exact = message, variables, exact
            finding.occurrences += 1
            finding.modes[mode] += 1

    def _not_checked(self, site, reason: str) -> None:
        with self._lock:
            self._unchecked.setdefault(site, reason)


def audit(
    *,
    json: bool = False,
    file: TextIO | str | os.PathLike | None = None,
    graph_values: bool = False,
    report_at_exit: bool = True,
) -> Audit:
    """A new audit, to use as `with tfxent.audit(): train()`: it records while the block
    runs and prints its report when the block exits. See `Audit` for the arguments."""
    return Audit(json=json, file=file, graph_values=graph_values, report_at_exit=report_at_exit)


def report(*, json: bool | None = None) -> str:
    """The report of the most recently started audit still running (e.g. TFXENT_AUDIT=1)."""
    if not _running:
        raise RuntimeError(
            "tfxent: no audit is running: use `with tfxent.audit():` or TFXENT_AUDIT=1"
        )
    return _running[-1].report(json=json)


def from_environment() -> Audit | None:
    """A started process-wide audit if TFXENT_AUDIT asks for one (its report is printed at
    exit, to TFXENT_AUDIT_FILE or stderr), else None."""
    value = (_env.value("TFXENT_AUDIT") or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return None
    process = Audit(json=value == "json", file=_env.value("TFXENT_AUDIT_FILE") or None)
    process.report_at_exit = False
    atexit.register(process.print_report)
    return process.start()


process_audit: Audit | None = None  # the TFXENT_AUDIT audit, once the package has started it


def start_from_environment() -> Audit | None:
    """What `import tfxent` does for TFXENT_AUDIT: start the process audit, once."""
    global process_audit
    if process_audit is None:
        process_audit = from_environment()
    return process_audit
