"""Every known difference between tfxent and the installed TF, in one registry.

The parity runner (`runner.compare`) accepts a comparison whose every problem a difference
here explains; the fuzz tests keep exploring past them; compat_matrix.md lists them; and
`tests/parity/test_differences.py` checks each one: its minimal example still shows it, and
its `pinned_by` names a test that exists. Anything tfxent does differently from TF that is
not here is a bug.

Each entry says where it applies (`Where`: surfaces, modes, determinism, TF versions and
inputs), which message fragments its problems carry, a minimal example, and the test that
pins it. Differences in what the parity runner cannot observe (signatures of the top-level
functions, log lines) apply to no comparison (`Where()` with no surfaces) and are pinned by
their own tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfxent import _versions
from tfxent.parity.cases import MODES, Case, catalogue

DENSE = ("nn.dense", "v1.dense", "v1.dense_v2")
SPARSE = ("nn.sparse", "v1.sparse")
_BF16 = tf.bfloat16.as_numpy_dtype
_F32 = np.float32


# --- what the input predicates look at -------------------------------------------------------


def _dtype(value: object) -> np.dtype:
    return np.asarray(value).dtype


def _is_float_dtype(dtype: np.dtype) -> bool:
    return dtype == _BF16 or np.issubdtype(dtype, np.floating)


def class_dims(case: Case) -> tuple[int | None, int | None]:
    """(logits, labels) sizes along a dense case's class axis; None where there is none."""
    axis = case.kwargs.get("axis", case.kwargs.get("dim", -1))
    axis = -1 if axis is None else axis
    sizes = []
    for value in (case.logits, case.labels):
        shape = np.shape(value)
        sizes.append(shape[axis] if shape and -len(shape) <= axis < len(shape) else None)
    return sizes[0], sizes[1]


def logits_broadcast_over_classes(case: Case) -> bool:
    """Dense logits with one class against labels with several ([N, 1] vs [N, C])."""
    logits_classes, labels_classes = class_dims(case)
    return logits_classes == 1 and (labels_classes or 1) > 1


def _any_input(case: Case, mode: str) -> bool:
    return True


