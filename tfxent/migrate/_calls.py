"""Rewriting the argument list of one legacy cross-entropy call.

Pure functions over libcst nodes: the codemod supplies the metadata-backed predicates
(``is_stopped``) and builders (``stop``), so the rules here can be read in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import libcst as cst

from tfxent.migrate._names import POSITIONAL_PARAMS, TF0_POSITIONAL_PARAMS, Kind
from tfxent.migrate._order import Order, judge_order


@dataclasses.dataclass
class ArgPlan:
    """What to do with a call's arguments."""

    args: list[cst.Arg] | None  # None: leave the call as it is
    changes: list[str] = dataclasses.field(default_factory=list)  # for the report
    # (code, message) of the one thing a human must check; with args None the call is
    # not rewritten, otherwise it is rewritten and the note says what was assumed.
    problem: tuple[str, str] | None = None


def _is_none(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "None"


def _keyword(arg: cst.Arg, name: str) -> cst.Arg:
    """Turn a positional argument into ``name=value``, keeping its comma and spacing."""
    return arg.with_changes(
        keyword=cst.Name(name),
        equal=cst.AssignEqual(
            whitespace_before=cst.SimpleWhitespace(""),
            whitespace_after=cst.SimpleWhitespace(""),
        ),
    )


def _stop(problem_code: str, message: str) -> ArgPlan:
    return ArgPlan(None, problem=(problem_code, message))


def plan_args(
    kind: Kind,
    original: Sequence[cst.Arg],
    updated: Sequence[cst.Arg],
    *,
    is_stopped: Callable[[cst.BaseExpression], bool],
    stop: Callable[[cst.BaseExpression], cst.BaseExpression],
    tf0_order: bool = False,
) -> ArgPlan:
    """Plan the v2 argument list for a call of the legacy function ``kind``.

    ``original`` carries the metadata (scope, qualified names); ``updated`` holds the same
    arguments after the transformer has visited them, and is what the new list is made of.
    ``tf0_order``: the user says positional calls are TF 0.x's (logits, labels).
    """
    if any(a.star for a in original):
        return _stop(
            "star-args",
            "called with *args/**kwargs: the arguments cannot be checked or rewritten",
        )
    tf0_order = tf0_order and kind in TF0_POSITIONAL_PARAMS
    params = TF0_POSITIONAL_PARAMS[kind] if tf0_order else POSITIONAL_PARAMS[kind]
    positional = [i for i, a in enumerate(original) if a.keyword is None]
    if len(positional) > len(params):
        return _stop("too-many-arguments", f"more than {len(params)} positional arguments")
    by_name: dict[str, int] = {params[j]: i for j, i in enumerate(positional)}
    changes: list[str] = []
    dropped: set[int] = set()
    problem: tuple[str, str] | None = None

    for i, arg in enumerate(original):
        if arg.keyword is None:
            continue
        name = arg.keyword.value
        if name == "_sentinel" and kind is not Kind.DENSE_V2_HELPER:
            if not _is_none(arg.value):
                return _stop("sentinel-value", "_sentinel= is not None: TF 1.x raised here")
            dropped.add(i)  # TF >= 2.12 has no _sentinel and raises TypeError on it
            changes.append("_sentinel removed")
            continue
        if name not in params:
            return _stop("unknown-argument", f"{name}= is not an argument of this function")
        if name in by_name:
            hint = "" if tf0_order else ", or use --tf0-order if the code was written for TF 0.x"
            return _stop(
                "positional-legacy-order",
                f"{name}= is also given positionally: a TF 0.x (logits, labels) call? "
                f"Not rewritten: pass labels= and logits= by keyword{hint}",
            )
        by_name[name] = i

    if "labels" not in by_name or "logits" not in by_name:
        return _stop("missing-argument", "labels= or logits= missing: TF 1.x raised here")

    # TF 1.0-2.11 rejected positional calls of the v1 functions (the _sentinel guard), so a
    # positional call is 0.x code (logits, labels) or TF >= 2.12 code (labels, logits).
    keywordize = set(positional)
    if positional and kind is not Kind.DENSE_V2_HELPER:
        mapped = {p: original[by_name[p]].value for p in ("labels", "logits")}
        order = judge_order({p: v for p, v in mapped.items() if by_name[p] in keywordize})
        if order is Order.LEGACY and tf0_order:
            return _stop(
                "positional-order-contradicted",
                "positional arguments look like the TF >= 2.12 order (labels, logits), not "
                "the TF 0.x order --tf0-order states. Not rewritten: pass labels= and logits= "
                "by keyword",
            )
        if order is Order.LEGACY:
            return _stop(
                "positional-legacy-order",
                "positional arguments look like the TF 0.x order (logits, labels), which "
                "TF >= 2.12 reads as (labels, logits). Not rewritten: pass labels= and "
                "logits= by keyword, or use --tf0-order if the code was written for TF 0.x",
            )
        if order is Order.UNKNOWN:
            assumed = "TF >= 2.12 order (labels, logits)"
            if tf0_order:
                assumed = "TF 0.x order (logits, labels), as --tf0-order states"
            problem = (
                "positional-order-assumed",
                f"positional arguments read in the {assumed}; their names do not confirm it "
                "(TF 0.x used (logits, labels), TF >= 2.12 (labels, logits)): check",
            )
        changes.append("positional arguments turned into keywords")
    elif kind is Kind.DENSE_V2_HELPER and len(positional) < len(params):
        keywordize = set()  # (labels, logits, axis, name) has the same order in the v2 API
    elif positional:
        changes.append("positional arguments turned into keywords")

    renamed: set[int] = set()
    if kind is not Kind.SPARSE_V1:
        dim, axis = by_name.get("dim"), by_name.get("axis")
        if dim is not None and axis is not None:
            if _is_none(original[dim].value):
                dropped.add(dim)
                changes.append("dim=None removed")
            elif _is_none(original[axis].value):
                dropped.add(axis)
                renamed.add(dim)
                changes.append("dim -> axis")
            else:
                return _stop("dim-and-axis", "both dim= and axis= given: TF 1.x raised here")
        elif dim is not None:
            renamed.add(dim)
            changes.append("dim -> axis")
        elif axis is not None and kind is Kind.DENSE_V1 and not _is_none(original[axis].value):
            # The v1 function defaults dim to -1, so axis= alone raised ValueError ("Cannot
            # specify both 'dim' and 'axis'") in every TF version; the intent is plain.
            problem = (
                "axis-without-dim",
                "axis= without dim=None raised ValueError in TF 1.x; rewritten to use that axis",
            )

    wrap = kind is Kind.DENSE_V1 and not is_stopped(original[by_name["labels"]].value)
    if wrap:
        changes.insert(0, "labels wrapped in stop_gradient (v1 stopped their gradient)")

    new_args: list[cst.Arg] = []
    for i, arg in enumerate(updated):
        if i in dropped:
            continue
        if i in keywordize:
            arg = _keyword(arg, params[positional.index(i)])
        if i in renamed:
            arg = arg.with_changes(keyword=cst.Name("axis"))
        if wrap and i == by_name["labels"]:
            arg = arg.with_changes(value=stop(arg.value))
        new_args.append(arg)
    if new_args and len(updated) - 1 in dropped:
        # The last argument went away: its comma (trailing or none) moves to the new last.
        new_args[-1] = new_args[-1].with_changes(comma=updated[-1].comma)
    return ArgPlan(new_args, changes, problem)
