"""Run legacy programs unmodified, on TensorFlow alone or under `tfxent.patch()`.

    python run.py {tf,patch,strict} OUTDIR PROGRAM.py [ARGS...] [--then PROGRAM.py [ARGS...]]...

`tf` never imports tfxent; `patch` and `strict` call `tfxent.patch(strict=...)` before the
first program imports TensorFlow. Each program runs as `__main__` with its own arguments plus
`--out OUTDIR/run<i>.npz`, on a fresh default graph. The op types of that graph go to
OUTDIR/run<i>.json, so a test can see which kernel computed the losses. Several programs
share one process only to pay for TF's import once.
"""

import json
import os
import runpy
import sys

mode, outdir, *rest = sys.argv[1:]
if mode != "tf":
    from tfxent.patch import patch

    patch(strict=mode == "strict")

runs, current = [], []
for arg in rest:
    if arg == "--then":
        runs.append(current)
        current = []
    else:
        current.append(arg)
runs.append(current)

for index, (program, *args) in enumerate(runs):
    out = os.path.join(outdir, f"run{index}.npz")
    sys.argv = [program, *args, "--out", out]
    runpy.run_path(program, run_name="__main__")

    import tensorflow as tf  # the program has configured TF by now

    graph = tf.compat.v1.get_default_graph()
    report = {
        "op_types": sorted({op.type for op in graph.get_operations()}),
        "tfxent_imported": "tfxent" in sys.modules,
        "eager": tf.executing_eagerly(),
    }
    with open(os.path.join(outdir, f"run{index}.json"), "w") as file:
        json.dump(report, file)
    tf.compat.v1.reset_default_graph()
