"""`python -m tools.matrix`: run tfxent on every TF minor and write compat_matrix.md.

For each TensorFlow version (2.12 … 2.21 and tf-nightly-cpu) this runs, in that version's
tox environment (tox.ini):

1. `tox run -e tf2.X --notest`: create or update the environment and install tfxent
   (one environment at a time: tox's packaging step is shared);
2. `tox run -e tf2.X`: build tfxent's op against that TF and run the whole test suite
   (pytest writes `junit.xml` into the environment directory);
3. `tox exec -e tf2.X -- python -m tfxent check --json …`: the parity report and the
   compat-matrix row for that TF.

Up to `--parallel` versions (default 2) run at once.

Each version's result is stored as JSON in the results directory (default
`compat/results/`, committed beside the file), and compat_matrix.md is regenerated from the
stored results of every version, so `--versions 2.16` re-runs one row and keeps the others.
The file is a pure function of the results: `--render-only` reproduces it exactly, and
re-running the versions reproduces it apart from dates and timings. Logs, junit.xml and the
full check reports go to `.tox/matrix-logs/`. The rendering is tools/matrix_render.py.

This is a maintainer's tool, not part of the package: run it from the repository root.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from tools.matrix_render import ROOT, VERSIONS, green, render

DESCRIPTION = __doc__.split("\n\n")[0]

# The order to run them in when time is short: newest, oldest, the odd one, the rest.
PRIORITY = ("2.21", "2.12", "2.16", "2.13", "2.20", "2.14", "2.19", "2.15", "2.18", "2.17")

OUTPUT = ROOT / "compat_matrix.md"
RESULTS = ROOT / "compat" / "results"
LOGS = ROOT / ".tox" / "matrix-logs"
PEERS = ROOT / "compat" / "peers"


def _log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[matrix {stamp}] {message}", file=sys.stderr, flush=True)


def tox_command() -> list[str]:
    """`.venv-tools/bin/tox` (bootstrapped by ./dev), else this Python's tox, else PATH's."""
    tools = ROOT / ".venv-tools" / "bin" / "tox"
    if tools.exists():
        return [str(tools)]
    try:
        import tox  # noqa: F401

        return [sys.executable, "-m", "tox"]
    except ImportError:
        found = shutil.which("tox")
        if found:
            return [found]
    raise SystemExit(
        "matrix: no tox found; run ./dev once (it bootstraps .venv-tools) or pip install tox"
    )


def _run(command: list[str], log: Path, timeout: float | None = None) -> tuple[int, float]:
    """Run a command with its output in `log`; (exit status, seconds)."""
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        out.write("$ " + shlex.join(command) + "\n")
        out.flush()
        try:
            done = subprocess.run(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
            status = done.returncode
        except subprocess.TimeoutExpired:
            out.write(f"\nmatrix: timed out after {timeout} s\n")
            status = 124
    return status, round(time.monotonic() - started, 1)


# ---------------------------------------------------------------------------------------------
# Test results


def parse_junit(path: Path) -> dict:
    """Counts and failing test ids from pytest's junit XML."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing = []
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                module = case.get("classname", "").replace(".", "/")
                failing.append(f"{module}.py::{case.get('name')}")
    failed = counts["failures"] + counts["errors"]
    return {
        "passed": counts["tests"] - failed - counts["skipped"],
        "failed": failed,
        "skipped": counts["skipped"],
        "failing": sorted(failing),
    }


_CRASH = re.compile(r"Fatal Python error: (\w[^\n]*)")
_TEST_FRAME = re.compile(r'File "[^"]*?(tests/[^"]+\.py)", line \d+ in (\w+)')


_EXCEPTION = re.compile(r"^(\w+(?:\.\w+)*(?:Error|Exception|Exit)\b: .+)$", re.M)


def crash_summary(log_text: str) -> str | None:
    """What took the run down: faulthandler's report with the innermost test frame, else
    the last uncaught exception line in the log."""
    match = _CRASH.search(log_text)
    if not match:
        exceptions = _EXCEPTION.findall(log_text)
        return exceptions[-1].strip() if exceptions else None
    frames = _TEST_FRAME.findall(log_text[match.end() :])
    where = f" in {frames[-1][0]}::{frames[-1][1]}" if frames else ""
    return f"{match.group(1).strip()}{where}"


