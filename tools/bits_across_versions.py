"""Are tfxent's results the same bits on every TF version where TF's own results are?

tfxent compiles its op against each installed TF's headers (docs/exactness.md). This tool
records, on one TF, a fingerprint (SHA-256 of the raw bytes) of every result of a fixed set
of calls — tfxent's and `tf.nn`'s, loss and logits gradient, dense and sparse, the four
float dtypes, determinism off and on, rows short, ragged and longer than Eigen's reducer
leaf — and compares the fingerprints recorded on two versions:

    python -m tools.bits_across_versions --write compat/bits/tf2.21.json   # in each env
    python -m tools.bits_across_versions --compare compat/bits/tf2.12.json compat/bits/tf2.21.json

The comparison counts, per array, whether TF's bits are the same on both versions and
whether tfxent's are; tfxent passes when its bits change only where TF's change, and when on
each version they equal that version's TF. The inputs come from a seeded NumPy generator, so
every version sees the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

# (name, sparse, rows, classes): packet-width tails, a row past the 1024-packet leaf of
# Eigen's sum reducer, and rows longer than 8192 float32 classes, where TF 2.12's and 2.21's
# own dense kernels round differently (docs/exactness.md).
SHAPES = (
    ("small", False, 7, 13),
    ("ragged", False, 33, 1003),
    ("long", False, 4, 9001),
    ("sparse_small", True, 7, 13),
    ("sparse_ragged", True, 33, 1003),
    ("sparse_long", True, 4, 9001),
)
DTYPES = ("float16", "bfloat16", "float32", "float64")


def _inputs(sparse: bool, rows: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((rows, classes)) * 3.0
    if sparse:
        return rng.integers(0, classes, rows).astype(np.int32), logits
    labels = rng.random((rows, classes))
    return labels / labels.sum(axis=1, keepdims=True), logits


def _results(fn, labels, logits) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = fn(labels=labels, logits=logits)
    return loss.numpy(), tape.gradient(loss, logits).numpy()


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def record() -> dict:
    """Fingerprints of every array, keyed "<shape>/<dtype>/<determinism>/<side>/<value>"."""
    import tensorflow as tf

    import tfxent
    from tfxent.parity.calls import determinism

    sides = {
        False: {"tf": tf.nn.softmax_cross_entropy_with_logits,
                "tfxent": tfxent.nn.softmax_cross_entropy_with_logits},
        True: {"tf": tf.nn.sparse_softmax_cross_entropy_with_logits,
               "tfxent": tfxent.nn.sparse_softmax_cross_entropy_with_logits},
    }  # fmt: skip
    arrays: dict[str, str] = {}
    for seed, (name, sparse, rows, classes) in enumerate(SHAPES):
        labels, logits = _inputs(sparse, rows, classes, seed)
        for dtype in DTYPES:
            x = tf.constant(logits, dtype)
            y = tf.constant(labels) if sparse else tf.constant(labels, dtype)
            for deterministic in (False, True):
                mode = "determinism" if deterministic else "kernel"
                for side, fn in sides[sparse].items():
                    with determinism(deterministic):
                        loss, grad = _results(fn, y, x)
                    arrays[f"{name}/{dtype}/{mode}/{side}/loss"] = _digest(loss)
                    arrays[f"{name}/{dtype}/{mode}/{side}/grad"] = _digest(grad)
    return {"tensorflow": tf.__version__, "tfxent": tfxent.__version__, "arrays": arrays}


def compare(a: dict, b: dict) -> tuple[list[str], bool]:
    """Report lines and whether tfxent's bits moved only where TF's did, and equal TF's."""
    keys = sorted(k.replace("/tfxent/", "/{}/") for k in a["arrays"] if "/tfxent/" in k)
    tf_same = ours_same = ours_is_tf = 0
    problems = []
    for key in keys:
        tf_key, ours_key = key.format("tf"), key.format("tfxent")
        tf_stable = a["arrays"][tf_key] == b["arrays"][tf_key]
        ours_stable = a["arrays"][ours_key] == b["arrays"][ours_key]
        equal_tf = all(run["arrays"][ours_key] == run["arrays"][tf_key] for run in (a, b))
        tf_same += tf_stable
        ours_same += ours_stable
        ours_is_tf += equal_tf
        if tf_stable != ours_stable or not equal_tf:
            problems.append(f"  {key.format('*')}: TF same {tf_stable}, tfxent same "
                            f"{ours_stable}, tfxent == TF on each version {equal_tf}")  # fmt: skip
    va, vb = a["tensorflow"], b["tensorflow"]
    lines = [
        f"{len(keys)} arrays, TF {va} vs TF {vb}:",
        f"  TF's own results identical across the two versions: {tf_same}/{len(keys)}",
        f"  tfxent's results identical across its two builds:    {ours_same}/{len(keys)}",
        f"  tfxent bit-identical to the installed TF on both:     {ours_is_tf}/{len(keys)}",
        *problems,
    ]
    return lines, not problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="FILE", help="record this TF's fingerprints")
    action.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two records")
    args = parser.parse_args(argv)
    if args.write:
        path = Path(args.write)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")
        return 0
    a, b = (json.loads(Path(p).read_text()) for p in args.compare)
    lines, ok = compare(a, b)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
