"""The audit's findings and its report: the finding codes, one finding per call site and
code, and the report as data, as text, and printed."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections import Counter

CODES = {  # code -> risk, in report order
    "v1-labels-trainable": "risk",
    "sparse-labels-out-of-range": "risk",
    "labels-not-normalized": "warning",
    "labels-zero-rows": "warning",
    "labels-broadcast": "warning",
}


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
        return f"{display_path(self.path)}:{self.line}"

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


def display_path(path: str) -> str:
    """`path` relative to the working directory when it lies below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def ordered(findings) -> list[Finding]:
    """Findings by file, line and the order of CODES."""
    order = list(CODES)
    return sorted(findings, key=lambda f: (f.path, f.line, order.index(f.code)))


def counts(findings: list[Finding]) -> dict[str, dict[str, int]]:
    """Per finding code: how many call sites, and how many calls at those sites."""
    out = {code: {"sites": 0, "occurrences": 0} for code in CODES}
    for f in findings:
        out[f.code]["sites"] += 1
        out[f.code]["occurrences"] += f.occurrences
    return out


def as_dict(
    findings: list[Finding],
    calls: Counter,
    unchecked: dict[tuple[str, int, str], str],
    errors: list[str],
) -> dict[str, object]:
    """The report as data (its JSON form)."""
    totals = {"total": sum(calls.values()), **{m: 0 for m in ("eager", "traced")}}
    totals.update(calls)
    return {
        "tool": "tfxent.audit",
        "version": 1,
        "calls": totals,
        "counts": counts(findings),
        "findings": [f.to_json() for f in findings],
        "unchecked": [
            {"path": p, "line": n, "location": f"{display_path(p)}:{n}", "reason": r}
            for (p, n, _), r in sorted(unchecked.items())
        ],
        "errors": list(errors),
    }


def render(data: dict, findings: list[Finding], as_json: bool) -> str:
    """The report as JSON or as text."""
    if as_json:
        return json.dumps(data, indent=2, sort_keys=False)
    calls = data["calls"]
    sites = {(f.path, f.line) for f in findings}
    lines = [
        f"tfxent audit: {len(findings)} finding{'s' * (len(findings) != 1)} at "
        f"{len(sites)} call site{'s' * (len(sites) != 1)}; {calls['total']} calls observed ("
        + ", ".join(f"{n} {m}" for m, n in calls.items() if m != "total")
        + ")"
    ]
    lines += [f"  {f.to_text()}" for f in findings] or ["  no findings"]
    summary = [f"{c} {n['sites']} ({n['occurrences']} calls)" for c, n in data["counts"].items()]
    lines.append("  counts (sites): " + ", ".join(summary))
    for item in data["unchecked"]:
        lines.append(f"  not checked: {item['location']}: {item['reason']}")
    lines += [f"  audit error (ignored): {e}" for e in data["errors"]]
    return "\n".join(lines) + "\n"


def write(text: str, target) -> None:
    """Print to a text stream, a path, or (None) sys.stderr at print time."""
    if isinstance(target, str | os.PathLike):
        with open(target, "w", encoding="utf-8") as stream:
            stream.write(text)
    else:
        (target or sys.stderr).write(text)
        (target or sys.stderr).flush()
