"""compat_matrix.md as a pure function of the stored per-version results.

tools/matrix.py runs the versions and stores one JSON result per version in
compat/results/; `render` turns those results, the registry of known differences
(tfxent/parity/differences.py) and the version table (tfxent/_versions.py) into the file,
so re-rendering the same results gives the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

from tfxent.parity import peers
from tfxent.parity.report import COLUMNS, row_headings

ROOT = Path(__file__).resolve().parents[1]
# Version label -> tox environment, in the matrix's row order.
VERSIONS = {f"2.{minor}": f"tf2.{minor}" for minor in range(12, 22)}
VERSIONS["nightly"] = "tf-nightly"
# TF's and Keras's own tests, run plain and patched per version (tfxent/parity/peers.py).
PEERS = ROOT / "compat" / "peers"


def _clean(text: str, limit: int | None = 220) -> str:
    """A problem line without machine-specific paths, addresses or runs of whitespace."""
    text = re.sub(r"[^\s'\"(]*/site-packages/", "<site-packages>/", text)
    text = text.replace(str(ROOT) + os.sep, "")
    text = re.sub(r"0x[0-9a-f]{6,}", "0x…", text)
    text = re.sub(r"\s+", " ", text).replace("|", "\\|")
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + "…"


def _tests_cells(tests: dict | None) -> list[str]:
    if not tests:
        return ["—", "—", "—"]
    if tests.get("passed") is None:
        return ["—", "crashed", "—"]
    return [str(tests["passed"]), str(tests["failed"]), str(tests["skipped"])]


def peers_cell(label: str) -> str:
    """Peer tests passed plain / patched on this version, or "not run"."""
    path = PEERS / f"{VERSIONS[label]}.json"
    if not path.is_file():
        return "not run"
    return peers.render_figure(json.loads(path.read_text(encoding="utf-8")))


def row(label: str, result: dict | None) -> list[str]:
    """One version's cells; results that predate a column show "—" in it."""
    n_columns = len(COLUMNS)
    if result is None:
        cells = ["not run"] + ["—"] * (n_columns - 1)
        return [label, *cells, "—", "—", "—", peers_cell(label), "—", "—", "—"]
    check = result.get("check") or {}
    if "row" in check:
        cells = [check["row"].get(key, "—") for key, _ in COLUMNS]
    else:
        cells = ["crashed"] + ["—"] * (n_columns - 1)
    build = check.get("op_build_seconds")
    version = check.get("tensorflow") or label
    return [
        version,
        *cells,
        *_tests_cells(result.get("tests")),
        peers_cell(label),
        f"{build:.0f} s" if isinstance(build, int | float) else "—",
        check.get("python", "—"),
        check.get("date", "—"),
    ]


def green(result: dict | None) -> bool:
    if not result:
        return False
    tests, report = result.get("tests") or {}, result.get("check") or {}
    return bool(report.get("ok")) and tests.get("failed") == 0 and not tests.get("crash")


