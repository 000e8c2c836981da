"""What `tfxent bench` measures: docs/performance.md's shapes, the case plan, the roofline.

No TensorFlow here: the parent process plans and reports; workers import TF.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

# docs/performance.md, "Shapes". Group keys are what --shapes accepts (with the aliases below).
GROUPS: dict[str, list[tuple[int, int]]] = {
    "overhead-bound": [(32, 10), (256, 10), (128, 100)],
    "cache-resident": [(128, 1000), (1024, 1000)],
    "few-rows": [(64, 10000), (8, 1000000)],
    "memory-bound": [(2048, 30522), (8192, 32000), (8192, 50257), (4096, 128256), (2048, 256000)],
    "edge": [(1, 1000000), (100000, 2), (1000, 1001), (1000, 32001), (0, 1000), (1000, 0)],
}
GROUP_ALIASES = {
    "overhead": "overhead-bound",
    "cache": "cache-resident",
    "few": "few-rows",
    "huge-c": "few-rows",
    "memory": "memory-bound",
    "mem": "memory-bound",
    "edges": "edge",
}
# Custom shapes given as NxC on the command line.
CUSTOM = "custom"

KINDS = ("dense", "sparse")
MODES = ("loss", "fwdbwd")
MODE_ALIASES = {"fwd+bwd": "fwdbwd", "grad": "fwdbwd", "loss-only": "loss"}
EXECS = ("eager", "function")
DTYPES = ("f32", "bf16", "f16")
DTYPE_ALIASES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "half": "f16"}
ITEMSIZE = {"f32": 4, "bf16": 2, "f16": 2}
TF_DTYPE = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}

# docs/performance.md, "The physical limit": minimum bytes per element of [N, C] for f32.
MIN_BYTES_PER_ELEMENT_F32 = {
    ("sparse", "loss"): 4,
    ("dense", "loss"): 8,
    ("sparse", "fwdbwd"): 12,
    ("dense", "fwdbwd"): 20,
}

QUICK_SHAPES = [
    ("overhead-bound", (128, 100)),
    ("cache-resident", (1024, 1000)),
    ("few-rows", (8, 1000000)),
    ("memory-bound", (8192, 32000)),
]
# Memory is measured per case in a fresh process: a few large shapes are enough to tell an
# [N, C] term from an O(N) one. (shape, dtype, implementations)
ALL_IMPLS = ("tfxent", "tf.nn", "xla")
MEMORY_FULL = [
    ((8192, 32000), "f32", ALL_IMPLS),
    ((4096, 128256), "f32", ("tfxent",)),
    ((8192, 32000), "bf16", ("tfxent", "tf.nn")),
]
MEMORY_QUICK = [((8192, 32000), "f32", ("tfxent",))]


def all_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache (Linux sysfs), or 32 MiB when it cannot be read."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            try:
                with open(os.path.join(base, entry, "size")) as fh:
                    text = fh.read().strip()
            except OSError:
                continue
            unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            number = text[:-1] if text[-1:] in "KMG" else text
            best = max(best, int(number) * unit)
    except (OSError, ValueError):
        pass
    return best or 32 << 20


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cpu_simd() -> str:
    """The widest x86 vector extension the CPU reports (for the header)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((ln.split(":", 1)[1].split() for ln in fh if ln.startswith("flags")), [])
    except OSError:
        return "unknown"
    for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse2", "SSE2")):
        if flag in flags:
            return name
    return "unknown"


@dataclass(frozen=True)
class Group:
    """One timing group: all variants (tfxent / tf.nn in each exec mode, and XLA) of one
    case, interleaved on the same tensors in one worker."""

    group: str
    n: int
    c: int
    kind: str
    mode: str
    dtype: str
    execs: tuple[str, ...]

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MemoryCase:
    n: int
    c: int
    kind: str
    mode: str
    dtype: str
    impl: str  # "tfxent", "tf.nn" or "xla"


def _split(text: str) -> list[str]:
    return [tok.strip() for tok in text.split(",") if tok.strip()]


