"""The compiler flags tfxent adds to TF's own: the one place that decides the op's instruction set.

Both ways of getting the op call `isa_flags()` and `optimisation_flags()`: the build on first
use (`_build_compile.plan`) and the wheel's prebuilt libraries (`_build_prebuilt.stage`), so a
prebuilt op and a locally compiled one are the same program and give the same bits
(docs/install.md, "Instruction sets").

The default is TF's own wheel's baseline on x86-64, AVX without FMA or AVX2: the instruction
set TF compiles its Eigen kernels for, so the vector width and rounding of tfxent's kernels
match TF's (docs/tf_behaviour.md#numerics). `TFXENT_ISA=native` builds for this machine's CPU
instead (`-march=native`): faster on AVX-512 hosts, never prebuilt, not bit-identical to TF.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess

from tfxent import _versions
from tfxent._build_cache import BuildError

# No -ffast-math: TF's NaN/inf results (docs/tf_behaviour.md#dense-values-and-broadcasting)
# depend on IEEE semantics.
# -ffp-contract=off: TF's kernels round a·b + c twice, so the compiler may not fuse them.
_COMMON_FLAGS = (
    "-O3",
    "-DNDEBUG",
    "-fPIC",
    "-Wno-deprecated-declarations",
    "-ffp-contract=off",
)
# TF's Linux x86-64 wheels build their kernels with -mavx (and no -mfma or -mavx2: measured in
# docs/exactness.md), which is also the least a CPU needs to run TF at all, so a library built
# for it runs wherever TF does, with Eigen's packets of TF's width and TF's rounding.
_AVX_ONLY = ("-mavx", "-mno-avx2", "-mno-fma")
_TF_BASELINE = {"x86_64": _AVX_ONLY, "AMD64": _AVX_ONLY}
_NATIVE = ("-march=native",)
# TF's bundled Eigen does not compile with AVX512-FP16 enabled (PacketMathFP16.h declares
# predux_half_dowto4 specialisations g++ 12 rejects), and the kernels widen f16 to f32 anyway,
# so where -march=native turns it on (Sapphire Rapids and later) the build turns it off.
_UNUSABLE_FEATURES = ("-mavx512fp16",)
ISA_CHOICES = ("tf", "native")
# Which of TF's kernel algorithms the op reproduces, where a TF version has its own: a
# `tfxent/_versions.py` key, and the macro tfxent/cc/xent_kernels.cc reads (not named TFXENT_*,
# the prefix of environment switches, tfxent/_env.py).
_KERNEL_VARIANTS = {"dense_kernel_row_loop": "XENT_DENSE_ROW_LOOP"}


def isa() -> str:
    """`TFXENT_ISA`: "tf" (the default, TF's own baseline, prebuilt in the wheel) or "native"."""
    value = os.environ.get("TFXENT_ISA", "").strip().lower() or "tf"
    if value not in ISA_CHOICES:
        raise BuildError(
            f"tfxent: TFXENT_ISA={value!r} is not supported; use 'tf' (the default) or 'native'."
        )
    return value


def isa_flags(choice: str | None = None) -> tuple[str, ...]:
    """The instruction-set flags for `choice` (default: `isa()`) on this machine's architecture."""
    if (choice or isa()) == "native":
        return _NATIVE
    return _TF_BASELINE.get(platform.machine(), ())


def target_features(compiler: str, flags: tuple[str, ...] | None = None) -> str:
    """The -m flags the compiler's front end gets for `flags` (default: `isa_flags()`): the CPU
    features the binary may use, which enter the cache key."""
    done = subprocess.run(
        [compiler, *(isa_flags() if flags is None else flags), "-E", "-v", "-"],
        input="",
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in done.stderr.splitlines() if "cc1" in ln]
    if not lines:
        return "unknown"
    return " ".join(tok for tok in shlex.split(lines[0]) if tok.startswith(("-m", "--param")))


def kernel_variant_flags(tf_version: str | None = None) -> tuple[str, ...]:
    """-D flags for the kernel algorithms of the installed TF (or `tf_version`) that differ
    from the other versions' (docs/exactness.md)."""
    return tuple(
        f"-D{macro}=1"
        for key, macro in _KERNEL_VARIANTS.items()
        if _versions.has(key, tf_version=tf_version)
    )


def optimisation_flags(features: str, flags: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The flags added to TF's own: the instruction set (default: `isa_flags()`), then the
    common ones and the installed TF's kernel variants, less the `features` TF's headers
    cannot be compiled with."""
    enabled = set(features.split())
    disabled = tuple("-mno-" + flag[2:] for flag in _UNUSABLE_FEATURES if flag in enabled)
    return (
        *(isa_flags() if flags is None else flags),
        *_COMMON_FLAGS,
        *kernel_variant_flags(),
        *disabled,
    )
