"""Which qualified names are TensorFlow's cross-entropy functions, and what they mean.

Legacy code is read with the TF 1.x meaning of each name (``tf.nn`` *is* the v1 API there);
the migrated code is written for TF 2.x, where the same spelling can mean something else.
``classify`` answers both questions for one fully resolved dotted name, whatever import
form produced it (libcst's ``QualifiedNameProvider`` does the alias resolution).
"""

from __future__ import annotations

import dataclasses
import enum

DENSE = "softmax_cross_entropy_with_logits"
DENSE_V2_HELPER = "softmax_cross_entropy_with_logits_v2"
SPARSE = "sparse_softmax_cross_entropy_with_logits"

# Spellings of stop_gradient that already cut the labels' gradient (no second wrap needed).
STOP_GRADIENT_NAMES = frozenset(
    {
        "tensorflow.stop_gradient",
        "tensorflow.compat.v1.stop_gradient",
        "tensorflow.compat.v2.stop_gradient",
        "tensorflow.raw_ops.StopGradient",
        "tensorflow.compat.v1.raw_ops.StopGradient",
        "tensorflow.python.ops.array_ops.stop_gradient",
        "tensorflow.python.ops.gen_array_ops.stop_gradient",
    }
)

PARTIAL_NAMES = frozenset({"functools.partial", "functools.partialmethod"})

# Modules a file may bind that export ``nn`` and ``stop_gradient`` on TF 2.x.
TF_MODULES = frozenset({"tensorflow", "tensorflow.compat.v1", "tensorflow.compat.v2"})


class Kind(enum.Enum):
    """The three legacy functions, by their TF 1.x meaning."""

    DENSE_V1 = "dense_v1"  # labels' gradient stopped; (_sentinel, labels, logits, dim, name, axis)
    DENSE_V2_HELPER = "dense_v2_helper"  # labels' gradient flows; (labels, logits, axis, name, dim)
    SPARSE_V1 = "sparse_v1"  # (_sentinel, labels, logits, name)


# Positional order accepted by TF >= 2.12 (compat.v1), i.e. 1.x without the sentinel.
POSITIONAL_PARAMS: dict[Kind, tuple[str, ...]] = {
    Kind.DENSE_V1: ("labels", "logits", "dim", "name", "axis"),
    Kind.DENSE_V2_HELPER: ("labels", "logits", "axis", "name", "dim"),
    Kind.SPARSE_V1: ("labels", "logits", "name"),
}
# TF 0.x's signatures (before the _sentinel guard of TF 1.0): logits first.
TF0_POSITIONAL_PARAMS: dict[Kind, tuple[str, ...]] = {
    Kind.DENSE_V1: ("logits", "labels", "dim", "name"),
    Kind.SPARSE_V1: ("logits", "labels", "name"),
}


@dataclasses.dataclass(frozen=True)
class Target:
    """A resolved reference to one of the legacy functions."""

    kind: Kind
    qualified_name: str
    # True when the same spelling means something else on TF 2.x (``tf.nn.X`` is the v2
    # function there, and ``tf.nn.X_v2`` does not exist); False when it still names the v1
    # function (``tf.compat.v1.nn.X``, ``nn_ops.X``) or the semantics did not change (sparse).
    changes_on_tf2: bool
    # True when the spelling names ``tensorflow.nn`` (v2 on TF 2.x), so a call through it
    # can keep its callee when the v2 name is the same.
    via_public_nn: bool


def _strip_compat(parts: list[str]) -> tuple[str | None, list[str]]:
    """Drop leading ``compat.vN`` segments; return the last N (None when absent)."""
    version = None
    while len(parts) >= 2 and parts[0] == "compat" and parts[1] in ("v1", "v2"):
        version = parts[1]
        parts = parts[2:]
    return version, parts


def classify(qualified_name: str) -> Target | None:
    """Return the legacy function a dotted name denotes in TF 1.x code, or None."""
    parts = qualified_name.split(".")
    if len(parts) < 3 or parts[0] != "tensorflow":
        return None
    version, rest = _strip_compat(parts[1:])
    if version == "v2":
        return None  # already the v2 API, in TF 1.x as in 2.x
    if len(rest) == 2 and rest[0] == "nn":
        public = version is None
        name = rest[1]
        if name == DENSE:
            return Target(Kind.DENSE_V1, qualified_name, public, public)
        if name == DENSE_V2_HELPER:
            return Target(Kind.DENSE_V2_HELPER, qualified_name, public, public)
        if name == SPARSE:
            return Target(Kind.SPARSE_V1, qualified_name, False, public)
        return None
    if version is None and len(rest) == 4 and rest[:2] == ["python", "ops"]:
        if rest[2] not in ("nn_ops", "nn"):
            return None
        # Private modules keep the v1 functions under these names in every TF version;
        # ``nn_ops.softmax_cross_entropy_with_logits_v2`` is the v2 function in both.
        name = rest[3]
        if name == DENSE:
            return Target(Kind.DENSE_V1, qualified_name, False, False)
        if name == DENSE_V2_HELPER + "_helper":
            return Target(Kind.DENSE_V2_HELPER, qualified_name, False, False)
        if name == SPARSE:
            return Target(Kind.SPARSE_V1, qualified_name, False, False)
    return None


def v2_function_name(kind: Kind) -> str:
    """The TF 2.x ``tf.nn`` name with the semantics the migrated call needs."""
    return SPARSE if kind is Kind.SPARSE_V1 else DENSE