def parse_choice(text: str, allowed: tuple[str, ...], aliases: dict[str, str], what: str):
    chosen = []
    for tok in _split(text.lower()):
        tok = aliases.get(tok, tok)
        if tok not in allowed:
            raise ValueError(f"unknown {what} {tok!r}; choose from {', '.join(allowed)}")
        if tok not in chosen:
            chosen.append(tok)
    if not chosen:
        raise ValueError(f"no {what} selected")
    return chosen


def parse_shapes(text: str) -> list[tuple[str, tuple[int, int]]]:
    """Group names (or aliases) and NxC shapes, comma-separated, in the order given."""
    out: list[tuple[str, tuple[int, int]]] = []
    for tok in _split(text.lower()):
        name = GROUP_ALIASES.get(tok, tok)
        if name in GROUPS:
            out.extend((name, shape) for shape in GROUPS[name])
            continue
        parts = tok.replace("[", "").replace("]", "").replace("*", "x").split("x")
        try:
            n, c = (int(float(p)) for p in parts)
        except ValueError:
            raise ValueError(
                f"unknown shape {tok!r}: give a group ({', '.join(GROUPS)}) or NxC, e.g. 8192x32000"
            ) from None
        if n < 0 or c < 0:
            raise ValueError(f"negative shape {tok!r}")
        named = next((g for g, shapes in GROUPS.items() if (n, c) in shapes), CUSTOM)
        out.append((named, (n, c)))
    seen: set[tuple[int, int]] = set()
    unique = []
    for group, shape in out:
        if shape not in seen:
            seen.add(shape)
            unique.append((group, shape))
    if not unique:
        raise ValueError("no shapes selected")
    return unique


def parse_threads(text: str) -> list[int]:
    out = []
    for tok in _split(text.lower()):
        value = all_threads() if tok in ("all", "max") else int(tok)
        if value < 1:
            raise ValueError(f"thread count must be >= 1, got {tok!r}")
        if value not in out:
            out.append(value)
    if not out:
        raise ValueError("no thread counts selected")
    return out


def plan_groups(
    shapes: list[tuple[str, tuple[int, int]]],
    kinds: list[str],
    modes: list[str],
    execs: list[str],
    dtypes: list[str],
    narrow_everywhere: bool,
) -> list[Group]:
    """Every (shape, dtype, kind, mode) to time, in shape order (tensors are reused).

    2-byte dtypes run on memory-bound and custom shapes (docs/performance.md), or on every shape
    when `narrow_everywhere`."""
    groups = []
    for group, (n, c) in shapes:
        for dtype in dtypes:
            if dtype != "f32" and not (narrow_everywhere or group in ("memory-bound", CUSTOM)):
                continue
            for kind in kinds:
                for mode in modes:
                    groups.append(Group(group, n, c, kind, mode, dtype, tuple(execs)))
    return groups


def min_bytes(kind: str, mode: str, n: int, c: int, dtype: str) -> int:
    """docs/performance.md's minimum bytes per call, scaled by the element size."""
    return MIN_BYTES_PER_ELEMENT_F32[(kind, mode)] * n * c * ITEMSIZE[dtype] // 4


def roofline(
    kind: str,
    mode: str,
    n: int,
    c: int,
    dtype: str,
    threads: int,
    bw_bytes_per_s: float,
    c_exp_ns: float,
    cache_bytes: int,
) -> dict:
    """docs/performance.md: T_roof = max(T_mem, T_cmp), T_mem = Bytes_min / BW_P (logits larger
    than the resident cache; 0 otherwise), T_cmp = N·C·c_exp / P."""
    nbytes = min_bytes(kind, mode, n, c, dtype)
    in_cache = n * c * ITEMSIZE[dtype] <= cache_bytes
    t_mem = 0.0 if in_cache else nbytes / bw_bytes_per_s
    t_cmp = n * c * c_exp_ns * 1e-9 / threads
    return {
        "bytes_min": nbytes,
        "t_mem_s": t_mem,
        "t_cmp_s": t_cmp,
        "t_roof_s": max(t_mem, t_cmp),
        "bound": "mem" if t_mem >= t_cmp else ("cache" if in_cache else "exp"),
    }
