"""Helpers shared by the hardening tests (build cache, concurrency, determinism, stability).

Not a conftest: modules import what they need. Subprocesses get the environment of the test
run plus `TFXENT_REQUIRE_OP=1`, so a child can never pass on the composite fallback.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def child_env(**overrides: str | None) -> dict[str, str]:
    """The environment for a child Python: this one, quiet TF logs, op required."""
    env = dict(os.environ)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        TFXENT_REQUIRE_OP="1",
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]),
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_python(
    code: str, *args: object, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run `code` with `args` (sys.argv[1:]) in a fresh interpreter from the repository root."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        cwd=REPO,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def last_json(stdout: str) -> dict:
    """The last line of a child's stdout, parsed (children print one JSON result line)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON result line in the child's output:\n{stdout[-2000:]}"
    return json.loads(lines[-1])


@functools.cache
def good_library() -> Path:
    """A valid library built by the real compiler in the run's own cache (CI builds it
    before the tests; otherwise this compiles once)."""
    from tfxent import _build

    return _build.ensure_built().library


def fake_compiler(directory: Path, sleep_s: float = 0.0) -> tuple[Path, Path]:
    """A stand-in `CXX` that answers plan()'s questions with the real compiler and "links"
    the op by copying `good_library()`, appending one line per link to a log.

    Builds then take a chosen time instead of a minute, so the cache protocol (lock, atomic
    publish, checks) is exercised by real processes at test speed. Returns (script, log).
    Set TFXENT_TEST_CXX_FAIL=<message> to make a link fail with that compiler error.
    """
    real = shutil.which(os.environ.get("CXX", "c++"))
    assert real, "the tests need a C++ compiler (the same one that builds the op)"
    log = directory / "compiles.log"
    script = directory / "fake-cxx"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            out=""; shared=0; prev=""
            for arg in "$@"; do
              [ "$prev" = "-o" ] && out="$arg"
              [ "$arg" = "-shared" ] && shared=1
              prev="$arg"
            done
            [ "$shared" = 0 ] && exec "{real}" "$@"
            echo "$$" >> "{log}"
            sleep "${{TFXENT_TEST_CXX_SLEEP:-{sleep_s}}}"
            if [ -n "$TFXENT_TEST_CXX_FAIL" ]; then
              echo "xent_kernels.cc:1:1: error: $TFXENT_TEST_CXX_FAIL" >&2
              exit 1
            fi
            cp "{good_library()}" "$out"
            """
        )
    )
    script.chmod(stat.S_IRWXU)
    return script, log


def compiles(log: Path) -> int:
    """How many times the fake compiler linked the op."""
    return len(log.read_text().splitlines()) if log.exists() else 0


def rss_bytes() -> int:
    """This process's resident set size, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


@pytest.fixture(autouse=True)
def long_only_when_selected(request):
    """Import into a test module to run its `long` tests only when the marker expression asks
    for them (`-m long`), so a plain `pytest tests/...` stays within minutes. CI deselects
    them anyway with tox's `-m "not long"`."""
    if request.node.get_closest_marker("long") and "long" not in request.config.option.markexpr:
        pytest.skip("long test: run it with `-m long` (./dev test -- -m long)")
