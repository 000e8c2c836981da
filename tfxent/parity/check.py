"""What `python -m tfxent check` runs: the selection of catalogue comparisons and their
execution, in this process or in worker processes.

The catalogue (cases.py) is split into units of a few cases in one mode and determinism
setting; each unit runs through the side-by-side runner (runner.py) and comes back as
`Result`s, which report.py classifies and prints. The command line is tfxent/cli/check.py.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import re
import sys
import time
from dataclasses import dataclass

from tfxent.parity.cases import MODES

# Surfaces the subset runs on: the compat.v1 `_v2` and sparse functions share the v2
# surfaces' core and differ only in argument handling, which eager and Session cover in full.
PRIMARY_SURFACES = ("nn.dense", "v1.dense", "nn.sparse")
# Modes whose per-case cost is dominated by tracing/compiling: subset by default.
_SLOW_MODES = ("function", "xla")
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


@dataclass(frozen=True)
class Unit:
    """A slice of work for one process: some cases in one mode and determinism setting."""

    mode: str
    deterministic: bool
    case_ids: tuple[str, ...]


def parse_modes(text: str) -> list[str]:
    """`--modes`' comma-separated list, in the catalogue's order; ValueError if unknown."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"unknown mode(s) {unknown or text!r}; choose from {', '.join(MODES)}")
    return [m for m in MODES if m in modes]


def plan_units(args: argparse.Namespace, cases: list, chunk: int = 12) -> list[Unit]:
    """The (mode, determinism, cases) work list for the chosen scope, in report order."""
    modes = parse_modes(args.modes)
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
    # "bit-identical", "within tolerance", "differing" or "no values" (runner.Comparison)
    closeness: str = "differing"
    max_ulp: int | None = None  # the largest ulp distance of the values, where compared


_WORKER_CASES: dict | None = None


def _cases_by_id() -> dict:
    global _WORKER_CASES
    if _WORKER_CASES is None:
        from tfxent.parity import cases

        _WORKER_CASES = {c.id: c for c in cases.catalogue()}
    return _WORKER_CASES


def run_unit(unit: Unit) -> list[Result]:
    """Compare each case of the unit; a runner exception becomes a problem, not a crash."""
    from tfxent.parity import calls, crashes, runner

    by_id = _cases_by_id()
    results = []
    for case_id in unit.case_ids:
        case = by_id[case_id]
        started = time.perf_counter()
        result = Result(
            case_id,
            case.api,
            unit.mode,
            unit.deterministic,
            [],
            substituted=crashes.tf_would_crash(case, unit.mode, unit.deterministic),
            grad_orders=calls.gradient_orders(case),
        )
        try:
            comparison = runner.compare(case, unit.mode, unit.deterministic)
            result.raised = comparison.raised
            result.problems = [] if comparison.ok else list(comparison.problems)
            result.known = comparison.known.key if comparison.known is not None else None
            result.closeness, result.max_ulp = comparison.closeness, comparison.max_ulp
        except Exception as err:  # noqa: BLE001 - reported as a difference
            result.problems = [f"check: the runner raised {type(err).__name__}: {str(err)[:300]}"]
        result.seconds = round(time.perf_counter() - started, 3)
        results.append(result)
    return results


def _worker_init() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")


def log(message: str) -> None:
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
        det = "on" if unit.deterministic else "off"
        if verbose or failed:
            log(
                f"{done}/{total} {unit.mode} determinism {det}: {len(results)} cases, "
                f"{failed} with differences ({time.perf_counter() - started:.0f} s)"
            )
        if verbose:
            for r in results:
                ulp = "" if r.max_ulp is None else f", max {r.max_ulp} ulp"
                log(f"  {r.case} [{r.mode}, determinism {det}]: {r.closeness}{ulp}")

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
                    by_unit[i] = [
                        Result(
                            cid,
                            cid.split(":")[0],
                            unit.mode,
                            unit.deterministic,
                            [f"check: worker failed ({type(err).__name__}: {err}) in this unit"],
                        )
                        for cid in unit.case_ids
                    ]
                progress(unit, by_unit[i])
    return [r for i in range(len(units)) for r in by_unit[i]]


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))
