"""Worker process of `tfxent bench`: one thread count's timings, or one memory case.

`python -m tfxent.bench.worker SPEC.json OUT.json`. A fresh process per thread count,
because TF's intra-op thread count can only be set before the runtime starts; a fresh
process per memory case, so that its peak is the case's own. Progress goes to stderr; the
results go to OUT.json, rewritten after every group so a crash loses only the rest.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

from tfxent.bench import calls, cases


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _start_tf(threads: int | None):
    """Import TF and fix its thread pools before anything initialises the runtime."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import tfxent  # noqa: F401  (after the thread settings: importing it may touch TF)
    from tfxent import _backend

    _backend.op_library()
    return tf


# A first call this long (s) is taken as steady: one-time costs are noise in it (eager), or
# tracing and XLA's compilation are (functions).
_LONG_CALL_S = 0.25
_LONG_COMPILED_S = 2.5


def _timed(call: Callable, inner: int) -> float:
    """Seconds per call over `inner` calls; results are dropped inside the timed region
    (freeing an output is part of its cost)."""
    t0 = time.perf_counter()
    for _ in range(inner):
        call()
    return (time.perf_counter() - t0) / inner


def _time_group(tf, g: cases.Group, tensors: dict, spec: dict) -> dict:
    labels = tensors["dense" if g.kind == "dense" else "sparse"]
    logits = tensors["logits"]
    # Memory-bound shapes are far from their call floor; timing it there would only cost time.
    fns = calls.variants(tf, g.kind, g.mode, g.execs, with_floor=g.group != "memory-bound")
    runs = {name: (lambda f=f: f(labels, logits)) for name, f in fns.items()}
    result: dict = {"variants": {}, "op_check": calls.op_check(tf, g.kind, g.mode, labels, logits)}
    live: dict[str, int] = {}
    for name, call in runs.items():
        entry: dict = {"error": None}
        result["variants"][name] = entry
        try:
            t0 = time.perf_counter()
            if name == "tfxent/eager":
                backends, out = calls.eager_backends(call)
                result["op_check"]["eager_backends"] = sorted(set(backends))
                if _backend_op() not in backends:
                    result["op_check"]["verified"] = False
            else:
                out = call()
            del out
            entry["first_call_s"] = time.perf_counter() - t0
            # A second call still pays one-time costs (function instantiation, allocator
            # growth): calibrate on later calls unless one call is long enough to drown
            # them. The first call of a function includes its tracing, and XLA's its
            # compilation (about a second), so those need a longer call to be trusted.
            # Short calls calibrate on the faster of two samples, so that a burst of load
            # cannot inflate the sample length.
            per_call = entry["first_call_s"]
            if per_call < (_LONG_CALL_S if name.endswith("/eager") else _LONG_COMPILED_S):
                per_call = _timed(call, 1)
            if per_call < spec["min_sample_s"] * 4:
                k = max(3, int(spec["min_sample_s"] / max(per_call, 1e-7)))
                per_call = min(_timed(call, k) for _ in range(2))
            inner = max(1, min(100_000, math.ceil(spec["min_sample_s"] / max(per_call, 1e-7))))
            if inner > 1:
                _timed(call, inner)  # one untimed sample at the sampling rate
            live[name] = inner
            entry["inner"] = inner
            entry["calibrated_call_s"] = per_call
        except Exception as err:  # noqa: BLE001 - reported per variant, like TF's own errors
            entry["error"] = calls.error(err)
    per_rep = sum(result["variants"][n]["calibrated_call_s"] * k for n, k in live.items())
    reps = spec["min_reps"]
    if per_rep > 0:
        reps = int(min(spec["max_reps"], max(spec["min_reps"], spec["target_s"] // per_rep)))
    names = list(live)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % max(len(names), 1)
        for name in names[shift:] + names[:shift]:  # interleaved, rotating the order
            samples[name].append(_timed(runs[name], live[name]))
    for name in names:
        entry = result["variants"][name]
        ordered = sorted(samples[name])
        entry["samples_s"] = samples[name]
        entry["median_s"] = statistics.median(ordered)
        entry["min_s"] = ordered[0]
        entry["p25_s"] = ordered[(len(ordered) - 1) // 4]
        entry["p75_s"] = ordered[(3 * (len(ordered) - 1) + 3) // 4]
    result["reps"] = reps
    return result


def _backend_op() -> str:
    from tfxent import _backend

    return _backend.OP


def _library_info() -> dict:
    from tfxent import _backend, _build

    path = _build.loaded_path()
    return {
        "op_library": os.path.basename(os.path.dirname(path)) if path else None,
        "op_load_error": _backend.load_error(),
    }


def _machine(spec: dict, threads: int, llc_bytes: int) -> dict:
    from tfxent.bench import limits

    try:
        return limits.machine_limits(spec.get("helper"), threads, llc_bytes)
    except Exception as err:  # noqa: BLE001
        _log(f"tfxent bench: measuring the machine failed ({calls.error(err)}); using TF ops")
        return limits.machine_limits(None, threads, llc_bytes)


def _describe(tf, p: int, g: cases.Group, res: dict, seconds: float) -> str:
    parts = []
    for name, entry in res["variants"].items():
        value = entry.get("median_s")
        parts.append(f"{name} {'ERR' if value is None else f'{value * 1e3:.3g}ms'}")
    ok = "op verified" if res["op_check"]["verified"] else "OP NOT VERIFIED"
    return (
        f"[{p} thr] {g.group} {g.n}x{g.c} {g.kind} {g.mode} {g.dtype}: {', '.join(parts)}"
        f" ({res['reps']} reps, {seconds:.1f} s, {ok})"
    )


def run_timing(spec: dict, out_path: str) -> None:
    p = spec["threads"]
    tf = _start_tf(p)
    meta = {
        "threads": p,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "tensorflow": tf.__version__,
        "tfxent": __import__("tfxent").__version__,
        "python": platform.python_version(),
        "cpu": cases.cpu_model(),
        "simd": cases.cpu_simd(),
        "llc_bytes": cases.last_level_cache_bytes(),
        "loadavg_start": os.getloadavg(),
        **_library_info(),
    }
    _log(f"[{p} thr] measuring BW_{p} and c_exp...")
    meta["machine_start"] = _machine(spec, p, meta["llc_bytes"])
    report = {"meta": meta, "groups": []}
    tensors: dict = {}
    key = None
    for raw in spec["groups"]:
        g = cases.Group(**{**raw, "execs": tuple(raw["execs"])})
        if key != (g.n, g.c, g.dtype):
            tensors.clear()
            gc.collect()
            key = (g.n, g.c, g.dtype)
        if "logits" not in tensors or (g.kind == "dense" and "dense" not in tensors):
            tensors.update(calls.inputs(tf, g.n, g.c, g.dtype, g.kind == "dense"))
        t0 = time.perf_counter()
        res = _time_group(tf, g, tensors, spec)
        gc.collect()
        _log(_describe(tf, p, g, res, time.perf_counter() - t0))
        report["groups"].append({**g.to_json(), "threads": p, **res})
        _write(out_path, report)
    tensors.clear()
    gc.collect()
    _log(f"[{p} thr] measuring BW_{p} and c_exp again...")
    meta["machine_end"] = _machine(spec, p, meta["llc_bytes"])
    meta["loadavg_end"] = os.getloadavg()
    _write(out_path, report)


def _proc_status(field: str) -> int | None:
    """VmRSS / VmHWM of this process in bytes (Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux ≥ 4.0: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_memory(spec: dict, out_path: str) -> None:
    """Extra peak memory of one full-size call of a case, in a fresh process.

    TF's CPU allocator pools freed blocks, so the RSS cannot see a buffer that reuses memory
    freed earlier (building the inputs leaves such blocks); its own statistics can: peak
    minus current bytes in use, reset just before the call. They count each block at the
    size of the allocator's chunk, up to a few per cent more than asked for the [N, C]
    blocks measured here. The call measured is the second at full size, so XLA's
    compilation is not in it; the RSS high-water mark over the first is kept for reference."""
    m = cases.MemoryCase(**spec["case"])
    tf = _start_tf(None)
    from tfxent import _backend

    fns = calls.functions(tf, m.kind)
    fn = fns["tf.nn" if m.impl == "xla" else m.impl]
    step = calls.step(tf, fn, m.mode)
    if m.impl == "xla":
        step = tf.function(step, jit_compile=True)
    small = calls.inputs(tf, 4, 8, m.dtype, m.kind == "dense")
    for _ in range(2):
        step(small[m.kind], small["logits"])  # one-time costs: library, pools, tracing
    tensors = calls.inputs(tf, m.n, m.c, m.dtype, m.kind == "dense")
    labels, logits = tensors[m.kind], tensors["logits"]
    gc.collect()
    rss_before = _proc_status("VmRSS")
    reset = _reset_peak()
    step(labels, logits)  # first full-size call (XLA compiles here), result dropped
    rss_peak = _proc_status("VmHWM") if reset else None
    gc.collect()
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    except Exception:  # noqa: BLE001 - older TF: no allocator statistics on CPU
        before = None
    out = step(labels, logits)
    del out
    extra, method = None, "unavailable: TF keeps no allocator statistics on CPU here"
    if before is not None:
        extra = tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
        method = "TF CPU allocator: peak − current bytes in use over the call (chunk-rounded)"
    unit = m.n * m.c * cases.ITEMSIZE[m.dtype]
    report = {
        "case": spec["case"],
        "extra_bytes": extra,
        "extra_nc_units": extra / unit if unit and extra is not None else None,
        "method": method,
        "first_call_rss_extra_bytes": (
            rss_peak - rss_before if rss_peak is not None and rss_before else None
        ),
        "backend": _backend.choose(logits).backend if m.impl == "tfxent" else None,
    }
    _write(out_path, report)


def _write(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    spec_path, out_path = argv
    with open(spec_path) as fh:
        spec = json.load(fh)
    if spec["task"] == "time":
        run_timing(spec, out_path)
    else:
        run_memory(spec, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
