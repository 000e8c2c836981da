"""Rows, tables and the performance-target summary (docs/performance.md) of `tfxent bench`
(no TensorFlow here)."""

from __future__ import annotations

import math

from tfxent.bench import cases

MODE_LABEL = {"loss": "loss", "fwdbwd": "fwd+bwd"}
# Samples whose interquartile range exceeds this fraction of the median get a note: on a
# shared machine such a median depends on how many samples were descheduled.
NOISY = 0.5


def fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f}µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f}ms"
    return f"{seconds:.3f}s"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def machine_limits(meta: dict) -> dict:
    """BW_P, c_exp and the resident cache for the roofline: the faster of the worker's two
    measurements (start and end), so the roofline is never the flattering one."""
    runs = [meta[k] for k in ("machine_start", "machine_end") if meta.get(k)]
    return {
        "bw_bytes_per_s": max(r["bw_bytes_per_s"] for r in runs),
        "c_exp_ns": min(r["c_exp_ns"] for r in runs),
        "bw_inplace_bytes_per_s": max(r.get("bw_inplace_bytes_per_s", 0.0) for r in runs) or None,
        "bw_read_bytes_per_s": max(r.get("bw_read_bytes_per_s", 0.0) for r in runs) or None,
        # The larger measured cache: more shapes count as cache-resident, with no memory
        # term in their roofline.
        "cache_bytes": max(r["cache_bytes"] for r in runs),
        "method": runs[0]["method"],
    }


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def rows(groups: list[dict], metas: dict[int, dict]) -> list[dict]:
    """One row per (timing group, exec mode): tfxent and tf.nn in that mode, and XLA."""
    out = []
    for g in groups:
        p = g["threads"]
        limits = machine_limits(metas[p])
        roof = cases.roofline(
            g["kind"],
            g["mode"],
            g["n"],
            g["c"],
            g["dtype"],
            p,
            limits["bw_bytes_per_s"],
            limits["c_exp_ns"],
            limits["cache_bytes"],
        )
        variants = g["variants"]
        for ex in g["execs"]:
            names = {
                "tfxent": f"tfxent/{ex}",
                "tf.nn": f"tf.nn/{ex}",
                "xla": "xla",
                "floor": f"floor/{ex}",
            }
            times = {impl: variants.get(v, {}).get("median_s") for impl, v in names.items()}
            spread = {
                impl: (variants[v]["p75_s"] - variants[v]["p25_s"]) / variants[v]["median_s"]
                for impl, v in names.items()
                if variants.get(v, {}).get("median_s") and "p25_s" in variants[v]
            }
            errors = {
                impl: variants[v]["error"]
                for impl, v in names.items()
                if v in variants and variants[v].get("error")
            }
            out.append(
                {
                    "group": g["group"],
                    "shape": [g["n"], g["c"]],
                    "kind": g["kind"],
                    "mode": g["mode"],
                    "exec": ex,
                    "dtype": g["dtype"],
                    "threads": p,
                    "tfxent_s": times["tfxent"],
                    "tf_nn_s": times["tf.nn"],
                    "xla_s": times["xla"],
                    "speedup_vs_tf_nn": _ratio(times["tf.nn"], times["tfxent"]),
                    "speedup_vs_xla": _ratio(times["xla"], times["tfxent"]),
                    "floor_s": times["floor"],
                    "roofline": roof,
                    "fraction_of_roofline": {
                        impl: _ratio(roof["t_roof_s"], times[impl])
                        for impl in ("tfxent", "tf.nn", "xla")
                    },
                    "errors": errors,
                    "spread": spread,
                    "op_verified": bool(g["op_check"].get("verified")),
                    "reps": g["reps"],
                }
            )
    return out


COLUMNS = (
    ("group", "<", 14),
    ("shape", ">", 13),
    ("kind", "<", 6),
    ("mode", "<", 7),
    ("exec", "<", 8),
    ("dtype", "<", 5),
    ("thr", ">", 3),
    ("tfxent", ">", 9),
    ("tf.nn", ">", 9),
    ("xla", ">", 9),
    ("nn/tfx", ">", 7),
    ("xla/tfx", ">", 7),
    ("floor", ">", 9),
    ("roof", ">", 9),
    ("bound", "<", 5),
    ("frac", ">", 5),
    ("note", "<", 0),
)


def _cells(r: dict) -> list[str]:
    frac = r["fraction_of_roofline"]["tfxent"]
    notes = [f"{impl}: {msg}" for impl, msg in r["errors"].items()]
    noisy = [f"{impl} {v:.1f}" for impl, v in r.get("spread", {}).items() if v > NOISY]
    if noisy:
        notes.insert(0, "noisy: IQR/median " + ", ".join(noisy))
    if not r["op_verified"]:
        notes.insert(0, "OP NOT VERIFIED")
    return [
        r["group"],
        "x".join(str(d) for d in r["shape"]),
        r["kind"],
        MODE_LABEL[r["mode"]],
        r["exec"],
        r["dtype"],
        str(r["threads"]),
        fmt_time(r["tfxent_s"]),
        fmt_time(r["tf_nn_s"]),
        fmt_time(r["xla_s"]),
        fmt_ratio(r["speedup_vs_tf_nn"]),
        fmt_ratio(r["speedup_vs_xla"]),
        fmt_time(r.get("floor_s")),
        fmt_time(r["roofline"]["t_roof_s"]),
        r["roofline"]["bound"],
        "—" if frac is None else f"{frac:.2f}",
        "; ".join(notes)[:90],
    ]


def _line(cells: list[str]) -> str:
    parts = [
        f"{cell:{align}{width}}" for cell, (_, align, width) in zip(cells, COLUMNS, strict=True)
    ]
    return "  ".join(parts).rstrip()


