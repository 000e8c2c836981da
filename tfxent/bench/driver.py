"""The parent process of `python -m tfxent bench` (tfxent/cli/bench.py): plans the groups,
compiles the machine-limits helper, runs one worker process per thread count and per
memory case (worker.py), and prints the table and the performance targets
(docs/performance.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tfxent.bench import cases, limits, report


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _plan(args: argparse.Namespace) -> dict:
    quick = args.quick
    shapes = (
        cases.parse_shapes(args.shapes)
        if args.shapes
        else (cases.QUICK_SHAPES if quick else cases.parse_shapes(",".join(cases.GROUPS)))
    )
    kinds = cases.parse_choice(args.kinds, cases.KINDS, {}, "kind")
    modes = cases.parse_choice(args.modes, cases.MODES, cases.MODE_ALIASES, "mode")
    execs = cases.parse_choice(args.execs or "eager,function", cases.EXECS, {}, "exec mode")
    default_dtypes = "f32" if quick else ",".join(cases.DTYPES)
    dtypes = cases.parse_choice(
        args.dtypes or default_dtypes, cases.DTYPES, cases.DTYPE_ALIASES, "dtype"
    )
    threads = cases.parse_threads(args.threads or ("all" if quick else "1,all"))
    groups = cases.plan_groups(shapes, kinds, modes, execs, dtypes, narrow_everywhere=False)
    # bf16/f16 by default: at the largest thread count and in tf.function only (eager adds
    # nothing at these sizes but time); naming --dtypes or --exec lifts either limit.
    per_threads = {}
    for p in threads:
        narrow_here = args.dtypes is not None or p == max(threads)
        chosen = []
        for g in groups:
            if g.dtype != "f32":
                if not narrow_here:
                    continue
                if args.execs is None and "function" in g.execs:
                    g = dataclasses.replace(g, execs=("function",))
            chosen.append(g)
        per_threads[p] = chosen
    impls = None
    if args.memory_impls:
        impls = cases.parse_choice(
            args.memory_impls, cases.ALL_IMPLS, {"tf": "tf.nn", "native": "tf.nn"}, "memory impl"
        )
    memory = [
        cases.MemoryCase(n, c, kind, mode, dtype, impl)
        for (n, c), dtype, default_impls in _memory_shapes(args, shapes, dtypes)
        for kind in kinds
        for mode in modes
        for impl in impls or default_impls
    ]
    return {"threads": per_threads, "memory": memory}


def _memory_shapes(args, shapes, dtypes) -> list[tuple[tuple[int, int], str, tuple[str, ...]]]:
    if args.memory_shapes:
        if args.memory_shapes.strip().lower() == "none":
            return []
        out = []
        for tok in args.memory_shapes.split(","):
            shape, _, dtype = tok.strip().partition(":")
            ((_, nc),) = cases.parse_shapes(shape)
            (dt,) = cases.parse_choice(dtype or "f32", cases.DTYPES, cases.DTYPE_ALIASES, "dtype")
            out.append((nc, dt, cases.ALL_IMPLS))
        return out
    wanted = cases.MEMORY_QUICK if args.quick else cases.MEMORY_FULL
    selected = {shape for _, shape in shapes}
    return [(s, d, i) for s, d, i in wanted if s in selected and d in dtypes]


def _worker(spec: dict, workdir: Path, name: str) -> tuple[dict | None, str | None]:
    """Run one worker process; its stderr is ours, its stdout goes to our stderr."""
    spec_path, out_path = workdir / f"{name}.spec.json", workdir / f"{name}.out.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    package_root = str(Path(__file__).resolve().parents[2])  # the directory holding tfxent/
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "tfxent.bench.worker", str(spec_path), str(out_path)],
        env=env,
        stdout=sys.stderr,
        check=False,
    )
    data = json.loads(out_path.read_text()) if out_path.exists() else None
    error = None if done.returncode == 0 else f"worker {name} exited with {done.returncode}"
    return data, error


def _header(metas: dict[int, dict], helper_note: str, verified: bool) -> str:
    any_meta = next(iter(metas.values()))
    lines = [
        f"tfxent bench: tfxent {any_meta['tfxent']}, TensorFlow {any_meta['tensorflow']}, "
        f"Python {any_meta['python']}",
        f"CPU: {any_meta['cpu']} ({cases.all_threads()} threads available, "
        f"{any_meta['simd']}, last-level cache {report.fmt_bytes(any_meta['llc_bytes'])} in sysfs)",
        f"custom op: {'verified' if verified else 'NOT VERIFIED'} (library "
        f"{any_meta.get('op_library')}; op types in traced tf.function graphs and tfxent's "
        "backend choice in eager calls)",
        f"machine limits ({helper_note}):",
    ]
    for p, meta in sorted(metas.items()):
        lim = report.machine_limits(meta)
        others = [
            f"{name} {lim[key] / 1e9:.1f}"
            for name, key in (
                ("in-place r+w", "bw_inplace_bytes_per_s"),
                ("read", "bw_read_bytes_per_s"),
            )
            if lim.get(key)
        ]
        lines.append(
            f"  P={p} (intra-op {meta['intra_op_threads']}, inter-op {meta['inter_op_threads']}):"
            f" BW_{p} = {lim['bw_bytes_per_s'] / 1e9:.1f} GB/s copy, reads+writes"
            + (f" ({', '.join(others)} GB/s)" if others else "")
            + f"; c_exp = {lim['c_exp_ns']:.3f} ns/element; resident cache "
            f"{report.fmt_bytes(lim['cache_bytes'])}; load average "
            f"{meta['loadavg_start'][0]:.1f} -> {meta.get('loadavg_end', [float('nan')])[0]:.1f}"
        )
    libraries = {m.get("op_library") for m in metas.values()}
    if len(libraries) > 1:
        lines.append(
            f"WARNING: workers loaded different op libraries: {sorted(map(str, libraries))}"
        )
    return "\n".join(lines)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """The whole benchmark run for the parsed command line (tfxent/cli/bench.py)."""
    try:
        plan = _plan(args)
    except ValueError as err:
        print(f"tfxent bench: {err}", file=sys.stderr)
        return 2
    # SIGTERM as Ctrl-C: the running worker is killed and the scratch directory removed.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(args, plan)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, plan: dict) -> int:
    target = args.target_s if args.target_s is not None else (0.6 if args.quick else 1.5)
    started = time.monotonic()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tfxent-bench-") as tmp:
        workdir = Path(tmp)
        helper, helper_note = limits.compile_helper(workdir)
        _log(f"tfxent bench: machine-limits helper {helper_note}")
        metas: dict[int, dict] = {}
        groups: list[dict] = []
        for p, planned in plan["threads"].items():
            if not planned:
                continue
            _log(f"tfxent bench: {len(planned)} groups at {p} thread(s) in a fresh process")
            spec = {
                "task": "time",
                "threads": p,
                "groups": [g.to_json() for g in planned],
                "helper": helper,
                "min_reps": args.min_reps,
                "max_reps": max(args.max_reps, args.min_reps),
                "target_s": target,
                "min_sample_s": args.min_sample_ms / 1e3,
            }
            data, error = _worker(spec, workdir, f"time-{p}")
            if error:
                failures.append(error)
            if data:
                metas[p] = data["meta"]
                groups.extend(data["groups"])
        memory = _run_memory(plan["memory"], workdir, args.memory_jobs, failures)
    if not metas:
        print("tfxent bench: no timing results: " + "; ".join(failures), file=sys.stderr)
        return 1
    metas = {p: m for p, m in metas.items() if "machine_start" in m}
    for m in metas.values():
        m.setdefault("machine_end", None)
    rs = report.rows(groups, metas)
    verified = bool(groups) and all(g["op_check"].get("verified") for g in groups)
    print(_header(metas, helper_note, verified))
    print()
    print(report.table(rs))
    if memory:
        print()
        print("extra peak memory per call (fresh process per case):")
        print(report.memory_table(memory))
    checks = report.targets(rs, memory)
    print()
    print("performance targets (docs/performance.md; f32, largest thread count; worst case shown):")
    print(report.targets_table(checks))
    elapsed = time.monotonic() - started
    print(f"\n{len(rs)} rows, {len(memory)} memory cases in {elapsed:.0f} s")
    bad = [
        r
        for r in rs
        if "tfxent" in r["errors"] and "tf.nn" not in r["errors"] and r["tf_nn_s"] is not None
    ]
    for r in bad:
        failures.append(f"tfxent failed where tf.nn did not: {report._label(r)}")
    if not verified:
        failures.append("the custom op did not verifiably compute every tfxent call")
    if args.json:
        payload = {
            "command": ["python", "-m", "tfxent", "bench", *sys.argv[2:]],
            "meta": {str(p): m for p, m in metas.items()},
            "helper": helper_note,
            "rows": rs,
            "groups": groups,
            "memory": memory,
            "targets": [{"target": t, "worst": w, "status": s} for t, w, s in checks],
            "failures": failures,
            "seconds": elapsed,
        }
        Path(args.json).write_text(json.dumps(payload, indent=1))
        _log(f"tfxent bench: wrote {args.json}")
    for failure in failures:
        _log(f"tfxent bench: {failure}")
    return 1 if failures else 0


def _run_memory(planned, workdir: Path, jobs: int, failures: list[str]) -> list[dict]:
    if not planned:
        return []
    _log(f"tfxent bench: {len(planned)} peak-memory cases, each in a fresh process")

    def one(index_case):
        index, case = index_case
        spec = {"task": "memory", "case": case.__dict__}
        data, error = _worker(spec, workdir, f"memory-{index}")
        if error or not data:
            failures.append(error or f"memory case {index} wrote nothing")
            return {"case": case.__dict__, "error": error or "no result"}
        units = data["extra_nc_units"]
        _log(
            f"[memory] {case.n}x{case.c} {case.dtype} {case.kind} {case.mode} {case.impl}: "
            f"{report.fmt_bytes(data['extra_bytes'])}"
            + ("" if units is None else f" = {units:.2f} x [N,C]")
        )
        return data

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, enumerate(planned)))
