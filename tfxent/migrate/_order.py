"""Guessing whether a positional call uses the 0.x ``(logits, labels)`` order.

TF 0.x declared ``softmax_cross_entropy_with_logits(logits, labels, dim=-1, name=None)``.
TF 1.0 to 2.11 rejected positional calls (the ``_sentinel`` guard), and TF >= 2.12 reads
them as ``(labels, logits)``. So a positional call in legacy code is either 0.x-era code
(whose order TF 2.12+ silently swaps) or code written for TF >= 2.12. The names of the
arguments are the only evidence; this module reads them, and the codemod refuses to guess
when they point to the 0.x order.
"""

from __future__ import annotations

import enum
import re

import libcst as cst

# Checked in this order: the first group that matches decides.
_LOGIT_STRONG = frozenset({"logit", "logits"})
_LABEL_STRONG = frozenset(
    {"label", "labels", "target", "targets", "true", "onehot", "gt", "truth", "soft", "probs"}
)
_LOGIT_WEAK = frozenset(
    {
        "pred", "preds", "prediction", "predictions", "output", "outputs", "out",
        "score", "scores", "yhat", "hat", "activation", "activations", "unscaled",
        "unnormalized", "energy", "energies", "z", "net",
    }
)  # fmt: skip
_LABEL_WEAK = frozenset({"y", "ys", "hot", "one", "classes", "answer", "answers"})

# Calls whose result is a distribution (labels) or a network output (logits).
_LABEL_CALLS = frozenset({"softmax", "one", "hot", "onehot", "stop", "gradient", "smooth"})
_LOGIT_CALLS = frozenset(
    {
        "matmul", "dense", "model", "net", "network", "linear", "fc", "conv", "conv1d",
        "conv2d", "layer", "layers", "predict", "forward", "logits", "classifier", "head",
        "xw", "einsum", "tensordot",
    }
)  # fmt: skip


class Role(enum.Enum):
    LABELS = "labels"
    LOGITS = "logits"
    UNKNOWN = "unknown"


def _tokens(identifier: str) -> set[str]:
    """``yPred_2`` -> {"y", "pred"}: split snake_case and camelCase, drop digits."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1_\2", identifier)
    return {t.lower() for t in re.split(r"[_\W\d]+", spaced) if t}


def _role_from_tokens(tokens: set[str]) -> Role:
    for words, role in (
        (_LOGIT_STRONG, Role.LOGITS),
        (_LABEL_STRONG, Role.LABELS),
        (_LOGIT_WEAK, Role.LOGITS),
        (_LABEL_WEAK, Role.LABELS),
    ):
        if tokens & words:
            return role
    return Role.UNKNOWN


def _callee_tokens(func: cst.BaseExpression) -> set[str]:
    if isinstance(func, cst.Name):
        return _tokens(func.value)
    if isinstance(func, cst.Attribute):
        return _tokens(func.attr.value)
    return set()


def guess_role(expr: cst.BaseExpression) -> Role:
    """What an argument expression looks like it holds: labels, logits, or unknown."""
    if isinstance(expr, cst.Name):
        return _role_from_tokens(_tokens(expr.value))
    if isinstance(expr, cst.Attribute):  # self.logits, batch.labels
        return _role_from_tokens(_tokens(expr.attr.value))
    if isinstance(expr, cst.Subscript):  # batch["labels"], logits[:, 0]
        index = expr.slice[0].slice if expr.slice else None
        value = getattr(index, "value", None)
        if isinstance(value, cst.SimpleString):
            role = _role_from_tokens(_tokens(value.evaluated_value or ""))
            if role is not Role.UNKNOWN:
                return role
        return guess_role(expr.value)
    if isinstance(expr, cst.Call):
        tokens = _callee_tokens(expr.func)
        if tokens & _LABEL_CALLS:
            return Role.LABELS
        if tokens & _LOGIT_CALLS:
            return Role.LOGITS
        role = _role_from_tokens(tokens)
        if role is Role.UNKNOWN and expr.args:
            # tf.cast(y, ...), tf.reshape(logits, ...), tf.nn.bias_add(tf.matmul(...), b):
            # a generic op carries the role of its first argument.
            return guess_role(expr.args[0].value)
        return role
    if isinstance(expr, cst.BinaryOperation):  # x @ w + b
        if isinstance(expr.operator, cst.MatrixMultiply):
            return Role.LOGITS
        left, right = guess_role(expr.left), guess_role(expr.right)
        return left if left is not Role.UNKNOWN else right
    return Role.UNKNOWN


class Order(enum.Enum):
    CONFIRMED = "confirmed"  # names read as (labels, logits): TF >= 2.12 order
    LEGACY = "legacy"  # names read as (logits, labels) somewhere: 0.x order
    UNKNOWN = "unknown"  # no evidence either way


def judge_order(mapped: dict[str, cst.BaseExpression]) -> Order:
    """Judge positional arguments mapped to parameter names in the TF >= 2.12 order."""
    labels, logits = mapped.get("labels"), mapped.get("logits")
    labels_role = guess_role(labels) if labels is not None else None
    logits_role = guess_role(logits) if logits is not None else None
    if labels_role is Role.LOGITS or logits_role is Role.LABELS:
        return Order.LEGACY
    known = [r for r in (labels_role, logits_role) if r is not None]
    if known and all(r is not Role.UNKNOWN for r in known):
        return Order.CONFIRMED
    return Order.UNKNOWN
