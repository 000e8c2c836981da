"""The wheel's prebuilt op: accepted only when it matches the installed TF and verifies.

Each test stages a prebuilt library the way the wheel build does (`_build_prebuilt.record`
beside a library compiled for this TF, here the run's own build) in a scratch `_prebuilt/`,
then asks `find()` whether it may be loaded. Loading itself, once per process, is exercised
end to end by test_wheel_install.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tensorflow as tf
from conftest_helpers import REPO, child_env, good_library

from tfxent import _build_flags, _build_prebuilt

_NAME = "_tfxent_ops.so"


@pytest.fixture
def staged(tmp_path, monkeypatch) -> Path:
    """A `_prebuilt/` root holding a valid library for the installed TF; returns its folder."""
    root = tmp_path / "_prebuilt"
    folder = root / _build_prebuilt.directory().name
    folder.mkdir(parents=True)
    library = folder / _NAME
    shutil.copy2(good_library(), library)
    library.chmod(0o755)
    flags = _build_flags.optimisation_flags("", _build_flags.isa_flags("tf"))
    _build_prebuilt.record(library, flags, "test compiler")
    monkeypatch.setattr(_build_prebuilt, "ROOT", root)
    for name in ("TFXENT_FROM_SOURCE", "TFXENT_ISA", "TFXENT_SANITIZE"):
        monkeypatch.delenv(name, raising=False)
    return folder


def _edit_manifest(folder: Path, **changes: object) -> None:
    path = folder / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_matching_library_is_accepted(staged):
    found = _build_prebuilt.find()
    assert found.problem is None and found.library == staged / _NAME
    assert _build_prebuilt.available() == [_build_prebuilt.directory().name[2:]]


def test_manifest_records_what_find_checks(staged):
    manifest = json.loads((staged / "manifest.json").read_text())
    assert manifest["tensorflow"] == tf.__version__
    assert manifest["tensorflow_git"] == tf.__git_version__
    assert manifest["isa"] == "tf" and "-march=native" not in manifest["flags"]
    assert manifest["size"] == (staged / _NAME).stat().st_size


@pytest.mark.parametrize(
    "field, value",
    [("tensorflow", "2.0.0"), ("tensorflow_git", "v0.0.0-not-this-build")],
)
def test_other_tf_version_or_git_hash_is_not_used(staged, field, value):
    _edit_manifest(staged, **{field: value})
    found = _build_prebuilt.find()
    assert found.library is None and not found.refused and "it was built for TF" in found.problem
    assert f"the installed TF is {tf.__version__} ({tf.__git_version__})" in found.problem


def test_other_sources_are_refused(staged):
    _edit_manifest(staged, sources="0" * 64)
    found = _build_prebuilt.find()
    assert found.library is None and found.refused
    assert "other sources or flags" in found.problem


@pytest.mark.parametrize("offset", [0, 1 << 12, -1])
def test_tampered_library_is_refused(staged, offset):
    library = staged / _NAME
    data = bytearray(library.read_bytes())
    data[offset] ^= 0x01
    library.write_bytes(bytes(data))
    found = _build_prebuilt.find()
    assert found.library is None and found.refused
    assert "does not match the SHA-256 recorded in the wheel: tampered" in found.problem


@pytest.mark.parametrize("text", ["", "{}", "not json", '{"tensorflow": 1}'])
def test_unreadable_manifest_is_refused(staged, text):
    (staged / "manifest.json").write_text(text)
    found = _build_prebuilt.find()
    assert found.library is None and found.refused and "unreadable" in found.problem


def test_library_writable_by_others_is_refused(staged):
    (staged / _NAME).chmod(0o757)
    found = _build_prebuilt.find()
    assert found.refused and "writable by group or others" in found.problem


def test_symlinked_library_is_refused(staged, tmp_path):
    elsewhere = tmp_path / "elsewhere.so"
    (staged / _NAME).rename(elsewhere)
    (staged / _NAME).symlink_to(elsewhere)
    found = _build_prebuilt.find()
    assert found.refused and "is a symbolic link" in found.problem


def test_tf_minor_without_a_library_names_the_ones_there(staged):
    staged.rename(staged.with_name("tf2.0"))
    found = _build_prebuilt.find()
    assert found.library is None and not found.refused
    assert f"no prebuilt op for TF {tf.__version__} (it has TF 2.0)" in found.problem


def test_source_install_has_no_prebuilt_ops(staged):
    shutil.rmtree(staged.parent)
    found = _build_prebuilt.find()
    assert found.library is None and "no prebuilt ops" in found.problem


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("TFXENT_FROM_SOURCE", "1", "TFXENT_FROM_SOURCE=1"),
        ("TFXENT_ISA", "native", "TFXENT_ISA=native"),
        ("TFXENT_SANITIZE", "address", "TFXENT_SANITIZE"),
    ],
)
def test_switches_that_ask_for_a_local_build_skip_the_prebuilt_op(
    staged, monkeypatch, name, value, reason
):
    monkeypatch.setenv(name, value)
    found = _build_prebuilt.find()
    assert found.library is None and not found.refused and reason in found.problem


def test_one_function_gives_the_instruction_set_of_both_builds(monkeypatch):
    """The build on first use and the wheel's libraries take their flags from isa_flags()."""
    from tfxent import _build_compile

    monkeypatch.delenv("TFXENT_ISA", raising=False)
    assert "-march=native" not in _build_flags.isa_flags()
    plan = _build_compile.plan()
    assert all(flag in plan.command for flag in _build_flags.isa_flags())
    assert "-march=native" not in plan.command
    monkeypatch.setenv("TFXENT_ISA", "native")
    assert "-march=native" in _build_compile.plan().command
    monkeypatch.setenv("TFXENT_ISA", "avx9000")
    with pytest.raises(_build_compile.BuildError, match="TFXENT_ISA='avx9000' is not supported"):
        _build_flags.isa()


def test_staged_library_is_compiled_with_the_cache_s_command(tmp_path):
    """`stage` runs the compile command of the build cache, with the default instruction set,
    whatever TFXENT_ISA says (a stand-in compiler records the command instead of compiling)."""
    log = tmp_path / "command.txt"
    fake = tmp_path / "fake-cxx"
    fake.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            out=""; prev=""; shared=0
            for arg in "$@"; do
              [ "$prev" = "-o" ] && out="$arg"
              [ "$arg" = "-shared" ] && shared=1
              prev="$arg"
            done
            [ "$shared" = 0 ] && exec "{shutil.which("c++")}" "$@"
            echo "$@" > "{log}"
            cp "{good_library()}" "$out"
            """
        )
    )
    fake.chmod(0o755)
    env = child_env(TFXENT_ISA="native")
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "wheel.py"), "stage", "--out", str(tmp_path)]
        + ["--cxx", str(fake)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    staged_command = log.read_text().split()
    assert staged_command[0] == "-shared" and "-march=native" not in staged_command
    for flag in _build_flags.isa_flags("tf"):
        assert flag in staged_command
    folder = tmp_path / _build_prebuilt.directory().name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["tensorflow"] == tf.__version__
    assert os.path.getsize(folder / _NAME) == manifest["size"]