# ---------------------------------------------------------------------------------------------
# One version


# tox's packaging step (building tfxent's editable wheel in .tox/.pkg) is shared by every
# environment, so environments are set up one at a time (a file lock, so that two matrix
# commands can share the machine); tests and checks then run with --skip-pkg-install.
_SETUP_LOCK = ROOT / ".tox" / "matrix-setup.lock"


def setup(label: str, args: argparse.Namespace) -> tuple[int, float]:
    """Create the environment or bring it up to date (tox recreates it when tox.ini's deps
    or constraints changed) and install tfxent into it."""
    import filelock

    env = VERSIONS[label]
    _SETUP_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(_SETUP_LOCK)):
        _log(f"{label}: setting up .tox/{env} (first time: ~1.5 GB, several minutes)...")
        command = [*tox_command(), "run", "-e", env, "--notest"]
        status, seconds = _run(command, LOGS / f"{env}.setup.log", args.timeout)
    _log(f"{label}: environment ready (exit {status}) in {seconds:.0f} s")
    return status, seconds


def _test_results(junit: Path, status: int, log_text: str, env: str) -> dict:
    tests: dict = {"status": status}
    if junit.exists():
        tests.update(parse_junit(junit))
    else:
        tests.update(passed=None, failed=None, skipped=None, failing=[])
        tests["crash"] = crash_summary(log_text) or (
            f"no test results (tox exit status {status}); see {env}.tox.log"
        )
    return tests


