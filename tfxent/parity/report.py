"""`python -m tfxent check`'s report: the signatures, the classification of comparisons into
compat_matrix.md's columns, how close the values are, and the printed text.

`build_report` runs the planned units (check.py) and returns the report as data (what
`--json` writes and tools/matrix.py reads); `render` prints it.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import platform
import time
from collections import Counter
from dataclasses import asdict

from tfxent.parity import check
from tfxent.parity.check import Result

# compat_matrix.md columns fed by this check, in order: (key, heading). "bit_identical"
# measures; the others pass or fail.
COLUMNS = (
    ("signatures", "signatures"),
    ("values", "values"),
    ("gradients_1", "gradients 1st"),
    ("gradients_2", "gradients 2nd"),
    ("errors", "errors"),
    ("determinism", "determinism"),
    ("xla", "XLA"),
    ("v1_graph", "v1 graph"),
    ("bit_identical", "bit-identical"),
)
_SURFACES = ("nn.dense", "v1.dense_v2", "v1.dense", "nn.sparse", "v1.sparse")  # report order
CLOSENESS = ("bit-identical", "within tolerance", "differing", "no values")
# Top-level TF 1.x contract (the intentional difference `top-level-sentinel-guard`,
# tfxent/parity/differences.py): pinned literally.
_TF1_SIGNATURES = {
    "softmax_cross_entropy_with_logits": (
        "(_sentinel=None, labels=None, logits=None, dim=-1, name=None, axis=None)"
    ),
    "softmax_cross_entropy_with_logits_v2": "(labels, logits, axis=None, name=None, dim=None)",
    "sparse_softmax_cross_entropy_with_logits": (
        "(_sentinel=None, labels=None, logits=None, name=None)"
    ),
}


def compare_signatures() -> list[dict]:
    """tfxent.nn / tfxent.compat.v1.nn against tf.nn / tf.compat.v1.nn (names, kinds,
    defaults and annotations), and the pinned top-level TF 1.x contract."""
    import tensorflow as tf

    import tfxent

    rows = []
    pairs = (
        ("tfxent.nn", tfxent.nn, "tf.nn", tf.nn),
        ("tfxent.compat.v1.nn", tfxent.compat.v1.nn, "tf.compat.v1.nn", tf.compat.v1.nn),
    )
    for ours_name, ours_mod, theirs_name, theirs_mod in pairs:
        for name in sorted(ours_mod.__all__):
            ours = str(inspect.signature(getattr(ours_mod, name)))
            theirs_fn = getattr(theirs_mod, name, None)
            theirs = str(inspect.signature(theirs_fn)) if theirs_fn is not None else None
            problems = [] if ours == theirs else [f"tfxent {ours} vs TF {theirs}"]
            rows.append(
                {"function": f"{ours_name}.{name}", "reference": f"{theirs_name}.{name}",
                 "signature": ours, "problems": problems}
            )  # fmt: skip
    for name, expected in sorted(_TF1_SIGNATURES.items()):
        ours = str(inspect.signature(getattr(tfxent, name)))
        problems = [] if ours == expected else [f"tfxent {ours} vs the TF 1.x contract {expected}"]
        rows.append(
            {"function": f"tfxent.{name}", "reference": "TF 1.x contract (intentional)",
             "signature": ours, "problems": problems}
        )  # fmt: skip
    return rows


def _aspect(problem: str) -> str:
    if problem.startswith("error:"):
        return "errors"
    if problem.startswith(("gradient error", "grad_")):
        return "gradients_1"
    if problem.startswith("hvp_"):
        return "gradients_2"
    return "values"


def columns(results: list[Result], signatures: list[dict]) -> dict[str, dict]:
    """Per pass/fail compat-matrix column: comparisons checked and failed (None: not run).

    Op determinism, XLA and Session comparisons count in their own column. Eager and
    tf.function comparisons with determinism off count under *errors* when the call raises,
    else under *values* and the gradient orders compared; a problem counts under the aspect
    it concerns.
    """
    table = {key: {"checked": 0, "failed": 0} for key, _ in COLUMNS if key != "bit_identical"}
    table["signatures"] = {
        "checked": len(signatures),
        "failed": sum(1 for s in signatures if s["problems"]),
    }
    for r in results:
        if r.deterministic:
            checked, failed = {"determinism"}, {"determinism"} if r.problems else set()
        elif r.mode == "xla":
            checked, failed = {"xla"}, {"xla"} if r.problems else set()
        elif r.mode == "session":
            checked, failed = {"v1_graph"}, {"v1_graph"} if r.problems else set()
        else:
            failed = {_aspect(p) for p in r.problems}
            if r.raised:
                checked = {"errors"}
            else:
                checked = {"values"}
                if r.grad_orders >= 1:
                    checked.add("gradients_1")
                if r.grad_orders >= 2:
                    checked.add("gradients_2")
            checked |= failed
        for key in checked:
            table[key]["checked"] += 1
        for key in failed:
            table[key]["failed"] += 1
    for cell_counts in table.values():
        if cell_counts["checked"] == 0:
            cell_counts["checked"] = cell_counts["failed"] = None
    return table


def cell(column: dict) -> str:
    """A compat-matrix cell: ✓, ✗ with the number of failing comparisons, or — (not run)."""
    if column.get("checked") is None:
        return "—"
    return "✓" if not column["failed"] else f"✗ {column['failed']}"


def closeness(results: list[Result]) -> dict:
    """How close tfxent's values are to TF's: comparisons per kind (CLOSENESS), how many
    show a known difference, and the largest ulp distance among those within tolerance (of
    any result: a gradient element near 0 can be many ulp apart and still absolutely close)."""
    counts = Counter(r.closeness for r in results)
    within = [r.max_ulp for r in results if r.closeness == "within tolerance"]
    return {
        **{kind: counts.get(kind, 0) for kind in CLOSENESS},
        "known": sum(1 for r in results if r.known is not None),
        "max_ulp": max((u for u in within if u is not None), default=None),
    }


def identity_cell(summary: dict | None) -> str:
    """The bit-identical column: bit-identical comparisons of those with values to compare."""
    if not summary:
        return "—"
    with_values = sum(summary[kind] for kind in CLOSENESS if kind != "no values")
    return f"{summary['bit-identical']}/{with_values}" if with_values else "—"


def op_build_seconds() -> float | None:
    """Compile time of the cached op library, from its build manifest (None if not built)."""
    try:
        from tfxent import _build

        manifest = _build.plan().manifest
        return float(json.loads(manifest.read_text())["seconds"])
    except Exception:  # noqa: BLE001 - no compiler, no cache: the column says "—"
        return None


def environment() -> dict:
    import numpy as np
    import tensorflow as tf

    import tfxent
    from tfxent import _backend

    try:
        backend = _backend.choose(tf.zeros([1, 1])).backend
    except Exception as err:  # noqa: BLE001
        backend = f"unavailable ({type(err).__name__})"
    return {
        "tfxent": tfxent.__version__,
        "tensorflow": tf.__version__,
        "tensorflow_git": getattr(tf, "__git_version__", ""),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "backend": backend,
        "op_build_seconds": op_build_seconds(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
    }


def build_report(args: argparse.Namespace, jobs: int) -> dict:
    """Run the comparisons `args` select in `jobs` processes and return the report."""
    from tfxent import _versions
    from tfxent.parity import cases

    units = check.plan_units(args, cases.catalogue())
    started = time.perf_counter()
    env = environment()
    check.log(
        f"TF {env['tensorflow']}, backend {env['backend']}: "
        f"{sum(len(u.case_ids) for u in units)} comparisons in {jobs} process(es)"
    )
    signatures = compare_signatures()
    results = check.execute(units, jobs, verbose=args.verbose)
    per_surface: dict[str, dict[str, list[int]]] = {}
    timings: dict[str, float] = {}
    for r in results:
        key = f"{r.mode}/{'on' if r.deterministic else 'off'}"
        slot = per_surface.setdefault(r.api, {}).setdefault(key, [0, 0])
        slot[0] += 1
        slot[1] += bool(r.problems)
        timings[key] = round(timings.get(key, 0.0) + r.seconds, 1)
    table = columns(results, signatures)
    identity = closeness(results)
    failures = [asdict(r) for r in results if r.problems]
    slowest = sorted(results, key=lambda r: -r.seconds)[:10]
    return {
        **env,
        "scope": "full" if args.full else "quick" if args.quick else "default",
        "modes": check.parse_modes(args.modes),
        "determinism": args.determinism,
        "case_filter": args.cases,
        "comparisons": len(results),
        "cases": len({r.case for r in results}),
        "seconds": round(time.perf_counter() - started, 1),
        "columns": table,
        "closeness": identity,
        "row": {
            **{key: cell(table[key]) for key, _ in COLUMNS if key != "bit_identical"},
            "bit_identical": identity_cell(identity),
        },
        "per_surface": {api: per_surface[api] for api in _SURFACES if api in per_surface},
        "signatures": signatures,
        "failures": failures,
        "comparison_closeness": [
            [r.case, r.mode, r.deterministic, r.closeness, r.max_ulp] for r in results
        ],
        "substituted": sorted({f"{r.case} [{r.mode}]" for r in results if r.substituted}, key=str),
        "version_behaviours": dict(_versions.current()),
        "timings": timings,
        "slowest": [[r.case, r.mode, r.deterministic, r.seconds] for r in slowest],
        "ok": not failures and not any(s["problems"] for s in signatures),
    }


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def row_headings() -> list[str]:
    return ["TF", *[heading for _, heading in COLUMNS]]


def _closeness_lines(report: dict) -> list[str]:
    summary = report["closeness"]
    line = (
        f"closeness to TF: {summary['bit-identical']} bit-identical, "
        f"{summary['within tolerance']} within tolerance"
        + (f" (at most {summary['max_ulp']} ulp)" if summary["max_ulp"] is not None else "")
        + f", {summary['differing']} differing ({summary['known']} of them known differences),"
        f" {summary['no values']} without values (both raised)"
    )
    farthest = sorted(
        (c for c in report["comparison_closeness"] if c[3] == "within tolerance"),
        key=lambda c: -(c[4] or 0),
    )[:5]
    lines = [line]
    if farthest:
        lines.append(
            "  farthest: "
            + ", ".join(f"{c[0]} [{c[1]}{', det' if c[2] else ''}] {c[4]} ulp" for c in farthest)
        )
    return lines


def render(report: dict) -> str:
    lines = [
        f"tfxent {report['tfxent']} parity check against TensorFlow {report['tensorflow']} "
        f"(Python {report['python']}, NumPy {report['numpy']}, backend {report['backend']})",
        f"scope: {report['scope']}, modes {','.join(report['modes'])}, determinism "
        f"{report['determinism']}: {report['comparisons']} comparisons of {report['cases']} "
        f"cases in {report['seconds']} s",
        "",
    ]
    mode_keys = [f"{m}/{d}" for m in report["modes"] for d in ("off", "on")]
    mode_keys = [k for k in mode_keys if any(k in v for v in report["per_surface"].values())]
    width = max([len(a) for a in report["per_surface"]] + [len("surface")])
    lines.append(f"{'surface':<{width}}  " + "  ".join(f"{k:>12}" for k in mode_keys))
    for api, slots in report["per_surface"].items():
        cells = []
        for key in mode_keys:
            run, failed = slots.get(key, [0, 0])
            cells.append(f"{run - failed}/{run} ok" if run else "-")
        lines.append(f"{api:<{width}}  " + "  ".join(f"{c:>12}" for c in cells))
    lines.append("")
    bad_signatures = [s for s in report["signatures"] if s["problems"]]
    lines.append(
        f"signatures: {len(report['signatures']) - len(bad_signatures)}/"
        f"{len(report['signatures'])} identical"
    )
    for s in bad_signatures:
        lines.append(f"  {s['function']}: {'; '.join(s['problems'])}")
    lines += _closeness_lines(report)
    if report["substituted"]:
        lines.append(
            "compared with other TF versions' zeros (TF "
            f"{report['tensorflow']} segfaults there): {', '.join(report['substituted'])}"
        )
    if report["failures"]:
        lines.append(f"\n{len(report['failures'])} comparisons differ:")
        for f in report["failures"]:
            det = "on" if f["deterministic"] else "off"
            lines.append(f"  {f['case']} [{f['mode']}, determinism {det}]")
            lines.extend(f"    - {p}" for p in f["problems"])
    else:
        lines.append("all comparisons agree.")
    counts = Counter("✓" if not c["failed"] else "✗" for c in report["columns"].values() if c)
    lines += [
        "",
        "compat_matrix.md row:",
        markdown_row(row_headings()),
        markdown_row(["---"] * len(row_headings())),
        markdown_row([report["tensorflow"], *report["row"].values()]),
        f"tfxent {report['tfxent']} · Python {report['python']} · op build "
        + (
            f"{report['op_build_seconds']:.0f} s"
            if report["op_build_seconds"] is not None
            else "— (no cached build)"
        )
        + f" · {report['date']}",
        "",
        "parity: OK" if report["ok"] else f"parity: DIFFERENCES ({counts['✗']} column(s) ✗)",
    ]
    return "\n".join(lines)