# --- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Where a difference applies: catalogue surfaces (`cases.APIS` keys; none: it is not
    a parity comparison), execution modes, op determinism (None: either), a TF behaviour
    from `tfxent._versions` the installed TF must have, and a predicate on the inputs."""

    surfaces: tuple[str, ...] = ()
    modes: tuple[str, ...] = MODES
    deterministic: bool | None = None
    tf_has: str | None = None
    inputs: Callable[[Case, str], bool] = _any_input

    def here(self) -> bool:
        """Whether the installed TF can show it at all."""
        return self.tf_has is None or _versions.has(self.tf_has)

    def covers(self, case: Case, mode: str, deterministic: bool) -> bool:
        return (
            case.api in self.surfaces
            and mode in self.modes
            and self.deterministic in (None, deterministic)
            and self.here()
            and self.inputs(case, mode)
        )


@dataclass(frozen=True)
class Example:
    """A minimal comparison that shows the difference."""

    case: Case
    mode: str = "eager"
    deterministic: bool = False


@dataclass(frozen=True)
class Difference:
    """One documented place where tfxent does not, or deliberately does not, match TF.

    `fragments`: every problem the comparison reports contains one of them. None at all
    means the difference stays within the parity tolerance (the results are not bit-identical,
    and the example test checks exactly that). `example` is a comparison, or a Python call
    for differences the runner cannot observe. `instead_of` names the `_versions` behaviour
    tfxent does not reproduce, where the difference is a TF version's behaviour. `peer` is
    (suite, test-id fragment) where TF's or Keras's own tests show it
    (tfxent/parity/peers.py), which then accepts that test's patched outcome.
    """

    key: str
    title: str
    reason: str
    where: Where
    fragments: tuple[str, ...]
    example: Example | str
    pinned_by: str
    instead_of: str | None = None
    peer: tuple[str, str] | None = None

    def explains(self, problems: list[str]) -> bool:
        """Whether every problem is one this difference produces (none: nothing to explain)."""
        return bool(problems) and all(
            any(fragment in problem for fragment in self.fragments) for problem in problems
        )


_EXAMPLE_TEST = "tests/parity/test_differences.py::test_difference_still_occurs"
_CATALOGUE = {c.id: c for c in catalogue()}

DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "top-level-sentinel-guard",
        "Top-level `tfxent.softmax_cross_entropy_with_logits` / "
        "`sparse_softmax_cross_entropy_with_logits` keep TF 1.x's `_sentinel` keyword guard",
        "The top-level functions are the TF 1.15 contract legacy code was written against: a "
        "positional call raises TF 1.x's `Only call … with named arguments` instead of silently "
        "reading a TF 0.x `(logits, labels)` call in the TF ≥ 2.12 order "
        "(docs/tf_behaviour.md#signatures, docs/design.md). "
        "`tfxent.nn` and `tfxent.compat.v1.nn` have TF's exact signatures.",
        Where(),
        (),
        "tfxent.softmax_cross_entropy_with_logits([[0.0, 1.0]], [[1.0, 2.0]])  # ValueError",
        "tests/core/test_surfaces.py::test_top_level_rejects_positional_calls",
    ),
    Difference(
        "deprecation-line-module",
        "Deprecation log lines name `tfxent.compat.v1.nn` instead of "
        "`tensorflow.python.ops.nn_ops`",
        "The lines are logged by tfxent's own functions, once per process and in the same "
        "places as TF's (docs/tf_behaviour.md#deprecation-log-lines); naming TF's module would "
        "point users at code they do not call.",
        Where(),
        (),
        "tfxent.compat.v1.nn.softmax_cross_entropy_with_logits(labels=[[0.0, 1.0]], "
        "logits=[[1.0, 2.0]])  # logs `... (from tfxent.compat.v1.nn) is deprecated ...`",
        "tests/core/test_surfaces.py::"
        "test_deprecation_log_lines_match_tf_once_per_process_and_graph_only_for_dim",
    ),
    Difference(
        "determinism-int16-labels-gradient",
        "Determinism on, sparse int16 labels: the logits' gradient is returned",
        "TF (2.13+) computes the loss but its gradient fails with a bare AssertionError inside "
        "array_grad's GatherV2 gradient (math_ops.range on an int16 batch size; on 2.22 nightly "
        "a NotFoundError for the int16 Range kernel instead), a TF bug with no message a user "
        "could act on; tfxent's gradient is the int32-label gradient. On 2.12 both sides fail "
        "in the forward GatherV2 alike.",
        Where(
            SPARSE,
            deterministic=True,
            tf_has="gather_int16_indices",
            inputs=lambda case, mode: _dtype(case.labels) == np.int16,
        ),
        ("TF raised AssertionError", "TF raised NotFoundError", "vs TF None"),
        Example(
            Case("int16_labels", "nn.sparse", np.array([1, 3, 2], np.int16), np.ones((3, 4), _F32)),
            deterministic=True,
        ),
        f"{_EXAMPLE_TEST}[determinism-int16-labels-gradient]",
    ),
    Difference(
        "determinism-session-mul-order",
        "Determinism on, a v1 Session: the shape error lists the labels' shape first",
        "With determinism on, TF's shape error comes from its Mul(labels, log_probs), and in a "
        "v1 Session TF's graph optimizer swaps the operands, so its message lists the logits' "
        "shape first; it does so in a tf.function too where the shapes are known only at run "
        "time (zero-class logits, whose flattening TF's shape inference leaves open). tfxent's "
        "op cannot know how it was scheduled and lists the labels first, as TF's eager message "
        "does.",
        Where(
            DENSE,
            modes=("session", "function"),
            deterministic=True,
            inputs=lambda case, mode: mode == "session" or class_dims(case)[0] == 0,
        ),
        ("Incompatible shapes",),
        Example(_CATALOGUE["nn.dense:class_mismatch"], mode="session", deterministic=True),
        f"{_EXAMPLE_TEST}[determinism-session-mul-order]",
    ),
    Difference(
        "determinism-logits-class-broadcast",
        "Determinism on, logits [N, 1] against labels [N, C] with shapes known only at run "
        "time: the op's broadcast result",
        "With determinism on, TF takes log_softmax over the single class before it broadcasts "
        "(loss 0). tfxent reproduces that on its composite path when the shapes are static, "
        "but with dynamic shapes (a v1 Session's placeholders) its op cannot tell and "
        "broadcasts the logits first.",
        Where(
            DENSE, deterministic=True, inputs=lambda case, mode: logits_broadcast_over_classes(case)
        ),
        ("custom op", "composite path", "values differ", "shape", "dtype", "gradient"),
        Example(_CATALOGUE["nn.dense:logits_Nx1_labels_NxC"], mode="session", deterministic=True),
        f"{_EXAMPLE_TEST}[determinism-logits-class-broadcast]",
    ),
    Difference(
        "xla-dense-empty-by-empty",
        "XLA, dense logits with zero classes and an empty batch: an empty loss",
        "Under XLA with determinism off, dense logits with zero classes and an empty batch "
        "([0, 0], [0, 2, 0], ...) fail in TF's reshape of its kernel's result (it counts the "
        "non-zero dimensions as rows) or in its kernel's broadcast of those rows; tfxent's "
        "composite path returns an empty loss, or raises the same InvalidArgumentError class "
        "with XLA's shape message.",
        Where(
            DENSE,
            modes=("xla",),
            deterministic=False,
            inputs=lambda case, mode: (
                class_dims(case)[0] == 0 and np.shape(case.logits).count(0) >= 2
            ),
        ),
        (
            "tfxent raised None but TF raised InvalidArgumentError",
            "message 'Input to reshape is a tensor",
            "message 'Dimensions cannot be made to match",
        ),
        Example(_CATALOGUE["nn.dense:zero_by_zero"], mode="xla"),
        f"{_EXAMPLE_TEST}[xla-dense-empty-by-empty]",
    ),
    Difference(
        "tf216-dense-zero-classes",
        "Dense logits with 0 classes on TF 2.16: zeros, where TF crashes the process",
        "TF 2.16.2's native dense kernel segfaults on a class dimension of 0 "
        "(docs/tf_behaviour.md#version-matrix; 2.16.0 and 2.16.1 are treated alike, so that "
        "the parity check never crashes); every other version returns zeros (`+0.0`), or "
        "a Reshape error for `[0, 0]` in eager mode and in a Session, and so does tfxent. The "
        "parity check compares tfxent with that answer instead of calling TF "
        "(tfxent/parity/crashes.py).",
        Where(
            DENSE,
            modes=("eager", "function", "session"),
            deterministic=False,
            tf_has="dense_zero_classes_segfault",
            inputs=lambda case, mode: class_dims(case)[0] == 0,
        ),
        (),
        "tfxent.nn.softmax_cross_entropy_with_logits(tf.zeros([2, 0]), tf.zeros([2, 0]))",
        "tests/core/test_versions.py::test_zero_class_substitute_matches_tf",
        instead_of="dense_zero_classes_segfault",
    ),
)

_BY_KEY = {d.key: d for d in DIFFERENCES}
assert len(_BY_KEY) == len(DIFFERENCES), "duplicate difference keys"


def get(key: str) -> Difference:
    return _BY_KEY[key]


def applicable(case: Case, mode: str, deterministic: bool) -> list[Difference]:
    """The differences that may show in this comparison on the installed TF."""
    return [d for d in DIFFERENCES if d.where.covers(case, mode, deterministic)]


def explaining(
    case: Case, mode: str, deterministic: bool, problems: list[str]
) -> Difference | None:
    """The difference that explains every problem of this comparison, if one does."""
    for difference in applicable(case, mode, deterministic):
        if difference.explains(problems):
            return difference
    return None


def departed_versions() -> frozenset[str]:
    """The `_versions` behaviours tfxent does not reproduce."""
    return frozenset(d.instead_of for d in DIFFERENCES if d.instead_of)


__all__ = [
    "DIFFERENCES",
    "Difference",
    "Example",
    "Where",
    "applicable",
    "class_dims",
    "departed_versions",
    "explaining",
    "get",
    "logits_broadcast_over_classes",
]