def table(rs: list[dict]) -> str:
    lines = [_line([name for name, _, _ in COLUMNS])]
    lines.append(_line(["-" * max(w, len(n)) for n, _, w in COLUMNS]))
    for r in rs:
        lines.append(_line(_cells(r)))
    return "\n".join(lines)


def memory_table(results: list[dict]) -> str:
    head = (
        f"{'shape':>13}  {'dtype':<5}  {'kind':<6}  {'mode':<7}  {'impl':<6}  "
        f"{'extra peak':>11}  {'x [N,C]':>7}"
    )
    lines = [head, "-" * len(head)]
    for m in results:
        c = m["case"]
        if m.get("error") or m.get("extra_bytes") is None:
            extra, units = "—", (m.get("error") or m.get("method", ""))[:60]
        else:
            extra = fmt_bytes(m["extra_bytes"])
            units = "—" if m["extra_nc_units"] is None else f"{m['extra_nc_units']:.2f}"
        shape = f"{c['n']}x{c['c']}"
        lines.append(
            f"{shape:>13}  {c['dtype']:<5}  {c['kind']:<6}  {MODE_LABEL[c['mode']]:<7}  "
            f"{c['impl']:<6}  {extra:>11}  {units:>7}"
        )
    return "\n".join(lines)


def _worst(values: list[tuple[float, str]], lowest: bool = True) -> tuple[float, str] | None:
    values = [v for v in values if v[0] is not None]
    if not values:
        return None
    return min(values) if lowest else max(values)


def _label(r: dict) -> str:
    return (
        f"{'x'.join(map(str, r['shape']))} {r['kind']} {MODE_LABEL[r['mode']]} {r['exec']}"
        f" {r['dtype']}"
    )


def targets(rs: list[dict], memory: list[dict]) -> list[tuple[str, str, str]]:
    """The performance targets (docs/performance.md) at the largest thread count measured:
    (target, worst case, status)."""
    if not rs:
        return []
    p = max(r["threads"] for r in rs)
    at_p = [r for r in rs if r["threads"] == p]
    f32 = [r for r in at_p if r["dtype"] == "f32"]
    mem = [r for r in f32 if r["group"] == "memory-bound"]
    out: list[tuple[str, str, str]] = []

    def check(
        name: str,
        candidates: list[tuple[float, str]],
        bound: float,
        lowest: bool = True,
    ):
        worst = _worst(candidates, lowest)
        if worst is None:
            return
        value, where = worst
        ok = value >= bound if lowest else value <= bound
        out.append((name, f"{value:.2f} ({where})", "met" if ok else "MISSED"))

    check(
        f"memory-bound, fraction of roofline >= 0.7 ({p} thr)",
        [(r["fraction_of_roofline"]["tfxent"], _label(r)) for r in mem],
        0.7,
    )
    for mode, nn, xla in (("fwdbwd", 3.0, 1.5), ("loss", 6.0, 3.0)):
        sel = [r for r in mem if r["mode"] == mode]
        check(
            f"memory-bound {MODE_LABEL[mode]}: >= {nn:g}x tf.nn",
            [(r["speedup_vs_tf_nn"], _label(r)) for r in sel],
            nn,
        )
        check(
            f"memory-bound {MODE_LABEL[mode]}: >= {xla:g}x XLA",
            [(r["speedup_vs_xla"], _label(r)) for r in sel],
            xla,
        )
    cache = [r for r in f32 if r["group"] == "cache-resident"]
    check(
        "cache-resident: >= 2x tf.nn",
        [(r["speedup_vs_tf_nn"], _label(r)) for r in cache],
        2.0,
    )
    check(
        "overhead-bound eager: time <= 1.2x tf.nn",
        [
            (_ratio(r["tfxent_s"], r["tf_nn_s"]), _label(r))
            for r in f32
            if r["group"] == "overhead-bound" and r["exec"] == "eager"
        ],
        1.2,
        lowest=False,
    )
    f32_speedup = {
        (tuple(r["shape"]), r["kind"], r["mode"], r["exec"]): r["speedup_vs_tf_nn"] for r in mem
    }
    narrow = []
    for r in at_p:
        if r["dtype"] == "f32" or r["group"] != "memory-bound":
            continue
        base = f32_speedup.get((tuple(r["shape"]), r["kind"], r["mode"], r["exec"]))
        narrow.append((_ratio(r["speedup_vs_tf_nn"], base), _label(r)))
    check("bf16/f16 memory-bound: speed-up vs tf.nn >= f32's (ratio >= 1)", narrow, 1.0)
    # fwd+bwd: one [N, C] block, counted at the allocator's chunk size (a few per cent more).
    for mode, bound in (("loss", 0.05), ("fwdbwd", 1.10)):
        sel = [
            (m["extra_nc_units"], f"{m['case']['n']}x{m['case']['c']} {m['case']['kind']}")
            for m in memory
            if m["case"]["impl"] == "tfxent"
            and m["case"]["mode"] == mode
            and m.get("extra_nc_units") is not None
        ]
        want = "no [N,C] term (< 0.05)" if mode == "loss" else "one [N,C] (<= 1.10)"
        check(f"extra peak memory, {MODE_LABEL[mode]}: {want}", sel, bound, lowest=False)
    return out


def targets_table(items: list[tuple[str, str, str]]) -> str:
    if not items:
        return "(no targets apply to the selected cases)"
    width = max(len(name) for name, _, _ in items)
    return "\n".join(
        f"{name:<{width}}  {status:<6}  worst: {worst}" for name, worst, status in items
    )
