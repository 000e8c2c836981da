"""Compare tfxent with the installed TF on one parity case in one execution mode.

calls.py runs each side; this module lists every difference between the two outcomes
(docs/tf_behaviour.md#checklist): the exception class and TF's message fragment
(messages.py), the loss's static shape, each result's dtype, values within the parity
tolerance (tolerance.py) and signed zeros of the loss, and which backend tfxent ran. It also
measures how close the values are: bit-identical, or the largest ulp distance. A comparison
whose every problem a known difference explains (differences.py) is accepted; where the
installed TF would crash, tfxent is compared with what the other versions answer (crashes.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfxent import _op_names
from tfxent.parity import crashes, differences
from tfxent.parity.calls import Outcome, determinism, run, surfaces
from tfxent.parity.cases import Case
from tfxent.parity.differences import Difference
from tfxent.parity.messages import compare_errors
from tfxent.parity.tolerance import bit_identical, coarser, tolerance, ulp_distance


@dataclass
class Comparison:
    case: Case
    mode: str
    deterministic: bool
    problems: list[str]
    known: Difference | None = None
    raised: bool = False  # tfxent's call raised (as TF's did, when there are no problems)
    identical: bool | None = None  # every compared value bit-identical (None: no values)
    max_ulp: int | None = None  # the largest ulp distance over the compared values

    @property
    def ok(self) -> bool:
        """Parity, or only problems that a known difference explains."""
        return not self.problems or self.known is not None

    @property
    def verdict(self) -> str:
        if not self.problems:
            return "parity"
        if self.known is not None:
            return f"known difference ({self.known.key})"
        return "DIFFERENT"

    @property
    def closeness(self) -> str:
        """One of "bit-identical", "within tolerance", "differing" (there are problems,
        known or not) and "no values" (both sides raised, or no float results)."""
        if self.problems:
            return "differing"
        if self.identical is None:
            return "no values"
        return "bit-identical" if self.identical else "within tolerance"


def _presence(value: object) -> str:
    return "None" if value is None else "a value"


def dense_term_scales(case: Case) -> dict[str, np.ndarray]:
    """The size of the terms the dense results sum, where labels of mixed sign and large
    size cancel: both sides' rounding is relative to the terms, not to the small sum.

    "loss": per row, Σ_j |y_j·(lse − x_j)|; "grad_logits": per row, Σ_j |y_j| (determinism
    mode's softmax·Σy), over the logits' shape. inf where a term is not finite; nothing where
    the shapes do not line up as NumPy sees them (the comparison then uses `tol` alone)."""
    axis = crashes.class_axis(case)
    try:
        x = np.moveaxis(np.asarray(case.logits, np.float64), axis, -1)
        y = np.moveaxis(np.asarray(case.labels, np.float64), axis, -1)
        x, y = np.broadcast_arrays(x, y)
    except (TypeError, ValueError, IndexError):  # NumPy's AxisError is both of the last two
        return {}
    with np.errstate(all="ignore"):
        top = np.max(x, axis=-1, keepdims=True) if x.shape[-1] else np.zeros_like(x[..., :1])
        lse = top + np.log(np.sum(np.exp(x - top), axis=-1, keepdims=True))
        loss = np.sum(np.abs(y * (lse - x)), axis=-1)
        mass = np.broadcast_to(np.sum(np.abs(y), axis=-1, keepdims=True), x.shape)
    finite = {"loss": loss, "grad_logits": np.moveaxis(mass, -1, axis)}
    return {key: np.where(np.isfinite(v), v, np.inf) for key, v in finite.items()}


def _compare_arrays(
    key: str, ours, theirs, dtype: str | None, sparse: bool, scale: np.ndarray | None = None
) -> list[str]:
    if ours is None or theirs is None:
        if ours is None and theirs is None:
            return []
        return [f"{key}: tfxent gave {_presence(ours)}, TF gave {_presence(theirs)}"]
    if ours.shape != theirs.shape:
        return [f"{key}: shape {ours.shape} vs TF {theirs.shape}"]
    order = 2 if key.startswith("hvp") else 1
    tol = tolerance(tf.as_dtype(dtype), sparse=sparse, order=order)
    a, b = ours.astype(np.float64), theirs.astype(np.float64)
    atol = tol if scale is None or scale.shape != a.shape else tol * np.maximum(1.0, scale)
    # np.isclose, written out: older NumPy cannot take a per-element atol beside inf or NaN.
    with np.errstate(invalid="ignore"):
        near = np.isfinite(a) & np.isfinite(b) & (np.abs(a - b) <= atol + tol * np.abs(b))
    close = near | (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
    if not np.all(close):
        worst = np.nanmax(np.abs(a - b)) if a.size else 0.0
        return [f"{key}: values differ (max abs diff {worst:.3g}, tol {tol:.3g})"]
    if key == "loss":
        zeros = (a == 0) & (b == 0)
        if np.any(np.signbit(a[zeros]) != np.signbit(b[zeros])):
            return [f"{key}: signed zeros differ ({a[zeros]} vs {b[zeros]})"]
    return []


TF_XENT_OPS = frozenset({"SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"})


def expects_custom_op(case: Case, mode: str, deterministic: bool) -> bool:
    """Whether tfxent must have run its custom op here: everywhere but under XLA, and but
    the determinism-mode logits broadcast over classes with static shapes, which the core
    hands to the composite path (a Session's placeholders hide the shapes from it)."""
    if mode == "xla":
        return False
    return not (
        deterministic
        and not case.sparse
        and mode != "session"
        and differences.logits_broadcast_over_classes(case)
    )


def _backend_problems(case: Case, mode: str, deterministic: bool, ours: Outcome) -> list[str]:
    """A silent fallback must not pass as parity: check the ops in tfxent's traced graphs."""
    if mode == "eager" or ours.error is not None:
        return []
    problems = []
    if ours.op_types & TF_XENT_OPS:
        problems.append(
            f"tfxent's graph contains TF's xent ops {sorted(ours.op_types & TF_XENT_OPS)}"
        )
    used = ours.op_types & set(_op_names.ALL)
    if expects_custom_op(case, mode, deterministic) and not used:
        problems.append("tfxent's graph does not contain its custom op (silent fallback?)")
    if not expects_custom_op(case, mode, deterministic) and used:
        problems.append(f"tfxent's graph contains {sorted(used)} where the composite path belongs")
    return problems


def _compare_where_tf_crashes(case: Case, mode: str, ours_fn) -> Comparison:
    with determinism(False):
        ours = run(ours_fn, case, mode)
    if not crashes.substitute_known(case):
        problems = ["not comparable: the installed TF crashes on this input and the other "
                    "versions' answer is not tabulated (tfxent.parity.crashes)"]  # fmt: skip
    else:
        problems = crashes.outcome_problems(ours, crashes.expected_where_tf_crashes(case, mode))
    problems += _backend_problems(case, mode, False, ours)
    return Comparison(case, mode, False, problems, None, ours.error is not None)


def _closeness(ours: Outcome, theirs: Outcome) -> tuple[bool | None, int | None]:
    """(bit-identical everywhere, largest ulp distance) over the values both sides gave."""
    identical, worst = None, None
    for key, value in ours.values.items():
        other = theirs.values.get(key)
        if value is None or other is None:
            continue
        distance = ulp_distance(value, other)
        if distance is None:
            continue
        same = bit_identical(value, other)
        identical = same if identical is None else identical and same
        worst = distance if worst is None else max(worst, distance)
    return identical, worst


def _compare_outcomes(case: Case, ours: Outcome, theirs: Outcome) -> list[str]:
    """The differences between two outcomes of calls that both returned."""
    problems = []
    if ours.static_shape != theirs.static_shape:
        problems.append(f"static shape {ours.static_shape} vs TF {theirs.static_shape}")
    problems += compare_errors("gradient error", ours.grad_error, theirs.grad_error)
    scales = {} if case.sparse or case.labels is None else dense_term_scales(case)
    for key in sorted(set(ours.values) | set(theirs.values)):
        if ours.dtypes.get(key) != theirs.dtypes.get(key):
            problems.append(f"{key}: dtype {ours.dtypes.get(key)} vs TF {theirs.dtypes.get(key)}")
            continue
        problems += _compare_arrays(
            key,
            ours.values.get(key),
            theirs.values.get(key),
            coarser(theirs.dtypes.get(key), theirs.dtypes.get("loss")),
            case.sparse,
            scales.get(key),
        )
    return problems


def compare(case: Case, mode: str, deterministic: bool = False) -> Comparison:
    """Run the case on both sides and list every difference (empty list: parity).

    Where the installed TF would crash, tfxent is compared with what every other TF version
    answers instead (tfxent.parity.crashes).
    """
    ours_fn, theirs_fn = surfaces(case.api)
    if crashes.tf_would_crash(case, mode, deterministic):
        return _compare_where_tf_crashes(case, mode, ours_fn)
    with determinism(deterministic):
        ours = run(ours_fn, case, mode)
        theirs = run(theirs_fn, case, mode)
    problems = compare_errors("error", ours.error, theirs.error)
    problems += _backend_problems(case, mode, deterministic, ours)
    if not problems and ours.error is None:
        problems += _compare_outcomes(case, ours, theirs)
    identical, max_ulp = _closeness(ours, theirs)
    known = differences.explaining(case, mode, deterministic, problems) if problems else None
    return Comparison(
        case, mode, deterministic, problems, known, ours.error is not None, identical, max_ulp
    )
