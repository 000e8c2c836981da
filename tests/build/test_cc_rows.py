"""The C++ row mathematics (tfxent/cc/xent_rows.h), unit-tested without TensorFlow ops.

Compiles tests/build/cc/test_xent_rows.cc with the flags the custom op is built with (TF's
compile flags, which carry the include directory holding Eigen, plus tfxent's own: -O3
-DNDEBUG -fPIC and the arithmetic flags of TF's wheel, `_build.arithmetic_flags`), runs it,
and requires exit status 0: a compile error or any failed check fails the test. It checks
xent_rows.h and xent_exact.h (the exact rows against Eigen's own tensor expressions). The
extra builds cover other code paths of the headers: -march=haswell and Eigen's scalar
fallback, which stands in for CPUs without a packet type.

The same binary times the row functions: `<binary> --bench` (not run here).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from tfxent import _build

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "tests" / "build" / "cc" / "test_xent_rows.cc"
LINK_FLAGS = ["-pthread"]  # the --bench mode runs threads


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _variants():
    yield pytest.param([], id="tf-wheel-isa")
    yield pytest.param(["-DEIGEN_DONT_VECTORIZE"], id="scalar", marks=pytest.mark.slow)
    cpu = _cpu_flags()
    if platform.machine() in ("x86_64", "AMD64") and {"avx512f", "avx2", "fma"} <= cpu:
        yield pytest.param(["-march=haswell"], id="avx2", marks=pytest.mark.slow)


@pytest.fixture(scope="module")
def compile_command() -> list[str]:
    import tensorflow as tf  # Eigen's headers ship inside TensorFlow

    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        pytest.fail(f"no C++ compiler {compiler!r} on PATH: install g++ or set CXX")
    native = _build.optimisation_flags(_build.target_features(compiler))
    return [compiler, *tf.sysconfig.get_compile_flags(), f"-I{REPO}", *native]


@pytest.mark.parametrize("extra_flags", list(_variants()))
def test_cc_row_functions(compile_command, extra_flags, tmp_path):
    binary = tmp_path / "test_xent_rows"
    # Later flags win, so a variant's -march overrides the wheel's -mavx.
    build = [*compile_command, *extra_flags, "-o", str(binary), str(SOURCE), *LINK_FLAGS]
    built = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, f"compilation failed:\n{' '.join(build)}\n{built.stderr[-8000:]}"

    ran = subprocess.run([str(binary)], capture_output=True, text=True, timeout=600)
    report = f"stdout:\n{ran.stdout[-4000:]}\nstderr:\n{ran.stderr[-8000:]}"
    assert ran.returncode == 0, f"C++ row checks failed (exit {ran.returncode}):\n{report}"
    assert "0 failures" in ran.stdout, report
