"""`python -m tfxent bench`: the command line of the benchmark (tfxent/bench/)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Benchmark tfxent against tf.nn and tf.nn under XLA, near the roofline

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
read-only pass are shown beside it. c_exp: ns per element of `s += exp(x - m)` over an
L2-resident array on one thread, with the kernels' own exp (tfxent/cc/xent_rows.h).
Resident cache: the largest array (1 MiB, 2 MiB, ... up to the last-level cache in sysfs)
that one thread re-reads >= 1.25x faster than it streams 1 GiB; a virtual machine's sysfs
shows the host's whole shared cache, which its calls cannot count on. All three come from
tfxent/bench/limits.cc, compiled at the start of the run with the custom op's compiler and
flags, and are measured at the start and the end of each worker; the roofline uses the
faster of the two and the larger cache (never the flattering one). Without a compiler BW_P
and c_exp fall back to TF ops and the resident cache to the size in sysfs. The header
shows them with the TF version, the CPU, the load average, the op library and whether the
custom op verifiably ran (op types in the traced graphs, tfxent's backend choice in eager
calls).

Extra peak memory: in a fresh process per case, after a tiny warm-up and one full-size
call, TF's CPU allocator statistics over one more call: peak minus current bytes in use,
also in units of N·C·sizeof(dtype). (The process RSS cannot see buffers the allocator
reuses from its pool; the statistics count each block at the allocator's chunk size, a
few per cent above the request for the blocks measured here.)

The targets summary checks the performance targets (docs/performance.md) at the largest
thread count measured.
Timings are never test assertions; on a shared machine only same-run ratios mean anything.
Exit status: 0 OK; 1 a worker failed, the custom op did not run, or tfxent failed where
tf.nn did not; 2 usage error or interrupted.
"""


SUITES = ("xent", "dp-sgd", "fused-head")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--suite",
        choices=SUITES,
        default="xent",
        help="xent (default): the cross-entropy functions against tf.nn and XLA; dp-sgd: "
        "per-example losses and gradients through vectorized_map, [256, 10000], and a small "
        "classifier's whole per-example step; fused-head: the fused linear + cross-entropy "
        "head against tf.matmul + tf.nn and XLA (time and extra peak memory; --shapes takes "
        "NxDxV, --dtypes f32,bf16, --modes, --json apply)",
    )
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


def run(args: argparse.Namespace) -> int:
    if args.suite == "dp-sgd":
        from tfxent.bench import dp_sgd

        return dp_sgd.main(args.json)
    if args.suite == "fused-head":
        from tfxent.bench import fused_head

        argv = [f"--{name}={value}" for name, value in _fused_options(args).items()]
        return fused_head.main(argv)
    from tfxent.bench import driver

    return driver.run(args)


def _fused_options(args: argparse.Namespace) -> dict[str, str]:
    """The fused-head suite's options, from the ones this command shares with it."""
    options = {}
    if args.shapes:
        options["cases"] = args.shapes
    if args.dtypes:
        options["dtypes"] = args.dtypes
    if args.modes != "loss,fwdbwd":
        options["modes"] = args.modes
    if args.json:
        options["json"] = args.json
    return options
