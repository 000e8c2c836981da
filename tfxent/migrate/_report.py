"""Findings, per-file results, and the text / JSON report built from them."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections import Counter
from collections.abc import Iterable


class Risk(enum.Enum):
    """How much a finding needs a human, most urgent first."""

    RISK = "risk"  # semantics change possible: check this site by hand
    SAFE = "safe"  # rewritten (or to be rewritten) with identical semantics
    INFO = "info"  # nothing changes on TF 2; noted for completeness

    @property
    def label(self) -> str:
        return {
            Risk.RISK: "RISK (semantics change possible)",
            Risk.SAFE: "SAFE (safe rewrite)",
            Risk.INFO: "INFO",
        }[self]


_ORDER = {Risk.RISK: 0, Risk.SAFE: 1, Risk.INFO: 2}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One site the codemod rewrote or wants a human to look at."""

    path: str
    line: int  # 1-based; within the cell for notebooks
    column: int  # 1-based
    risk: Risk
    code: str  # stable slug, e.g. "v1-dense-call", "stored-reference"
    message: str
    rewritten: bool = False
    cell: int | None = None  # 1-based index in the notebook's "cells" list

    @property
    def location(self) -> str:
        where = f"{self.path}#cell{self.cell}" if self.cell is not None else self.path
        return f"{where}:{self.line}:{self.column}"

    def to_json(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["risk"] = self.risk.value
        data["location"] = self.location
        return data

    def to_text(self) -> str:
        done = " [rewritten]" if self.rewritten else ""
        return f"{self.location}: {self.risk.label}: {self.code}{done}: {self.message}"


@dataclasses.dataclass
class MigrationResult:
    """The outcome for one source file or notebook."""

    path: str
    original: str
    code: str  # the migrated text (== original when nothing changed or on error)
    findings: list[Finding]
    error: str | None = None  # set when the file was left untouched because it failed
    skipped: bool = False  # the text check showed it has nothing to migrate: not parsed

    @property
    def changed(self) -> bool:
        return self.error is None and self.code != self.original

    @property
    def failed(self) -> bool:
        """Left untouched, or (a notebook) some cells could not be parsed."""
        return self.error is not None or any(f.code == "parse-error" for f in self.findings)

    @property
    def risky(self) -> list[Finding]:
        return [f for f in self.findings if f.risk is Risk.RISK]


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.path, f.cell or 0, f.line, f.column, f.code))


def summarize(results: list[MigrationResult]) -> dict[str, int]:
    counts = Counter(f.risk.value for r in results for f in r.findings)
    return {
        "files": len(results),
        "changed": sum(r.changed for r in results),
        "failed": sum(r.failed for r in results),
        "risk": counts.get("risk", 0),
        "safe": counts.get("safe", 0),
        "info": counts.get("info", 0),
        "rewritten": sum(f.rewritten for r in results for f in r.findings),
    }


def summary_line(counts: dict[str, int], *, written: bool) -> str:
    verb = "rewritten" if written else "would be rewritten"
    return (
        f"tfxent migrate: {counts['files']} file(s) scanned, {counts['changed']} {verb}, "
        f"{counts['failed']} failed; findings: {counts['risk']} risk, {counts['safe']} safe, "
        f"{counts['info']} info ({counts['rewritten']} sites rewritten)"
    )


def to_text(results: list[MigrationResult], *, written: bool) -> str:
    """Findings ranked by risk, then a summary line."""
    findings = sort_findings(f for r in results for f in r.findings)
    findings.sort(key=lambda f: _ORDER[f.risk])  # stable: keeps file:line order per level
    lines = [f.to_text() for f in findings]
    lines.append(summary_line(summarize(results), written=written))
    return "\n".join(lines) + "\n"


def to_json(results: list[MigrationResult], *, written: bool) -> str:
    payload = {
        "tool": "tfxent migrate",
        "written": written,
        "summary": summarize(results),
        "files": [
            {
                "path": r.path,
                "changed": r.changed,
                "error": r.error,
                "findings": [f.to_json() for f in sort_findings(r.findings)],
            }
            for r in results
        ],
    }
    return json.dumps(payload, indent=2) + "\n"
