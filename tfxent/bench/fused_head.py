"""Benchmark of the fused language-model head: tfxent's fused linear + cross-entropy against
TF's unfused head (`tf.matmul` + `tf.nn.sparse_softmax_cross_entropy_with_logits` under a
`GradientTape`) and the same unfused head under XLA (`jit_compile=True`).

    python -m tfxent bench --suite fused-head --shapes 2048x512x32000,4096x1024x128256 \
        --dtypes f32,bf16 --modes fwdbwd,loss --json fused.json

Per case (N tokens × D hidden × V vocabulary, one dtype, one mode):

* time: one fresh process runs every implementation as a `tf.function` on the same tensors,
  interleaved (one call of each per round, the order rotating), after one warm-up call
  each; the table shows medians and the same-run ratio to TF's unfused head;
* extra peak memory: one fresh process per implementation, from TF's CPU allocator
  statistics over the second full-size call (the only one with `--single-call`), two ways:
  - extra peak = peak − bytes in use before the call;
  - beyond returned = peak − bytes in use before the call − bytes of the tensors the call
    returns (the loss, and with `fwdbwd` the [N, D] and [D, V] gradients, which every head
    must hand back: at 4096×1024×128256 float32 the kernel gradient alone is 501 MiB).
    This is the memory an implementation needs for its work, and the figure the fused
    head's memory target (1/8 of TF's) is judged on;
  and the process's RSS high-water mark over the full-size calls as a cross-check.

`loss` is the mean loss alone; `fwdbwd` also takes its gradients w.r.t. hidden and kernel.
`--impls` picks implementations (tf, tfxent, xla, tfxent-xla: the fused head's composite
path under XLA); `--skip-memory-impls tf,xla` skips those implementations (time and memory)
for a shape whose unfused head exceeds the machine's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

IMPLS = ("tf", "tfxent", "xla", "tfxent-xla")
DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def _build(impl: str, mode: str):
    import tensorflow as tf

    from tfxent import fused

    def head(h, w, y):
        if impl.startswith("tfxent"):
            return tf.reduce_mean(fused.linear_sparse_softmax_cross_entropy(h, w, y))
        logits = tf.matmul(h, w)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))

    def step(h, w, y):
        if mode == "loss":
            return [head(h, w, y)]
        with tf.GradientTape() as tape:
            tape.watch([h, w])
            loss = head(h, w, y)
        return [loss, *tape.gradient(loss, [h, w])]

    return tf.function(step, jit_compile=impl.endswith("xla"), autograph=False)


def _inputs(n: int, d: int, v: int, dtype: str, seed: int = 0):
    import tensorflow as tf

    g = tf.random.Generator.from_seed(seed)
    h = tf.cast(g.normal([n, d]), dtype)
    w = tf.cast(g.normal([d, v], stddev=d**-0.5), dtype)
    y = g.uniform([n], 0, v, dtype=tf.int32)
    return h, w, y


def _worker_time(spec: dict) -> dict:
    n, d, v = spec["shape"]
    steps = {impl: _build(impl, spec["mode"]) for impl in spec["impls"]}
    h, w, y = _inputs(n, d, v, DTYPES[spec["dtype"]])
    times: dict[str, list[float]] = {impl: [] for impl in steps}
    for step in steps.values():  # warm-up: tracing, XLA compilation, allocator pools
        [t.numpy() for t in step(h, w, y)]
    order = list(steps)
    for r in range(spec["repeats"]):
        for impl in order[r % len(order) :] + order[: r % len(order)]:
            start = time.perf_counter()
            [t.numpy() for t in steps[impl](h, w, y)]
            times[impl].append(time.perf_counter() - start)
            print(f"  {impl}: {times[impl][-1]:.3f} s", file=sys.stderr, flush=True)
    return {"samples": times, "median": {k: statistics.median(s) for k, s in times.items()}}


def _rss(field: str) -> int | None:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def _worker_memory(spec: dict) -> dict:
    import gc

    import tensorflow as tf

    n, d, v = spec["shape"]
    (impl,) = spec["impls"]
    step = _build(impl, spec["mode"])
    dtype = DTYPES[spec["dtype"]]
    small = _inputs(8, d, 64, dtype)
    for _ in range(2):
        step(*small)
    h, w, y = _inputs(n, d, v, dtype)
    gc.collect()
    rss_before = _rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
        fh.write("5")
    if not spec.get("single_call"):
        out = step(h, w, y)
        del out
        gc.collect()
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    start = time.perf_counter()
    out = step(h, w, y)
    seconds = time.perf_counter() - start
    returned = sum(t.shape.num_elements() * t.dtype.size for t in out)
    del out
    extra = tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
    return {
        "extra_bytes": extra,
        "returned_bytes": returned,
        "beyond_returned_bytes": extra - returned,
        "first_call_rss_extra_bytes": _rss("VmHWM") - rss_before,
        "inputs_bytes": sum(t.shape.num_elements() * t.dtype.size for t in (h, w, y)),
        "call_seconds": seconds,
    }


def _spawn(spec: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "spec.json")
        with open(path, "w") as fh:
            json.dump(spec, fh)
        done = subprocess.run(
            [sys.executable, "-m", "tfxent.bench.fused_head", "--worker", path],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
        return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt_bytes(b: float | None) -> str:
    if b is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(b) >= size:
            return f"{b / size:.2f} {unit}"
    return f"{b:.0f} B"


def run(args: argparse.Namespace) -> list[dict]:
    results = []
    impls = args.impls.split(",")
    skip = set(filter(None, args.skip_memory_impls.split(",")))
    for case in args.cases.split(","):
        shape = [int(x) for x in case.split("x")]
        for dtype in args.dtypes.split(","):
            for mode in args.modes.split(","):
                spec = {
                    "shape": shape,
                    "dtype": dtype,
                    "mode": mode,
                    "repeats": args.repeats,
                    "single_call": args.single_call,
                }
                print(f"{case} {dtype} {mode}", file=sys.stderr, flush=True)
                timed = [i for i in impls if i not in skip] if args.repeats else []
                row = {**spec, "time": {}, "memory": {}}
                if timed:
                    row["time"] = _spawn({**spec, "task": "time", "impls": timed})
                for impl in impls:
                    if impl not in skip and not args.no_memory:
                        row["memory"][impl] = _spawn({**spec, "task": "memory", "impls": [impl]})
                results.append(row)
                print(_table([row], impls, header=False), flush=True)
    return results


def _ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:.2f}" if num is not None and den else "—"


def _table(rows: list[dict], impls: list[str], header: bool = True) -> str:
    """Times, both memory figures per implementation, then the fused head's same-run ratios
    to TF's unfused head (and to XLA's time)."""
    lines = []
    if header:
        cols = [f"{i} time" for i in impls]
        cols += [f"{i} extra peak / beyond returned" for i in impls]
        cols += ["fused/tf time", "fused/xla time", "fused/tf beyond returned"]
        lines.append("| N×D×V | dtype | call | " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * (len(cols) + 3))
    for row in rows:
        med = row["time"].get("median", {})
        mem = row["memory"]

        def beyond(impl: str, mem: dict = mem) -> float | None:
            return mem.get(impl, {}).get("beyond_returned_bytes")

        times = [f"{med[i]:.3g} s" if i in med else "—" for i in impls]
        mems = [
            f"{_fmt_bytes(mem.get(i, {}).get('extra_bytes'))} / {_fmt_bytes(beyond(i))}"
            for i in impls
        ]
        ratios = [
            _ratio(med.get("tfxent"), med.get("tf")),
            _ratio(med.get("tfxent"), med.get("xla")),
            _ratio(beyond("tfxent"), beyond("tf")),
        ]
        shape = "×".join(map(str, row["shape"]))
        cells = [shape, row["dtype"], row["mode"], *times, *mems, *ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        with open(argv[1]) as fh:
            spec = json.load(fh)
        worker = _worker_time if spec["task"] == "time" else _worker_memory
        print(json.dumps(worker(spec)))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="2048x512x32000,4096x1024x128256,1024x2048x256000")
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--modes", default="fwdbwd,loss")
    p.add_argument("--impls", default="tf,tfxent,xla")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-memory-impls", default="")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument(
        "--single-call",
        action="store_true",
        help="memory from the first full-size call (for shapes too slow to call twice; "
        "no XLA compilation then, as XLA would compile inside the measured call)",
    )
    p.add_argument("--json")
    args = p.parse_args(argv)
    results = run(args)
    print(_table(results, args.impls.split(",")))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