def _table(headings: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    out += ["| " + " | ".join(cells) + " |" for cells in rows]
    return out


def intentional_rows() -> list[list[str]]:
    """compat_matrix.md's intentional differences: the registry, in its order."""
    from tfxent.parity import differences

    return [
        [_clean(d.title, None), _clean(d.reason, None), f"`{d.pinned_by}`"]
        for d in differences.DIFFERENCES
    ]


def following_rows() -> list[list[str]]:
    """The version table's rows that tfxent follows (all but those a difference replaces)."""
    from tfxent import _versions
    from tfxent.parity import differences

    departed = differences.departed_versions()
    return [
        [f"`{b.key}`: {b.summary}", b.versions, _clean(b.tf_does, None),
         _clean(b.tfxent_does, None), b.pinned_by]
        for b in _versions.BEHAVIOURS
        if b.key not in departed
    ]  # fmt: skip


def failure_lines(label: str, result: dict | None) -> list[str]:
    if result is None:
        return []
    lines = []
    tests = result.get("tests") or {}
    if tests.get("pytest_args"):
        words = shlex.split(tests["pytest_args"])
        deselected = words.count("--deselect")
        others = [w for i, w in enumerate(words) if w != "--deselect" and (
            i == 0 or words[i - 1] != "--deselect")]  # fmt: skip
        lines.append(
            "- test suite run with extra pytest arguments"
            + (f": {deselected} tests deselected" if deselected else "")
            + (f"; `{_clean(shlex.join(others))}`" if others else "")
        )
    if tests.get("crash"):
        lines.append(f"- tests crashed: {_clean(tests['crash'])}")
    for test_id in tests.get("failing", []):
        lines.append(f"- test failed: `{_clean(test_id)}`")
    report = result.get("check") or {}
    if report.get("crash"):
        lines.append(f"- check crashed: {_clean(report['crash'])}")
    for s in report.get("signatures", []):
        for problem in s["problems"]:
            lines.append(f"- signature `{s['function']}`: {_clean(problem)}")
    for failure in report.get("failures", []):
        det = "determinism on" if failure["deterministic"] else "determinism off"
        first = _clean(failure["problems"][0]) if failure["problems"] else ""
        more = len(failure["problems"]) - 1
        lines.append(
            f"- check `{failure['case']}` [{failure['mode']}, {det}]: {first}"
            + (f" (+{more} more)" if more > 0 else "")
        )
    if not lines:
        return []
    version = report.get("tensorflow") or label
    return [f"### TF {version}", "", *lines, ""]


def render(results: dict[str, dict | None]) -> str:
    headings = [
        *row_headings(),
        "tests passed",
        "failed",
        "skipped",
        "peer tests plain / patched",
        "op build",
        "Python",
        "date",
    ]
    rows = [row(label, results.get(label)) for label in VERSIONS]
    ran = [label for label in VERSIONS if results.get(label)]
    all_green = ran and all(green(results[label]) for label in ran)
    lines = [
        "# tfxent compatibility matrix",
        "",
        "<!-- Generated by `python -m tools.matrix`; do not edit by hand. -->",
        "",
        "One row per TensorFlow version, from actual runs: `tox -e <env>` builds tfxent's op "
        "against that TF and runs the whole test suite (tests passed/failed/skipped), and "
        "`python -m tfxent check` in the same environment compares tfxent with that TF's "
        "`tf.nn` (the other columns; `python -m tfxent check` prints the same row for the "
        "TF you have). Regenerate with `python -m tools.matrix` "
        "(`--versions 2.16` re-runs one row, `--render-only` rewrites this file from the "
        "stored results in `compat/results/`).",
        "",
        "Cells: ✓ every comparison agrees (or shows exactly its documented difference); "
        "✗ n: n comparisons differ; — not run. *values*, *gradients* and *errors* are eager "
        "and `tf.function` with op determinism off; *determinism* is every mode with it on; "
        "*XLA* is `jit_compile=True`; *v1 graph* a `tf.compat.v1.Session` with dynamic "
        "placeholders. *bit-identical* measures rather than passes or fails: of the "
        "comparisons that returned values, how many are bit-identical to TF's (the others "
        "agree within the parity tolerance); — where the stored results predate it. *peer tests* "
        "are TF's and Keras's own test files from that version's wheels, run once plain and "
        "once under `tfxent.patch()` (docs/peers.md): tests passed each way, from "
        "`compat/peers/`; not run where that version has not been run yet.",
        "",
        *_table(headings, rows),
        "",
        (
            "Every row that ran is green."
            if all_green
            else "Rows that are not green are explained under *Failures and notes* below."
        ),
        "",
        "## Intentional differences",
        "",
        "Where tfxent does not, or deliberately does not, reproduce the installed TF, each with "
        "its reason and the test that pins it (a pinned difference that disappears fails its "
        "test). The list is `tfxent/parity/differences.py`, which the parity runner and the "
        "fuzz tests read too.",
        "",
        *_table(["difference", "reason", "pinned by"], intentional_rows()),
        "",
        "## Differences between TF versions that tfxent follows",
        "",
        "From `tfxent/_versions.py`, the one table of version-dependent behaviour "
        "(docs/tf_behaviour.md#version-differences): "
        "tfxent reproduces whichever of these the installed TF has.",
        "",
        *_table(["behaviour", "versions", "TensorFlow", "tfxent", "pinned by"], following_rows()),
        "",
        "## Failures and notes",
        "",
    ]
    failures = [line for label in VERSIONS for line in failure_lines(label, results.get(label))]
    lines += failures or ["None in the runs above.", ""]
    return "\n".join(lines).rstrip() + "\n"
