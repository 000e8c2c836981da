"""Comparisons on a TF that would crash: what tfxent must answer instead
(docs/tf_behaviour.md#version-matrix).

TF 2.16.2's native dense kernel segfaults when the class dimension it receives is 0. A
parity run must not call TF there, so `runner.compare` asks `tf_would_crash` first and, for
the inputs every other version answers in one known way, checks tfxent against that answer
(`expected_where_tf_crashes`): the intentional difference `tf216-dense-zero-classes` of
differences.py.
"""

from __future__ import annotations

import re

import numpy as np

from tfxent import _versions


def class_axis(case) -> object:
    """The class axis a dense case asks for, or None when its arguments are rejected first."""
    kwargs = case.kwargs
    if case.api == "v1.dense":
        dim = kwargs.get("dim", -1)
        if kwargs.get("axis") is not None and dim is not None:
            return None
        return kwargs.get("axis") if kwargs.get("axis") is not None else dim
    if kwargs.get("axis") is not None and kwargs.get("dim") is not None:
        return None
    axis = kwargs.get("axis", kwargs.get("dim"))
    return -1 if axis is None else axis


def _class_size(value: object, axis: object) -> int | None:
    if value is None:
        return None
    return _versions.class_size(tuple(np.shape(value)), axis)


def _is_float(value: object) -> bool:
    dtype = np.asarray(value).dtype
    return dtype.kind == "f" or dtype.name == "bfloat16"


def _castable(value: object) -> bool:
    """Whether TF can cast these labels to a float dtype (strings it cannot)."""
    return value is not None and (np.asarray(value).dtype.kind in "biufc" or _is_float(value))


def tf_would_crash(case, mode: str, deterministic: bool) -> bool:
    """Whether TF's side of this comparison would take the process down: the native dense
    kernel of a crashing version, reached with 0 classes in the logits or in labels that
    broadcast against them (both segfault on 2.16.2)."""
    if case.sparse or deterministic or mode == "xla" or case.logits is None:
        return False
    if not _versions.has("dense_zero_classes_segfault"):
        return False
    if not (_is_float(case.logits) and _castable(case.labels)):
        return False  # TF's dtype check or label cast fails before the kernel
    axis = class_axis(case)
    return 0 in (_class_size(case.logits, axis), _class_size(case.labels, axis))


def substitute_known(case) -> bool:
    """Whether every other version's answer is known (`expected_where_tf_crashes`): logits
    and labels of one shape. For labels that broadcast to 0 classes it is not."""
    return np.shape(case.logits) == np.shape(case.labels) and _versions.dense_zero_classes(
        tuple(np.shape(case.logits)), class_axis(case)
    )


def expected_where_tf_crashes(case, mode: str) -> dict:
    """What every TF version but 2.16 answers for a dense call with zero classes.

    `{"error": None, "shape": ...}`: a `+0.0` loss of the logits' shape without the class
    axis, in the logits' dtype, with zero (empty) gradients; or, when the other dimensions
    are empty too (`[0, 0]`, `[2, 0, 0]`), `{"error": "InvalidArgumentError", "fragment":
    ...}`: the Reshape of the kernel's result fails. Under tf.function the static shapes
    make that Reshape succeed for rank-2 logits, whose loss is then empty.
    """
    logits = np.asarray(case.logits)
    axis = class_axis(case) % logits.ndim
    shape = tuple(s for i, s in enumerate(logits.shape) if i != axis)
    reshape_fails = mode in ("eager", "session") or len(shape) > 1
    if int(np.prod(shape)) == 0 and len(shape) > 0 and reshape_fails:
        return {
            "error": "InvalidArgumentError",
            "fragment": re.compile(r"Input to reshape is a tensor with \d+ values, but the "
                                   r"requested shape has 0"),
        }  # fmt: skip
    return {"error": None, "shape": shape, "dtype": logits.dtype.name}


def outcome_problems(outcome, expected: dict, side: str = "tfxent") -> list[str]:
    """Differences between one side's runner Outcome and an `expected_where_tf_crashes`."""
    if expected["error"] is not None:
        if outcome.error is None:
            return [f"error: {side} returned a value where other TF versions raise "
                    f"{expected['error']} ({expected['fragment'].pattern})"]  # fmt: skip
        problems = []
        if type(outcome.error).__name__ != expected["error"]:
            problems.append(f"error: {side} raised {type(outcome.error).__name__}, other TF "
                            f"versions {expected['error']}")  # fmt: skip
        if not expected["fragment"].search(str(outcome.error)):
            problems.append(f"error: {side}'s message {str(outcome.error)[:200]!r} lacks "
                            f"{expected['fragment'].pattern!r}")  # fmt: skip
        return problems
    if outcome.error is not None:
        return [f"error: {side} raised {outcome.error!r} where other TF versions return zeros"]
    problems = []
    loss = outcome.values.get("loss")
    if loss is None or loss.shape != expected["shape"]:
        got = None if loss is None else loss.shape
        problems.append(f"loss: shape {got} where other TF versions give {expected['shape']}")
    elif np.any(loss != 0) or np.any(np.signbit(loss)):
        problems.append(f"loss: {loss.tolist()} where other TF versions return +0.0")
    if outcome.dtypes.get("loss") != expected["dtype"]:
        problems.append(f"loss: dtype {outcome.dtypes.get('loss')} vs {expected['dtype']}")
    if outcome.grad_error is not None:
        problems.append(f"gradient error: {side} raised {outcome.grad_error!r}")
    for key, value in sorted(outcome.values.items()):
        if key != "loss" and value is not None and np.any(value != 0):
            problems.append(f"{key}: nonzero gradient for zero classes")
    return problems
