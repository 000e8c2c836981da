"""The built wheel where there is no compiler: the prebuilt op loads, and the ladder says why.

The module builds a wheel the way `./dev wheel` does, for the TF running the tests only
(tools/wheel.py stage + build, without auditwheel), and installs it with pip into a fresh
virtual environment. That environment does not get its own copy of TensorFlow: a .pth file
puts the test environment's site-packages (TF and tfxent's dependencies) after its own, which
saves installing 1.5 GB per run while tfxent itself comes only from the wheel (each test
checks the path it loaded from). Its PATH holds nothing but the environment's bin/, so no
C++ compiler, and CXX names a program that fails.

The rungs below the prebuilt one compile with a stand-in compiler that copies the library
this run built (conftest_helpers.fake_compiler): the ladder's decisions are under test here;
real compiles are tested by every other test run, which builds the op on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest
import tensorflow as tf
from conftest_helpers import REPO, compiles, fake_compiler, good_library

pytestmark = pytest.mark.slow

_MINOR = f"tf{'.'.join(tf.__version__.split('.')[:2])}"


class Venv:
    def __init__(self, root: Path, site: Path, failing_cxx: Path):
        self.root, self.site, self.failing_cxx = root, site, failing_cxx
        self.python = root / "bin" / "python"
        self.prebuilt = site / "tfxent" / "_prebuilt" / _MINOR
        # The stand-in compiler's shell needs cp and sleep; nothing else is on PATH.
        self.tools = root.parent / "tools"
        self.tools.mkdir(exist_ok=True)
        for name in ("cp", "sleep"):
            (self.tools / name).symlink_to(shutil.which(name))
        self.path = os.pathsep.join([str(root / "bin"), str(self.tools)])

    def run(self, *args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
        """`python -m tfxent ARGS` in the venv: no compiler on PATH, CXX failing, an empty
        cache, and no PYTHONPATH (tfxent can only come from the wheel)."""
        cache = self.root.parent / f"cache-{time.monotonic_ns()}"
        base = {
            "PATH": self.path,
            "HOME": str(self.root.parent),
            "CXX": str(self.failing_cxx),
            "TFXENT_CACHE_DIR": str(cache),
            "TFXENT_REQUIRE_OP": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        return subprocess.run(
            [str(self.python), "-m", "tfxent", *args],
            cwd=self.root.parent,
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def doctor(self, **env: str) -> tuple[dict, subprocess.CompletedProcess]:
        done = self.run("doctor", "--json", **env)
        start = done.stdout.find("{")
        assert start >= 0, f"no report:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        return json.loads(done.stdout[start:]), done


@pytest.fixture(scope="module")
def timings() -> dict[str, float]:
    """Seconds per step, printed at the end of the module (the CI budget cares)."""
    spent: dict[str, float] = {}
    yield spent
    print("\nwheel install test, seconds per step:", json.dumps(spent))


def _step(timings: dict, name: str, command: list[str], **kwargs) -> None:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    timings[name] = round(time.monotonic() - started, 1)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


@pytest.fixture(scope="module")
def venv(tmp_path_factory, timings) -> Venv:
    work = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    tool = str(REPO / "tools" / "wheel.py")
    _step(timings, "stage", [sys.executable, tool, "stage", "--out", str(work / "pre")], env=env)
    build = [sys.executable, tool, "build", "--prebuilt", str(work / "pre")]
    _step(timings, "build", [*build, "--dist", str(work / "dist"), "--no-repair", "--no-sdist"])
    (wheel,) = (work / "dist").glob("tfxent-*.whl")
    assert "linux_x86_64" in wheel.name or "manylinux" in wheel.name, wheel.name

    root = work / "venv"
    _step(timings, "venv", [sys.executable, "-m", "venv", "--without-pip", str(root)])
    site = Path(sysconfig.get_path("purelib", vars={"base": str(root), "platbase": str(root)}))
    install = [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python")]
    # Without PYTHONPATH, and before the .pth below: either would show pip the tests' own
    # tfxent (a source tree, or tox's editable install) as installed, and it would skip the
    # wheel.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install += ["install", "--no-deps", "--no-index", str(wheel)]
    _step(timings, "install", install, env=clean)
    assert (site / "tfxent" / "_prebuilt" / _MINOR / "_tfxent_ops.so").is_file()
    tf_site = Path(tf.__file__).resolve().parents[1]
    (site / "zz_test_environment.pth").write_text(f"{tf_site}\n")

    failing = work / "no-compiler"
    failing.write_text("#!/bin/sh\necho 'this host has no C++ compiler' >&2\nexit 127\n")
    failing.chmod(0o755)
    return Venv(root, site, failing)


def test_the_prebuilt_op_is_the_very_binary_the_build_on_first_use_makes(venv):
    """One command and one set of flags for both: compiled from the same tree with the same
    compiler, the wheel's library and the cache's are byte for byte the same file, so they
    cannot give different bits."""
    assert (venv.prebuilt / "_tfxent_ops.so").read_bytes() == good_library().read_bytes()


def test_doctor_reports_the_prebuilt_op_without_a_compiler(venv):
    info, done = venv.doctor()
    assert done.returncode == 0, done.stderr[-4000:]
    assert info["rung"] == "prebuilt" and info["op_loaded"] is True
    assert info["loaded_from"] == str(venv.prebuilt / "_tfxent_ops.so")
    assert info["ladder"] == [{"rung": "prebuilt", "taken": True, "why_not": None}]
    assert info["built"] is False  # nothing compiled: CXX fails, and no compiler is on PATH
    assert (
        shutil.which("c++", path=venv.path) is None and shutil.which("g++", path=venv.path) is None
    )
    assert info["prebuilt_for"] == [_MINOR[2:]]
    assert "compiling" not in done.stderr


def test_the_prebuilt_op_computes_and_check_passes(venv, timings):
    code = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf, tfxent
        from tfxent import _build
        labels = tf.constant([[0.1, 0.9], [0.5, 0.5]])
        logits = tf.constant([[1.0, 2.0], [3.0, -1.0]])
        f = tf.function(tfxent.nn.softmax_cross_entropy_with_logits)
        graph = f.get_concrete_function(labels, logits).graph
        ops = {op.type for op in graph.get_operations()}
        assert "TfxentSoftmaxXent" in ops, ops
        want = tf.nn.softmax_cross_entropy_with_logits(labels, logits)
        np.testing.assert_allclose(f(labels, logits), want, rtol=1e-6)
        print(_build.loaded_path())
        """
    )
    done = subprocess.run(
        [str(venv.python), "-c", code],
        cwd=venv.root.parent,
        env={
            "PATH": venv.path,
            "TFXENT_REQUIRE_OP": "1",
            "CXX": "false",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().endswith(str(venv.prebuilt / "_tfxent_ops.so"))
    started = time.monotonic()
    # The modes that run the op: XLA never does (docs/tf_behaviour.md#xla), and the suite
    # covers it; leaving it out keeps CI's time down.
    checked = venv.run("check", "--quick", "--modes", "eager,function,session")
    timings["check --quick"] = round(time.monotonic() - started, 1)
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-4000:]


@pytest.fixture
def tampered(venv):
    library = venv.prebuilt / "_tfxent_ops.so"
    original = library.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    library.write_bytes(bytes(data))
    yield venv
    library.write_bytes(original)


def test_a_tampered_library_is_refused_then_compiled_or_the_composite_path(tampered, tmp_path):
    info, done = tampered.doctor(TFXENT_REQUIRE_OP="0")
    assert done.returncode == 1 and info["rung"] == "composite"
    prebuilt, compiled, composite = info["ladder"]
    assert "does not match the SHA-256 recorded in the wheel" in prebuilt["why_not"]
    assert "no C++ compiler" in compiled["why_not"] or "could not build" in compiled["why_not"]
    assert composite == {"rung": "composite", "taken": True, "why_not": None}
    assert "refusing the prebuilt op" in done.stderr and "tampered" in done.stderr
    assert done.stderr.count("falls back to its composite path") == 1

    script, log = fake_compiler(tmp_path)
    info, done = tampered.doctor(CXX=str(script))
    assert done.returncode == 0 and info["rung"] == "compiled", done.stderr[-3000:]
    assert "tampered" in info["ladder"][0]["why_not"] and compiles(log) == 1
    assert info["loaded_from"].startswith(str(tampered.root.parent))
    assert Path(info["loaded_from"]).read_bytes() == good_library().read_bytes()


@pytest.fixture
def other_tf_only(venv):
    elsewhere = venv.prebuilt.with_name("tf2.0")
    venv.prebuilt.rename(elsewhere)
    yield venv
    elsewhere.rename(venv.prebuilt)


def test_a_tf_without_a_prebuilt_op_compiles(other_tf_only, tmp_path):
    script, log = fake_compiler(tmp_path)
    info, done = other_tf_only.doctor(CXX=str(script))
    assert done.returncode == 0 and info["rung"] == "compiled", done.stderr[-3000:]
    why = info["ladder"][0]["why_not"]
    assert f"no prebuilt op for TF {tf.__version__} (it has TF 2.0)" in why
    assert compiles(log) == 1 and "refusing" not in done.stderr
