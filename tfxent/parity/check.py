"""`python -m tfxent check`: the parity catalogue against the installed tf.nn, as a report.

Runs every catalogue case (cases.py) through the side-by-side runner (runner.py) in each
execution mode with op determinism off and on, compares the signatures of the public
functions, and prints the failures (if any) and this TF's row of compat_matrix.md.
`--json FILE` writes the same as data; `tfxent.parity.matrix` reads it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import inspect
import json
import multiprocessing
import os
import platform
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass

DESCRIPTION = """\
Run tfxent's parity catalogue against the installed TensorFlow: every case calls tfxent and
tf.nn side by side in eager, tf.function, a v1 Session and XLA, with op determinism off and
on, and compares values, first- and second-order gradients, dtypes, shapes and errors. The
signatures of tfxent.nn and tfxent.compat.v1.nn are compared with TF's.

The default run covers the whole catalogue in eager and Session mode and a representative
subset (--quick's: a few cases per behaviour on tf.nn's two functions and compat.v1's dense
one) in tf.function and XLA, whose tracing and compilation dominate the time (~5 minutes on
2 cores); --full runs everything everywhere (~20 minutes), --quick the subset everywhere.

Prints a report per surface and mode, every difference with its problems, and this TF's
row of compat_matrix.md. Exit status: 0 parity, 1 differences, 2 usage error.
"""

MODES = ("eager", "function", "session", "xla")
# Surfaces the subset runs on: the compat.v1 `_v2` and sparse functions share the v2
# surfaces' core and differ only in argument handling, which eager and Session cover in full.
PRIMARY_SURFACES = ("nn.dense", "v1.dense", "nn.sparse")
# Modes whose per-case cost is dominated by tracing/compiling: subset by default.
_SLOW_MODES = ("function", "xla")
_SURFACES = ("nn.dense", "v1.dense_v2", "v1.dense", "nn.sparse", "v1.sparse")  # report order
# The --quick subset: one or two cases per behaviour family, by catalogue name. Names
# missing from the catalogue are ignored (it grows independently).
QUICK_NAMES = frozenset(
    # dense values, dtypes, ranks, edge values
    "f32_soft f64_soft f16 bf16 int32_labels labels_sum_3 rank1 rank3_last empty_batch "
    "zero_classes zero_by_zero rank0 neg_inf_zero_label inf_logits wide_f32 "
    # axis, broadcasting, errors
    "axis0 axis_minus2 labels_1xC labels_Nx1 logits_Nx1_labels_NxC class_mismatch int_logits "
    "string_labels "
    # v1 argument quirks
    "v1_axis_with_default_dim v1_dim0 v1_labels_missing v1v2_dim_and_axis v2_labels_none "
    # sparse
    "f32_int32 f32_int64 rank3 label_too_big labels_both_bad labels_rank_mismatch "
    "batch_mismatch float_labels all_neg_inf".split()
)
# compat_matrix.md columns fed by this check, in order: (key, heading).
COLUMNS = (
    ("signatures", "signatures"),
    ("values", "values"),
    ("gradients_1", "gradients 1st"),
    ("gradients_2", "gradients 2nd"),
    ("errors", "errors"),
    ("determinism", "determinism"),
    ("xla", "XLA"),
    ("v1_graph", "v1 graph"),
)
# Top-level TF 1.x contract (intentional difference, compat_matrix.md): pinned literally.
_TF1_SIGNATURES = {
    "softmax_cross_entropy_with_logits": (
        "(_sentinel=None, labels=None, logits=None, dim=-1, name=None, axis=None)"
    ),
    "softmax_cross_entropy_with_logits_v2": "(labels, logits, axis=None, name=None, dim=None)",
    "sparse_softmax_cross_entropy_with_logits": (
        "(_sentinel=None, labels=None, logits=None, name=None)"
    ),
}


def add_args(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--quick", action="store_true", help="the representative subset in every mode"
    )
    scope.add_argument(
        "--full", action="store_true", help="every case in every mode (tens of minutes)"
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated execution modes (default: {','.join(MODES)})",
    )
    parser.add_argument(
        "--determinism",
        choices=("off", "on", "both"),
        default="both",
        help="op determinism setting(s) to run under (default: both)",
    )
    parser.add_argument(
        "-k",
        "--cases",
        metavar="REGEX",
        help="only cases whose id (api:name, e.g. nn.sparse:bf16) matches REGEX",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="worker processes (default: up to 2 per the CPU count; 1 runs in this process)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every unit of work to stderr"
    )


# ---------------------------------------------------------------------------------------------
# Selection


@dataclass(frozen=True)
class Unit:
    """A slice of work for one process: some cases in one mode and determinism setting."""

    mode: str
    deterministic: bool
    case_ids: tuple[str, ...]


def _parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"unknown mode(s) {unknown or text!r}; choose from {', '.join(MODES)}")
    return [m for m in MODES if m in modes]


def plan_units(args: argparse.Namespace, cases: list, chunk: int = 12) -> list[Unit]:
    """The (mode, determinism, cases) work list for the chosen scope, in report order."""
    modes = _parse_modes(args.modes)
    dets = {"off": [False], "on": [True], "both": [False, True]}[args.determinism]
    pattern = re.compile(args.cases) if args.cases else None
    chosen = [c for c in cases if pattern is None or pattern.search(c.id)]
    quick = [c for c in chosen if c.name in QUICK_NAMES and c.api in PRIMARY_SURFACES]
    units = []
    for mode in modes:
        if args.full:
            selected = chosen
        elif args.quick or mode in _SLOW_MODES:
            selected = quick
        else:
            selected = chosen
        ids = [c.id for c in selected]
        for det in dets:
            for start in range(0, len(ids), chunk):
                units.append(Unit(mode, det, tuple(ids[start : start + chunk])))
    return units


# ---------------------------------------------------------------------------------------------
# Running (in this process or in workers)


@dataclass
class Result:
    case: str
    api: str
    mode: str
    deterministic: bool
    problems: list[str]
    substituted: bool = False
    seconds: float = 0.0
    known: str | None = None  # the documented difference this comparison showed, if any
    raised: bool = False  # tfxent raised (an error comparison)
    grad_orders: int = 0  # gradient orders compared when nothing raises: 0, 1 or 2


_WORKER_CASES: dict | None = None


def _cases_by_id() -> dict:
    global _WORKER_CASES
    if _WORKER_CASES is None:
        from tfxent.parity import cases

        _WORKER_CASES = {c.id: c for c in cases.catalogue()}
    return _WORKER_CASES


def run_unit(unit: Unit) -> list[Result]:
    """Compare each case of the unit; a runner exception becomes a problem, not a crash."""
    from tfxent.parity import crashes, runner

    by_id = _cases_by_id()
    results = []
    for case_id in unit.case_ids:
        case = by_id[case_id]
        started = time.perf_counter()
        substituted = crashes.tf_would_crash(case, unit.mode, unit.deterministic)
        known, raised = None, False
        try:
            comparison = runner.compare(case, unit.mode, unit.deterministic)
            raised = bool(getattr(comparison, "raised", False))
            problems = [] if comparison.ok else list(comparison.problems)
            if comparison.ok and getattr(comparison, "known", None) is not None:
                known = comparison.known.key
            elif not comparison.ok and comparison.problems == [] and comparison.known:
                problems = [f"stale known difference {comparison.known.key}: now at parity"]
        except Exception as err:  # noqa: BLE001 - reported as a difference
            problems = [f"check: the runner raised {type(err).__name__}: {str(err)[:300]}"]
        results.append(
            Result(
                case_id,
                case.api,
                unit.mode,
                unit.deterministic,
                problems,
                substituted,
                round(time.perf_counter() - started, 3),
                known,
                raised,
                _grad_orders(case, runner),
            )
        )
    return results


def _grad_orders(case, runner) -> int:
    """Gradient orders the runner compares for this case (its own rule, when it has one)."""
    is_float = getattr(runner, "_is_float", None)
    second = getattr(runner, "_second_order_supported", None)
    if not case.gradients or (is_float is not None and not is_float(case.logits)):
        return 0
    return 2 if second is not None and second(case) else 1


def _worker_init() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")


def _log(message: str) -> None:
    print(f"tfxent check: {message}", file=sys.stderr, flush=True)


def execute(units: list[Unit], jobs: int, verbose: bool = False) -> list[Result]:
    """Run the units (in `jobs` processes), results in the order of `units`."""
    total = sum(len(u.case_ids) for u in units)
    done = 0
    started = time.perf_counter()

    def progress(unit: Unit, results: list[Result]) -> None:
        nonlocal done
        done += len(unit.case_ids)
        failed = sum(1 for r in results if r.problems)
        if verbose or failed:
            det = "on" if unit.deterministic else "off"
            _log(
                f"{done}/{total} {unit.mode} determinism {det}: {len(results)} cases, "
                f"{failed} with differences ({time.perf_counter() - started:.0f} s)"
            )

    by_unit: dict[int, list[Result]] = {}
    if jobs <= 1:
        for i, unit in enumerate(units):
            by_unit[i] = run_unit(unit)
            progress(unit, by_unit[i])
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_worker_init
        ) as pool:
            futures = {pool.submit(run_unit, unit): i for i, unit in enumerate(units)}
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                unit = units[i]
                try:
                    by_unit[i] = future.result()
                except Exception as err:  # noqa: BLE001 - a crashed worker is a difference
                    det = unit.deterministic
                    by_unit[i] = [
                        Result(
                            cid,
                            cid.split(":")[0],
                            unit.mode,
                            det,
                            [f"check: worker failed ({type(err).__name__}: {err}) in this unit"],
                        )
                        for cid in unit.case_ids
                    ]
                progress(unit, by_unit[i])
    return [r for i in range(len(units)) for r in by_unit[i]]


# ---------------------------------------------------------------------------------------------
# Signatures


def _signature(fn) -> str:
    """`str(inspect.signature(fn))`: names, kinds, defaults and annotations."""
    return str(inspect.signature(fn))


def compare_signatures() -> list[dict]:
    """tfxent.nn / tfxent.compat.v1.nn against tf.nn / tf.compat.v1.nn, and the pinned
    top-level TF 1.x contract."""
    import tensorflow as tf

    import tfxent

    rows = []
    pairs = (
        ("tfxent.nn", tfxent.nn, "tf.nn", tf.nn),
        ("tfxent.compat.v1.nn", tfxent.compat.v1.nn, "tf.compat.v1.nn", tf.compat.v1.nn),
    )
    for ours_name, ours_mod, theirs_name, theirs_mod in pairs:
        for name in sorted(ours_mod.__all__):
            ours = _signature(getattr(ours_mod, name))
            theirs_fn = getattr(theirs_mod, name, None)
            theirs = _signature(theirs_fn) if theirs_fn is not None else None
            problems = [] if ours == theirs else [f"tfxent {ours} vs TF {theirs}"]
            rows.append(
                {"function": f"{ours_name}.{name}", "reference": f"{theirs_name}.{name}",
                 "signature": ours, "problems": problems}
            )  # fmt: skip
    for name, expected in sorted(_TF1_SIGNATURES.items()):
        ours = _signature(getattr(tfxent, name))
        problems = [] if ours == expected else [f"tfxent {ours} vs the TF 1.x contract {expected}"]
        rows.append(
            {"function": f"tfxent.{name}", "reference": "TF 1.x contract (intentional)",
             "signature": ours, "problems": problems}
        )  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------
# Classification into compat-matrix columns


def _aspect(problem: str) -> str:
    if problem.startswith("error:"):
        return "errors"
    if problem.startswith(("gradient error", "grad_")):
        return "gradients_1"
    if problem.startswith("hvp_"):
        return "gradients_2"
    return "values"


def columns(results: list[Result], signatures: list[dict]) -> dict[str, dict]:
    """Per compat-matrix column: comparisons checked and failed (None: not run).

    Op determinism, XLA and Session comparisons count in their own column. Eager and
    tf.function comparisons with determinism off count under *errors* when the call raises,
    else under *values* and the gradient orders compared; a problem counts under the aspect
    it concerns.
    """
    table = {key: {"checked": 0, "failed": 0} for key, _ in COLUMNS}
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
    for cell in table.values():
        if cell["checked"] == 0:
            cell["checked"] = cell["failed"] = None
    return table


def cell(column: dict) -> str:
    """A compat-matrix cell: ✓, ✗ with the number of failing comparisons, or — (not run)."""
    if column.get("checked") is None:
        return "—"
    return "✓" if not column["failed"] else f"✗ {column['failed']}"


# ---------------------------------------------------------------------------------------------
# Environment facts


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


# ---------------------------------------------------------------------------------------------
# Report


def build_report(args: argparse.Namespace, jobs: int) -> dict:
    from tfxent import _versions
    from tfxent.parity import cases

    catalogue = cases.catalogue()
    units = plan_units(args, catalogue)
    started = time.perf_counter()
    env = environment()
    _log(
        f"TF {env['tensorflow']}, backend {env['backend']}: "
        f"{sum(len(u.case_ids) for u in units)} comparisons in {jobs} process(es)"
    )
    signatures = compare_signatures()
    results = execute(units, jobs, verbose=args.verbose)
    per_surface: dict[str, dict[str, list[int]]] = {}
    for r in results:
        det = "on" if r.deterministic else "off"
        slot = per_surface.setdefault(r.api, {}).setdefault(f"{r.mode}/{det}", [0, 0])
        slot[0] += 1
        slot[1] += bool(r.problems)
    table = columns(results, signatures)
    failures = [asdict(r) for r in results if r.problems]
    timings: dict[str, float] = {}
    for r in results:
        key = f"{r.mode}/{'on' if r.deterministic else 'off'}"
        timings[key] = round(timings.get(key, 0.0) + r.seconds, 1)
    slowest = sorted(results, key=lambda r: -r.seconds)[:10]
    scope = "full" if args.full else "quick" if args.quick else "default"
    return {
        **env,
        "scope": scope,
        "modes": _parse_modes(args.modes),
        "determinism": args.determinism,
        "case_filter": args.cases,
        "comparisons": len(results),
        "cases": len({r.case for r in results}),
        "seconds": round(time.perf_counter() - started, 1),
        "columns": table,
        "row": {key: cell(table[key]) for key, _ in COLUMNS},
        "per_surface": {api: per_surface[api] for api in _SURFACES if api in per_surface},
        "signatures": signatures,
        "failures": failures,
        "substituted": sorted({f"{r.case} [{r.mode}]" for r in results if r.substituted}, key=str),
        "version_behaviours": {k: v for k, v in _versions.current().items()},
        "timings": timings,
        "slowest": [[r.case, r.mode, r.deterministic, r.seconds] for r in slowest],
        "ok": not failures and not any(s["problems"] for s in signatures),
    }


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def row_headings() -> list[str]:
    return ["TF", *[heading for _, heading in COLUMNS]]


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


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def run(args: argparse.Namespace) -> int:
    try:
        _parse_modes(args.modes)
        if args.cases:
            re.compile(args.cases)
    except (ValueError, re.error) as err:
        print(f"tfxent check: {err}", file=sys.stderr)
        return 2
    jobs = args.jobs if args.jobs is not None else default_jobs()
    report = build_report(args, jobs)
    print(render(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=1, sort_keys=False, default=str)
            out.write("\n")
        _log(f"wrote {args.json}")
    return 0 if report["ok"] else 1
