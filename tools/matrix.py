"""`python -m tfxent.parity.matrix`: run tfxent on every TF minor and write compat_matrix.md.

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
full check reports go to `.tox/matrix-logs/`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

DESCRIPTION = __doc__.split("\n\n")[0]

# Version label -> tox environment, in the matrix's row order.
VERSIONS = {f"2.{minor}": f"tf2.{minor}" for minor in range(12, 22)}
VERSIONS["nightly"] = "tf-nightly"
# The order to run them in when time is short: newest, oldest, the odd one, the rest.
PRIORITY = ("2.21", "2.12", "2.16", "2.13", "2.20", "2.14", "2.19", "2.15", "2.18", "2.17")

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "compat_matrix.md"
RESULTS = ROOT / "compat" / "results"
LOGS = ROOT / ".tox" / "matrix-logs"


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
    (results / f"{env}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Rendering


def _clean(text: str, limit: int | None = 220) -> str:
    """A problem line without machine-specific paths, addresses or runs of whitespace."""
    text = re.sub(r"[^\s'\"(]*/site-packages/", "<site-packages>/", text)
    text = text.replace(str(ROOT) + os.sep, "")
    text = re.sub(r"0x[0-9a-f]{6,}", "0x…", text)
    text = re.sub(r"\s+", " ", text).replace("|", "\\|")
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + "…"


def _tests_cells(tests: dict | None) -> list[str]:
    if not tests:
        return ["—", "—", "—"]
    if tests.get("passed") is None:
        return ["—", "crashed", "—"]
    return [str(tests["passed"]), str(tests["failed"]), str(tests["skipped"])]


def row(label: str, result: dict | None) -> list[str]:
    from tfxent.parity import check as check_module

    n_columns = len(check_module.COLUMNS)
    if result is None:
        return [label, *["not run"] + ["—"] * (n_columns - 1), "—", "—", "—", "—", "—", "—"]
    report = result.get("check") or {}
    if "row" in report:
        cells = [report["row"].get(key, "—") for key, _ in check_module.COLUMNS]
    else:
        cells = ["crashed"] + ["—"] * (n_columns - 1)
    build = report.get("op_build_seconds")
    version = report.get("tensorflow") or label
    return [
        version,
        *cells,
        *_tests_cells(result.get("tests")),
        f"{build:.0f} s" if isinstance(build, int | float) else "—",
        report.get("python", "—"),
        report.get("date", "—"),
    ]


def green(result: dict | None) -> bool:
    if not result:
        return False
    tests, report = result.get("tests") or {}, result.get("check") or {}
    return bool(report.get("ok")) and tests.get("failed") == 0 and not tests.get("crash")


def _table(headings: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    out += ["| " + " | ".join(cells) + " |" for cells in rows]
    return out


# Intentional differences that the parity catalogue cannot show (it compares tf.nn mirrors);
# the catalogue's own known differences and the version table's intentional rows are added.
INTENTIONAL = (
    (
        "Top-level `tfxent.softmax_cross_entropy_with_logits` / "
        "`sparse_softmax_cross_entropy_with_logits` keep TF 1.x's `_sentinel` keyword guard",
        "The top-level functions are the TF 1.15 contract legacy code was written against: a "
        "positional call raises TF 1.x's `Only call … with named arguments` instead of silently "
        "reading a TF 0.x `(logits, labels)` call in the TF ≥ 2.12 order "
        "(docs/tf_behaviour.md#signatures, docs/design.md). "
        "`tfxent.nn` and `tfxent.compat.v1.nn` have TF's exact signatures.",
        "tests/core/test_surfaces.py::test_top_level_has_tf_1_15_signature, "
        "::test_top_level_rejects_positional_calls",
    ),
    (
        "Deprecation log lines name `tfxent.compat.v1.nn` instead of "
        "`tensorflow.python.ops.nn_ops`",
        "The lines are logged by tfxent's own functions, once per process and in the same "
        "places as TF's (docs/tf_behaviour.md#deprecation-log-lines); naming TF's module would "
        "point users at code they do not "
        "call.",
        "tests/core/test_surfaces.py::test_deprecation_log_lines_match_tf_once_per_process_and_graph_only_for_dim",
    ),
    (
        "Sparse bfloat16 logits are computed in float32 and rounded once",
        "TF's sparse kernel computes in bfloat16 arithmetic (docs/tf_behaviour.md#dtypes, "
        "docs/tf_behaviour.md#sparse-forward), so its result carries "
        "up to ~log2(C) bf16 rounding steps; tfxent's single rounding is at least as accurate and "
        "agrees with TF to a few bf16 ulp (tolerance.py: 8 eps).",
        "tests/parity/test_parity_sparse.py::test_sparse_matches_tf[*bf16*] "
        "(cases `bf16`, `bf16_wide`)",
    ),
    (
        "Determinism on, sparse int16 labels: the logits' gradient is returned",
        "TF (2.13+) computes the loss but its gradient fails with a bare AssertionError inside "
        "array_grad's GatherV2 gradient (math_ops.range on an int16 batch size; on 2.22 nightly a "
        "NotFoundError for the int16 Range kernel instead), a TF bug with no message a user "
        "could act on; tfxent's gradient is the int32-label gradient.",
        "tests/parity/test_fuzz.py::test_known_issue[determinism-int16-labels-gradient]",
    ),
    (
        "Labels near the dtype's largest value: a finite loss where TF's overflows",
        "TF sums y·(lse − x) term by term, so with labels near the dtype's maximum the terms "
        "overflow and its loss is NaN or inf; tfxent's fused Σy·lse − Σy·x stays finite when "
        "the huge labels cancel (it takes TF's term-by-term sum only when its own sum is not "
        "finite); likewise determinism mode's gradient, where TF scales −y by the upstream "
        "gradient before it sums. Such labels are not probabilities; the fuzz found them.",
        "tests/parity/test_fuzz.py::test_known_issue[overflowing-label-terms]",
    ),
    (
        "v1 Session, dense float16/bfloat16 calls whose final Reshape fails: an error, not a "
        "wrong-shaped loss",
        "Where TF's final Reshape of the kernel's rows fails (zero classes, e.g. logits [0, 0], "
        "where its kernel gives one row; labels that broadcast to more rows than the logits "
        "have), it fails for float32, eagerly, and in a Session with the graph optimizer off. "
        "With half precision that Reshape is not the fetched node, so Grappler removes it as "
        "redundant and TF returns a loss of the wrong shape (e.g. [1] for a batch of 0). "
        "tfxent raises TF's InvalidArgumentError.",
        "tests/parity/test_fuzz.py::test_known_issue[session-half-final-reshape]",
    ),
)
_PARITY_TESTS = {
    "nn.dense": "tests/parity/test_parity_dense.py::test_dense_matches_tf",
    "v1.dense_v2": "tests/parity/test_parity_dense.py::test_dense_matches_tf",
    "v1.dense": "tests/parity/test_parity_v1.py::test_v1_dense_matches_tf",
    "nn.sparse": "tests/parity/test_parity_sparse.py::test_sparse_matches_tf",
    "v1.sparse": "tests/parity/test_parity_sparse.py::test_sparse_matches_tf",
}


def intentional_rows() -> list[list[str]]:
    from tfxent import _versions
    from tfxent.parity import cases

    rows = [[_clean(a, None), _clean(b, None), c] for a, b, c in INTENTIONAL]
    for known in getattr(cases, "KNOWN_DIFFERENCES", ()):
        tests = sorted({_PARITY_TESTS.get(api, api) for api in known.apis})
        det = {None: "", True: ", determinism on", False: ", determinism off"}[known.deterministic]
        scope = f"cases {', '.join(f'`{n}`' for n in known.names)} in {'/'.join(known.modes)}{det}"
        rows.append(
            [f"`{known.key}`", _clean(known.reason, None), f"{'; '.join(tests)} ({scope})"]
        )  # fmt: skip
    for behaviour in _versions.BEHAVIOURS:
        if behaviour.intentional:
            rows.append(
                [
                    f"{behaviour.summary} ({behaviour.versions}): tfxent does not",
                    _clean(f"{behaviour.tf_does} {behaviour.tfxent_does}", None),
                    behaviour.pinned_by,
                ]
            )
    return rows


def following_rows() -> list[list[str]]:
    from tfxent import _versions

    return [
        [f"`{b.key}`: {b.summary}", b.versions, _clean(b.tf_does, None),
         _clean(b.tfxent_does, None), b.pinned_by]
        for b in _versions.BEHAVIOURS
        if not b.intentional
    ]  # fmt: skip


def failure_lines(label: str, result: dict | None) -> list[str]:
    if result is None:
        return []
    lines = []
    tests = result.get("tests") or {}
    if tests.get("pytest_args"):
        words = shlex.split(tests["pytest_args"])
        deselected = words.count("--deselect")
        others = [w for i, w in enumerate(words) if w != "--deselect" and (
            i == 0 or words[i - 1] != "--deselect")]  # fmt: skip
        lines.append(
            "- test suite run with extra pytest arguments"
            + (f": {deselected} tests deselected" if deselected else "")
            + (f"; `{_clean(shlex.join(others))}`" if others else "")
        )
    if tests.get("crash"):
        lines.append(f"- tests crashed: {_clean(tests['crash'])}")
    for test_id in tests.get("failing", []):
        lines.append(f"- test failed: `{_clean(test_id)}`")
    report = result.get("check") or {}
    if report.get("crash"):
        lines.append(f"- check crashed: {_clean(report['crash'])}")
    for s in report.get("signatures", []):
        for problem in s["problems"]:
            lines.append(f"- signature `{s['function']}`: {_clean(problem)}")
    for failure in report.get("failures", []):
        det = "determinism on" if failure["deterministic"] else "determinism off"
        first = _clean(failure["problems"][0]) if failure["problems"] else ""
        more = len(failure["problems"]) - 1
        lines.append(
            f"- check `{failure['case']}` [{failure['mode']}, {det}]: {first}"
            + (f" (+{more} more)" if more > 0 else "")
        )
    if not lines:
        return []
    version = report.get("tensorflow") or label
    return [f"### TF {version}", "", *lines, ""]


def render(results: dict[str, dict | None]) -> str:
    from tfxent.parity import check as check_module

    headings = [
        *check_module.row_headings(),
        "tests passed",
        "failed",
        "skipped",
        "op build",
        "Python",
        "date",
    ]
    rows = [row(label, results.get(label)) for label in VERSIONS]
    ran = [label for label in VERSIONS if results.get(label)]
    all_green = ran and all(green(results[label]) for label in ran)
    lines = [
        "# tfxent compatibility matrix",
        "",
        "<!-- Generated by `python -m tfxent.parity.matrix`; do not edit by hand. -->",
        "",
        "One row per TensorFlow version, from actual runs: `tox -e <env>` builds tfxent's op "
        "against that TF and runs the whole test suite (tests passed/failed/skipped), and "
        "`python -m tfxent check` in the same environment compares tfxent with that TF's "
        "`tf.nn` (the other columns; `python -m tfxent check` prints the same row for the "
        "TF you have). Regenerate with `python -m tfxent.parity.matrix` "
        "(`--versions 2.16` re-runs one row).",
        "",
        "Cells: ✓ every comparison agrees (or shows exactly its documented difference); "
        "✗ n: n comparisons differ; — not run. *values*, *gradients* and *errors* are eager "
        "and `tf.function` with op determinism off; *determinism* is every mode with it on; "
        "*XLA* is `jit_compile=True`; *v1 graph* a `tf.compat.v1.Session` with dynamic "
        "placeholders.",
        "",
        *_table(headings, rows),
        "",
        (
            "Every row that ran is green."
            if all_green
            else "Rows that are not green are explained under *Failures and notes* below."
        ),
        "",
        "## Intentional differences",
        "",
        "Where tfxent deliberately does not reproduce the installed TF, each with its reason "
        "and the test that pins it (a pinned difference that disappears fails its test).",
        "",
        *_table(["difference", "reason", "pinned by"], intentional_rows()),
        "",
        "## Differences between TF versions that tfxent follows",
        "",
        "From `tfxent/_versions.py`, the one table of version-dependent behaviour "
        "(docs/tf_behaviour.md#version-differences): "
        "tfxent reproduces whichever of these the installed TF has.",
        "",
        *_table(["behaviour", "versions", "TensorFlow", "tfxent", "pinned by"], following_rows()),
        "",
        "## Failures and notes",
        "",
    ]
    failures = [line for label in VERSIONS for line in failure_lines(label, results.get(label))]
    lines += failures or ["None in the runs above.", ""]
    return "\n".join(lines).rstrip() + "\n"


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
        prog="python -m tfxent.parity.matrix",
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