def run_version(label: str, args: argparse.Namespace) -> dict:
    env = VERSIONS[label]
    tox = tox_command()
    results = Path(args.results)
    env_dir = ROOT / ".tox" / env
    junit, kept_junit = env_dir / "junit.xml", LOGS / f"{env}.junit.xml"
    check_json = LOGS / f"{env}.check.json"
    result: dict = {"label": label, "env": env}

    if args.existing_tests:
        # Keep the earlier run's results before setting up (which may recreate the env).
        if not junit.exists():
            raise RuntimeError(f"{label}: --existing-tests but no .tox/{env}/junit.xml")
        shutil.copyfile(junit, kept_junit)
    status, _ = setup(label, args)
    if status != 0:
        log_text = (LOGS / f"{env}.setup.log").read_text(encoding="utf-8", errors="replace")
        reason = crash_summary(log_text) or f"tox exit status {status}; see {env}.setup.log"
        result["tests"] = {"passed": None, "failed": None, "skipped": None, "failing": [],
                           "crash": f"environment set-up failed: {reason}"}  # fmt: skip
        result["check"] = {"crash": "not run: the environment could not be set up"}
    elif args.existing_tests:
        tests = {"status": None, "from": "an earlier tox run's junit.xml"}
        tests.update(parse_junit(kept_junit))
        result["tests"] = tests
        _log(f"{label}: tests from an earlier run: {tests['passed']} passed, "
             f"{tests['failed']} failed, {tests['skipped']} skipped")  # fmt: skip
    elif not args.skip_tests:
        junit.unlink(missing_ok=True)
        command = [*tox, "run", "-e", env, "--skip-pkg-install"]
        if args.pytest_args:
            command += ["--", *shlex.split(args.pytest_args)]
        _log(f"{label}: tox run -e {env} (build the op, run the test suite)...")
        status, seconds = _run(command, LOGS / f"{env}.tox.log", args.timeout)
        log_text = (LOGS / f"{env}.tox.log").read_text(encoding="utf-8", errors="replace")
        tests = _test_results(junit, status, log_text, env)
        tests.update(seconds=seconds, pytest_args=args.pytest_args)
        if junit.exists():
            shutil.copyfile(junit, kept_junit)
        result["tests"] = tests
        _log(
            f"{label}: tests {tests.get('passed')} passed, {tests.get('failed')} failed, "
            f"{tests.get('skipped')} skipped in {seconds:.0f} s (exit {status})"
            + (f"; {tests['crash']}" if tests.get("crash") else "")
        )
    else:
        previous = _load(results / f"{env}.json")
        result["tests"] = previous.get("tests") if previous else None

    if "check" not in result and args.skip_check:
        previous = _load(results / f"{env}.json")
        result["check"] = (previous or {}).get("check") or {"crash": "not run (--skip-check)"}
    elif "check" not in result:
        check_json.unlink(missing_ok=True)
        command = [*tox, "exec", "-e", env, "--skip-pkg-install", "--", "python", "-m"]
        command += ["tfxent", "check", "--json", str(check_json), *shlex.split(args.check_args)]
        _log(f"{label}: python -m tfxent check {args.check_args}...")
        status, seconds = _run(command, LOGS / f"{env}.check.log", args.timeout)
        check = _load(check_json)
        if check is None:
            log_text = (LOGS / f"{env}.check.log").read_text(encoding="utf-8", errors="replace")
            check = {"crash": crash_summary(log_text) or f"no report (exit status {status})"}
        check["status"], check["wall_seconds"] = status, seconds
        result["check"] = check
        _log(f"{label}: check exit {status} in {seconds:.0f} s")
    _run_peers(tox, label, env, args.timeout)
    (results / f"{env}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def _run_peers(tox: list[str], label: str, env: str, timeout: float) -> None:
    """TF's and Keras's own tests, plain and patched, in the same environment: the matrix's
    peer column reads compat/peers/<env>.json (tfxent/parity/peers.py)."""
    command = [*tox, "exec", "-e", env, "--skip-pkg-install", "--", "python", "-m"]
    command += ["tfxent.parity.peers", "--json", str(PEERS / f"{env}.json")]
    _log(f"{label}: python -m tfxent.parity.peers...")
    status, seconds = _run(command, LOGS / f"{env}.peers.log", timeout)
    _log(f"{label}: peer suites exit {status} in {seconds:.0f} s")


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Command line


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--versions",
        default="all",
        help="comma-separated TF versions (2.12 … 2.21, nightly) or 'all' (default); run in "
        "priority order: " + ", ".join(PRIORITY) + ", nightly",
    )
    parser.add_argument(
        "-p", "--parallel", type=int, default=2, help="versions at once (default 2)"
    )
    parser.add_argument(
        "--check-args", default="", help="extra arguments for `tfxent check` (e.g. --quick)"
    )
    parser.add_argument("--pytest-args", default="", help="extra arguments for pytest")
    parser.add_argument(
        "--skip-tests",
        action="store_true",
        help="only re-run `tfxent check`, keeping the stored test results",
    )
    parser.add_argument(
        "--skip-check",
        action="store_true",
        help="only re-run the test suite, keeping the stored `tfxent check` result",
    )
    parser.add_argument(
        "--existing-tests",
        action="store_true",
        help="take the test results from the junit.xml an earlier `tox -e <env>` left in the "
        "environment instead of running the suite again",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="regenerate the file from stored results"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per tox command (default: none)"
    )
    parser.add_argument("--results", default=str(RESULTS), help="directory of stored results")
    parser.add_argument("--output", default=str(OUTPUT), help="the file to write")


def selected(text: str) -> list[str]:
    if text == "all":
        wanted = list(VERSIONS)
    else:
        wanted = [v.strip() for v in text.split(",") if v.strip()]
        unknown = [v for v in wanted if v not in VERSIONS]
        if unknown:
            raise ValueError(f"unknown version(s) {unknown}; choose from {', '.join(VERSIONS)}")
    order = [*PRIORITY, "nightly"]
    return sorted(wanted, key=lambda v: order.index(v) if v in order else len(order))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.matrix",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_args(parser)
    args = parser.parse_args(argv)
    try:
        labels = selected(args.versions)
    except ValueError as err:
        print(f"matrix: {err}", file=sys.stderr)
        return 2
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        with concurrent.futures.ThreadPoolExecutor(max(1, args.parallel)) as pool:
            futures = {pool.submit(run_version, label, args): label for label in labels}
            for future in concurrent.futures.as_completed(futures):
                label = futures[future]
                try:
                    future.result()
                except Exception as err:  # noqa: BLE001 - one broken version must not stop the rest
                    _log(f"{label}: {type(err).__name__}: {err}")
    results = {label: _load(results_dir / f"{env}.json") for label, env in VERSIONS.items()}
    Path(args.output).write_text(render(results), encoding="utf-8")
    _log(f"wrote {args.output}")
    ran = [results[label] for label in labels]
    return 0 if all(green(r) for r in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
