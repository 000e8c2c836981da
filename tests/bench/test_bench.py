"""`python -m tfxent bench`: the harness runs end to end and reports what it promises.

No timing assertions: performance lives in the benchmark's output, not in tests. These tests
check the plan, the roofline arithmetic, and that one tiny run produces a complete JSON
report in which every implementation ran and produced a finite time.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from conftest_helpers import REPO, child_env

from tfxent import _op_names
from tfxent.bench import cases, report

IMPLS = ("tfxent_s", "tf_nn_s", "xla_s")


def test_shape_groups_are_performance_md_table():
    assert cases.GROUPS["memory-bound"] == [
        (2048, 30522),
        (8192, 32000),
        (8192, 50257),
        (4096, 128256),
        (2048, 256000),
    ]
    shapes = cases.parse_shapes("overhead,8192x32000,memory")
    assert shapes[0] == ("overhead-bound", (32, 10))
    assert ("memory-bound", (8192, 32000)) in shapes
    assert len({s for _, s in shapes}) == len(shapes), "duplicates are dropped"
    assert cases.parse_shapes("16x10") == [(cases.CUSTOM, (16, 10))]
    with pytest.raises(ValueError, match="unknown shape"):
        cases.parse_shapes("bogus")


def test_plan_runs_narrow_dtypes_only_on_memory_bound_and_custom_shapes():
    shapes = cases.parse_shapes("cache,2048x30522,7x9")
    groups = cases.plan_groups(
        shapes, ["dense", "sparse"], ["loss", "fwdbwd"], ["eager"], ["f32", "bf16"], False
    )
    narrow = {(g.n, g.c) for g in groups if g.dtype == "bf16"}
    assert narrow == {(2048, 30522), (7, 9)}
    assert len([g for g in groups if g.dtype == "f32"]) == 4 * 4


def test_quick_plan_includes_the_headline_shape_dense_and_sparse():
    assert ("memory-bound", (8192, 32000)) in cases.QUICK_SHAPES


def test_min_bytes_follow_performance_md_and_scale_with_element_size():
    n, c = 10, 100
    assert cases.min_bytes("sparse", "loss", n, c, "f32") == 4 * n * c
    assert cases.min_bytes("dense", "loss", n, c, "f32") == 8 * n * c
    assert cases.min_bytes("sparse", "fwdbwd", n, c, "f32") == 12 * n * c
    assert cases.min_bytes("dense", "fwdbwd", n, c, "f32") == 20 * n * c
    assert cases.min_bytes("dense", "fwdbwd", n, c, "bf16") == 10 * n * c


def test_roofline_is_the_larger_of_memory_and_exp_time():
    n, c, bw, c_exp = 8192, 32000, 40e9, 0.24
    r = cases.roofline("dense", "fwdbwd", n, c, "f32", 2, bw, c_exp, cache_bytes=32 << 20)
    assert r["t_mem_s"] == pytest.approx(20 * n * c / bw)
    assert r["t_cmp_s"] == pytest.approx(n * c * c_exp * 1e-9 / 2)
    assert r["t_roof_s"] == max(r["t_mem_s"], r["t_cmp_s"])
    assert r["bound"] == "mem"
    small = cases.roofline("dense", "loss", 128, 1000, "f32", 2, bw, c_exp, cache_bytes=32 << 20)
    assert small["t_mem_s"] == 0.0 and small["bound"] == "cache"


def _cache_row(exec_mode: str, speedup: float) -> dict:
    return {
        "group": "cache-resident", "shape": [128, 1000], "kind": "dense", "mode": "fwdbwd",
        "exec": exec_mode, "dtype": "f32", "threads": 2, "speedup_vs_tf_nn": speedup,
        "tfxent_s": 1.0, "tf_nn_s": speedup,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "status", "worst"),
    [
        ([_cache_row("eager", 3.0), _cache_row("function", 2.1)], "met", "2.10"),
        ([_cache_row("eager", 3.0), _cache_row("function", 1.7)], "MISSED", "1.70"),
        ([_cache_row("eager", 1.5), _cache_row("function", 1.7)], "MISSED", "1.50"),
    ],
)
def test_cache_resident_target_reports_its_worst_case(rows, status, worst):
    (cache,) = [t for t in report.targets(rows, []) if t[0].startswith("cache-resident")]
    assert cache[2] == status and cache[1].startswith(worst), cache


@pytest.mark.slow
def test_tiny_run_writes_a_complete_json_report(tmp_path):
    out = tmp_path / "bench.json"
    options = {
        "--shapes": "8x16",
        "--threads": "1",
        "--dtypes": "f32",
        "--min-reps": "2",
        "--max-reps": "3",
        "--target-s": "0.05",
        "--min-sample-ms": "1",
        "--memory-shapes": "8x16:f32",
        "--memory-impls": "tfxent",
        "--memory-jobs": "4",
        "--json": str(out),
    }
    argv = [sys.executable, "-m", "tfxent", "bench"]
    for option, value in options.items():
        argv += [option, value]
    done = subprocess.run(
        argv, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nn/tfx" in done.stdout and "custom op: verified" in done.stdout
    results = json.loads(out.read_text())
    assert results["failures"] == []

    meta = results["meta"]["1"]
    assert meta["intra_op_threads"] == 1
    for when in ("machine_start", "machine_end"):
        assert meta[when]["bw_bytes_per_s"] > 0 and meta[when]["c_exp_ns"] > 0
        # Measured by limits.cc with the kernels' exp, not by the TF-ops fallback.
        assert meta[when]["method"].startswith("limits.cc"), meta[when]["method"]
        # Measured, a power of two from 1 MiB, or 0 when even 1 MiB streams from memory.
        cache = meta[when]["cache_bytes"]
        assert cache <= meta["llc_bytes"] and (cache == 0 or cache.bit_count() == 1), meta

    rows = results["rows"]
    seen = {(r["kind"], r["mode"], r["exec"]) for r in rows}
    assert seen == {(k, m, e) for k in cases.KINDS for m in cases.MODES for e in cases.EXECS}
    for r in rows:
        assert r["shape"] == [8, 16] and r["threads"] == 1 and r["op_verified"], r
        for impl in IMPLS:
            assert math.isfinite(r[impl]) and r[impl] > 0, (impl, r)
        assert math.isfinite(r["speedup_vs_tf_nn"]) and math.isfinite(r["speedup_vs_xla"])
        assert r["roofline"]["t_roof_s"] > 0
        assert set(r["fraction_of_roofline"]) == {"tfxent", "tf.nn", "xla"}
        # Shapes other than memory-bound ones time the call floor beside the three.
        assert math.isfinite(r["floor_s"]) and r["floor_s"] > 0, r

    for g in results["groups"]:
        expected = _op_names.DENSE if g["kind"] == "dense" else _op_names.SPARSE
        assert expected in g["op_check"]["tfxent_graph_ops"]
        assert g["op_check"]["choose"] == "custom-op"
        for variant in g["variants"].values():
            assert variant["error"] is None
            assert len(variant["samples_s"]) >= 2

    memory = results["memory"]
    assert {(m["case"]["kind"], m["case"]["mode"]) for m in memory} == {
        (k, m) for k in cases.KINDS for m in cases.MODES
    }
    for m in memory:
        assert m["case"]["impl"] == "tfxent" and m["backend"] == "custom-op"
        assert m["extra_bytes"] is not None and math.isfinite(m["extra_nc_units"])
