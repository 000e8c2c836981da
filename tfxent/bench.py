"""`python -m tfxent bench`: tfxent against tf.nn and tf.nn under XLA, near the roofline."""

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

from tfxent import _bench_cases as cases
from tfxent import _bench_report as report

DESCRIPTION = """\
Time tfxent.nn against tf.nn and tf.nn under tf.function(jit_compile=True) (XLA) in one
process, on the same tensors, interleaved after a warm-up, for docs/performance.md's shapes;
measure the machine's streaming bandwidth and exp cost in the same run; and measure each
case's extra peak memory in a fresh process. Results: a table on stdout (progress on
stderr), --json FILE for everything including every sample.

Every thread count runs in a fresh worker process (TF fixes its intra-op pool at start-up;
the worker sets intra- and inter-op threads to P). Each group is one (shape, dtype, kind,
mode): its variants (tfxent and tf.nn in eager and in tf.function, and XLA, which is
always a compiled function and so is shared by the eager and function rows) are each
called once to warm up (trace, compile), then sampled in rotating order; a sample repeats
a call until it lasts --min-sample-ms. Outputs are freed inside the timed region.

Columns:
  group      docs/performance.md's shape group (memory-bound is the main target)
  shape      [N, C] of the logits; dense labels are [N, C] in the logits' dtype
             (label-smoothed one-hot), sparse labels are int32 [N]
  kind       dense: softmax_cross_entropy_with_logits; sparse: sparse_...
  mode       loss: the loss only; fwd+bwd: loss and its gradient w.r.t. the logits
             through tf.GradientTape (upstream gradient 1 per row)
  exec       eager, or inside tf.function (XLA is always compiled)
  thr        TF intra-op threads P
  tfxent, tf.nn, xla
             median seconds per call
  nn/tfx, xla/tfx
             speed-up of tfxent: tf.nn time / tfxent time, XLA time / tfxent time
  floor      (cache-resident and overhead-bound shapes) median seconds of the same call
             (same exec mode, inputs and outputs) doing one elementwise pass with TF's
             ops, timed beside the others: what the exec mode costs before any softmax
             work. A call can come in under it where TF's ops hand small work to a
             second thread and tfxent's kernels, rightly sized, do not.
  roof       docs/performance.md's roofline time T_roof = max(T_mem, T_cmp), with
             T_mem = Bytes_min / BW_P (0 when the logits fit in the resident cache),
             T_cmp = N·C·c_exp / P (one exp per element), Bytes_min = 4·N·C (sparse
             loss), 8·N·C (dense loss), 12·N·C (sparse fwd+bwd), 20·N·C (dense
             fwd+bwd), halved for bf16/f16
  bound      which term sets T_roof: mem (bandwidth), exp (compute), cache (the array
             fits in the resident cache: compute only)
  frac       fraction_of_roofline = T_roof / tfxent time (1.0 = at the limit; a
             read-heavy kernel can pass 1 where reads stream faster than a copy, and
             fwd+bwd pays exp twice, forward and backward, against T_cmp's one)
  note       errors; "noisy" where a variant's interquartile range exceeds half its
             median (the median then depends on how many samples were descheduled)

BW_P: a copy with ordinary stores from one 1 GiB array to another on P threads (reads +
writes counted), the median of 5 passes: the access pattern of a kernel writing a fresh
output, and the basis of docs/performance.md's "streaming copy"; an in-place read+write and a
read-only pass are shown beside it. c_exp: ns per element of a vectorised
`s += exp(x - m)` loop over an L2-resident array on one thread. Resident cache: the largest
array (1 MiB, 2 MiB, ... up to the last-level cache in sysfs) that one thread re-reads
>= 1.25x faster than it streams 1 GiB; a virtual machine's sysfs shows the host's whole
shared cache, which its calls cannot count on. All three come from a small C++
helper compiled for this CPU (-O3 -march=native) at the start of the run, measured at the
start and the end of each worker; the roofline uses the faster of the two and the larger
cache (never the flattering one). Without a compiler BW_P and c_exp fall back to TF ops and
the resident cache to the size in sysfs. The header shows them with
the TF version, the CPU, the load average, the op library and whether the custom op
verifiably ran (op types in the traced graphs, tfxent's backend choice in eager calls).

Extra peak memory: in a fresh process per case, after a tiny warm-up and one full-size
call, TF's CPU allocator statistics over one more call: peak minus current bytes in use,
also in units of N·C·sizeof(dtype). (The process RSS cannot see buffers the allocator
reuses from its pool; the statistics count each block at the allocator's chunk size, a
few per cent above the request for the blocks measured here.)

The targets summary checks issue 3's targets at the largest thread count measured.
Timings are never test assertions; on a shared machine only same-run ratios mean anything.
Exit status: 0 OK; 1 a worker failed, the custom op did not run, or tfxent failed where
tf.nn did not; 2 usage error or interrupted.
"""


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="about a minute: [128,100], [1024,1000], [8,1e6] and [8192,32000], f32, "
        "all threads only, memory of [8192,32000] for tfxent",
    )
    parser.add_argument(
        "--shapes",
        help="comma-separated groups (overhead-bound, cache-resident, few-rows, "
        "memory-bound, edge; or overhead, cache, few, memory, edges) and NxC shapes "
        "(default: every group)",
    )
    parser.add_argument("--kinds", default="dense,sparse", help="dense,sparse (default both)")
    parser.add_argument("--modes", default="loss,fwdbwd", help="loss,fwdbwd (default both)")
    parser.add_argument(
        "--exec",
        dest="execs",
        help="eager,function (default both; bf16/f16 in function only unless this is named)",
    )
    parser.add_argument(
        "--dtypes",
        help="f32,bf16,f16 (default all; bf16/f16 run on memory-bound and NxC shapes only)",
    )
    parser.add_argument(
        "--threads",
        help="thread counts, e.g. 1,all or 1,2 (default: 1,all; --quick: all). By default "
        "bf16/f16 run at the largest count only; name --dtypes to run them at every count",
    )
    parser.add_argument("--json", metavar="FILE", help="write all results (with samples) here")
    parser.add_argument(
        "--memory-shapes",
        help="NxC:dtype,... for the peak-memory cases, each with every --memory-impls "
        "(default: 8192x32000:f32 for all three, 4096x128256:f32 for tfxent, 8192x32000:bf16 "
        "for tfxent and tf.nn, where selected; --quick: 8192x32000:f32 for tfxent; none for "
        "NxC-only runs); 'none' to skip",
    )
    parser.add_argument(
        "--memory-impls",
        help="tfxent,tf.nn,xla: the implementations of every peak-memory case",
    )
    parser.add_argument(
        "--memory-jobs", type=int, default=2, help="memory cases run at once (default 2)"
    )
    parser.add_argument("--min-reps", type=int, default=3, help="timed samples at least")
    parser.add_argument("--max-reps", type=int, default=25, help="timed samples at most")
    parser.add_argument(
        "--target-s",
        type=float,
        help="seconds of timed samples per group, all variants together (default 1.5; "
        "--quick 0.6); large shapes get --min-reps",
    )
    parser.add_argument(
        "--min-sample-ms",
        type=float,
        default=20.0,
        help="a sample repeats a call until it lasts this long (default 20: longer than a "
        "scheduler time slice, so on a shared machine every sample sees the same average "
        "contention instead of some being descheduled and some not)",
    )


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
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "tfxent._bench_worker", str(spec_path), str(out_path)],
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
        from tfxent import _bench_native

        helper, helper_note = _bench_native.compile_helper(workdir)
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
    print("issue 3 targets (f32, largest thread count; worst case shown):")
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
