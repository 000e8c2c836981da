"""Other people's tests: TF's and Keras's own test files, run against tfxent.

The wheels of TensorFlow and Keras ship some of their own tests for the cross-entropy
functions. This module finds them in the installed packages (nothing is copied into this
repository), runs each suite in a child pytest twice, plain and under `tfxent.patch()`, with
the plugin `tfxent.parity.peers_plugin` counting op types, and compares the outcomes test by
test. docs/peers.md lists what was looked at, what is included and what is skipped and why.

    python -m tfxent.parity.peers [--json results.json]

A run is good when every test has the same outcome plain and patched (apart from the known
differences with a `peer` field in tfxent/parity/differences.py), the patched run executed
tfxent's ops and none of TF's xent ops, and every test that executed TF's xent op plain
executed tfxent's op patched.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tfxent.parity import differences

PLUGIN = "tfxent.parity.peers_plugin"


@dataclass(frozen=True)
class Suite:
    """One peer suite: a file in an installed package, and how to run it.

    `base` names a TestCase base class the file defines (TF ships its kernel tests as bases
    that its unshipped test files subclass): the suite runs a plain subclass of it. `select`
    keeps only the tests whose name contains it, when only part of a file reaches the
    functions.
    """

    name: str
    package: str
    path: str
    base: str | None = None
    select: str | None = None
    determinism: bool = False
    major: int = 0  # the package's lowest major version the file is written for


_TF_NN = "tensorflow/python/kernel_tests/nn_ops/xent_op_test_base.py"
_TF_SPARSE = "tensorflow/python/kernel_tests/sparse_ops/sparse_xent_op_test_base.py"
SUITES: tuple[Suite, ...] = (
    Suite("tf.xent_op_test_base", "tensorflow", _TF_NN, base="XentOpTestBase"),
    Suite("tf.sparse_xent_op_test_base", "tensorflow", _TF_SPARSE, base="SparseXentOpTestBase"),
    # TF's *_d9m_test.py files are not shipped; their bases under determinism are.
    Suite(
        "tf.xent_op_test_base[determinism]",
        "tensorflow",
        _TF_NN,
        base="XentOpTestBase",
        determinism=True,
    ),
    Suite(
        "tf.sparse_xent_op_test_base[determinism]",
        "tensorflow",
        _TF_SPARSE,
        base="SparseXentOpTestBase",
        determinism=True,
    ),
    Suite("keras.losses_test", "keras", "keras/src/losses/losses_test.py", major=3),
    Suite(
        "keras.ops.nn_test[crossentropy]",
        "keras",
        "keras/src/ops/nn_test.py",
        select="crossentropy",
        major=3,
    ),
    Suite(
        "keras.probabilistic_metrics_test",
        "keras",
        "keras/src/metrics/probabilistic_metrics_test.py",
        major=3,
    ),
    Suite(
        "keras.distillation_loss_test",
        "keras",
        "keras/src/distillation/distillation_loss_test.py",
        major=3,
    ),
    Suite("keras.distiller_test", "keras", "keras/src/distillation/distiller_test.py", major=3),
    # Of these files, only the named test reaches the functions; the rest cost minutes.
    Suite(
        "keras.model_checkpoint_test[loading]",
        "keras",
        "keras/src/callbacks/model_checkpoint_test.py",
        select="test_model_checkpoint_loading",
        major=3,
    ),
    Suite(
        "keras.time_distributed_test[mask_zero]",
        "keras",
        "keras/src/layers/rnn/time_distributed_test.py",
        select="test_with_mask_zero",
        major=3,
    ),
)


def expected_differences() -> tuple[differences.Difference, ...]:
    """The registry's known differences that the peer suites show (their `peer` field)."""
    return tuple(d for d in differences.DIFFERENCES if d.peer)


@dataclass
class Run:
    """One suite's tests in one child pytest: outcome, message, time and op counts each."""

    tests: dict[str, dict]

    @property
    def seconds(self) -> float:
        return sum(t.get("seconds", 0.0) for t in self.tests.values())


@dataclass
class SuiteResult:
    suite: Suite
    plain: Run | None = None
    patched: Run | None = None
    skipped: str = ""  # why the suite did not run on this installation
    problems: list[str] = field(default_factory=list)

    def counts(self, run: Run | None) -> dict[str, int]:
        outcomes = [t["outcome"] for t in (run.tests.values() if run else ())]
        return {k: outcomes.count(k) for k in ("passed", "failed", "skipped", "error")}


def _package_root(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent


def major_version(package: str) -> int:
    """The installed distribution's major version (Keras 2 and 3 ship different tests); the
    nightly distribution (`keras-nightly`, which tf-nightly installs) counts too."""
    for name in (package, f"{package}-nightly"):
        try:
            return int(importlib.metadata.version(name).split(".")[0])
        except importlib.metadata.PackageNotFoundError:
            continue
        except ValueError:
            return 0
    return 0


def locate(suite: Suite) -> Path | None:
    """The suite's file in the installed package, or None when this version does not ship it
    (or lacks what it needs)."""
    root = _package_root(suite.package)
    if root is None or major_version(suite.package) < suite.major:
        return None
    path = root / suite.path
    return path if path.is_file() else None


def _driver(suite: Suite, directory: Path) -> Path:
    """A test file that subclasses the shipped base class, so pytest collects its tests."""
    module = suite.path.removesuffix(".py").replace("/", ".")
    driver = directory / f"test_{suite.base}.py"
    driver.write_text(
        f"import {module} as shipped\n\n\nclass {suite.base}Run(shipped.{suite.base}):\n    pass\n",
        encoding="utf-8",
    )
    return driver


def _run(targets: dict[Path, Suite], determinism: bool, patched: bool, directory: Path):
    """One child pytest over several suites' files; their tests, by file."""
    report = directory / f"report-{'patched' if patched else 'plain'}.json"
    select = {path.name: suite.select for path, suite in targets.items() if suite.select}
    env = dict(os.environ)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        TFXENT_PEERS_PATCH="1" if patched else "0",
        TFXENT_PEERS_DETERMINISM="1" if determinism else "0",
        TFXENT_PEERS_SELECT=json.dumps(select),
        TFXENT_PEERS_REPORT=str(report),
        PYTHONPATH=os.pathsep.join(filter(None, [_repository_root(), env.get("PYTHONPATH")])),
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", PLUGIN, "-p", "no:cacheprovider"]
    # The file system's root as rootdir: node ids then keep every file's whole path (files
    # outside the rootdir lose it, and test classes of the same name in two files collide).
    command += ["-c", os.devnull, "--rootdir", directory.anchor, *map(str, targets)]
    done = subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=3600
    )
    if not report.is_file():
        raise RuntimeError(f"peer suites: pytest wrote no report\n{done.stdout[-3000:]}")
    by_file: dict[Path, dict[str, dict]] = {path: {} for path in targets}
    for nodeid, entry in json.loads(report.read_text(encoding="utf-8"))["tests"].items():
        path = Path(entry.pop("file", ""))
        if path in by_file:
            by_file[path][f"{path.name}::{nodeid.split('::', 1)[-1]}"] = entry
    return {path: Run(tests) for path, tests in by_file.items()}


def _repository_root() -> str:
    """Where `tfxent` is imported from, so that the child imports the same tfxent."""
    return str(Path(__file__).resolve().parents[2])


def _expected(suite: Suite, test: str) -> differences.Difference | None:
    for entry in expected_differences():
        name, fragment = entry.peer
        if name == suite.name and fragment in test:
            return entry
    return None


def normalized_failure(message: str) -> str:
    """A failure message without what names the graph rather than the result: TF's graph
    errors keep the kernel's line (the one before `[[{{node ...}}]]`), without function and
    op names (tfxent's op type shows where TF's would, docs/tf_behaviour.md#op-names)."""
    lines = message.splitlines()
    found = [lines[i - 1] for i, line in enumerate(lines) if i and line.lstrip().startswith("[[")]
    text = found[0] if found else message
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\]( name: \S*)?", "", text).strip()


def compare(result: SuiteResult) -> list[str]:
    """Every unlisted difference between the plain and the patched run (outcome, or failure
    message when both fail), and every sign that the patched run did not compute with
    tfxent's ops."""
    plain, patched, suite = result.plain, result.patched, result.suite
    problems = []
    for test in sorted(set(plain.tests) | set(patched.tests)):
        before = plain.tests.get(test, {"outcome": "absent"})
        after = patched.tests.get(test, {"outcome": "absent"})
        messages = [normalized_failure(t.get("message", "")) for t in (before, after)]
        if (before["outcome"] != after["outcome"] or messages[0] != messages[1]) and _expected(
            suite, test
        ) is None:
            problems.append(
                f"{test}: {before['outcome']} plain, {after['outcome']} patched; "
                f"messages {messages[0][:300]!r} / {messages[1][:300]!r}"
            )
        if after.get("ops", {}).get("tf", 0):
            problems.append(f"{test}: TF's xent op ran under tfxent.patch()")
        if before.get("ops", {}).get("tf", 0) and not after.get("ops", {}).get("tfxent", 0):
            problems.append(f"{test}: ran TF's xent op plain but no tfxent op patched")
    if not sum(t.get("ops", {}).get("tfxent", 0) for t in patched.tests.values()):
        problems.append("the patched run executed no tfxent op")
    return problems


def run_all(suites: tuple[Suite, ...] = SUITES) -> list[SuiteResult]:
    """Run the suites found here, plain and patched, and compare. Suites share a child
    pytest per determinism setting (TF's import dominates a small suite's time)."""
    results = {suite: SuiteResult(suite) for suite in suites}
    for determinism in (False, True):
        with tempfile.TemporaryDirectory(prefix="tfxent-peers-") as tmp:
            directory, targets = Path(tmp), {}
            for suite in suites:
                found = locate(suite)
                if suite.determinism != determinism:
                    continue
                if found is None:
                    installed = f"the installed {suite.package} {major_version(suite.package)}"
                    results[suite].skipped = (
                        f"written for {suite.package} {suite.major}, not {installed}"
                        if major_version(suite.package) < suite.major
                        else f"not shipped by {installed}"
                    )
                    continue
                targets[_driver(suite, directory) if suite.base else found] = suite
            if not targets:
                continue
            plain = _run(targets, determinism, False, directory)
            patched = _run(targets, determinism, True, directory)
        for path, suite in targets.items():
            results[suite].plain, results[suite].patched = plain[path], patched[path]
            results[suite].problems = compare(results[suite])
    return list(results.values())


def _portable(entry: dict | None) -> dict | None:
    """A test's entry as stored: its failure message normalized, without this machine's
    directories (every absolute path keeps its file name only)."""
    if entry is None or "message" not in entry:
        return entry
    message = normalized_failure(entry["message"])[:1000]
    return {**entry, "message": re.sub(r"(?<![\w.])/(?:[\w.+<>-]+/)+", "", message)}


def to_json(results: list[SuiteResult]) -> dict:
    """The results as stored: per suite, the counts plain and patched, the problems, the
    time its tests took, and every test's outcomes and op counts."""
    import tensorflow as tf

    suites = {}
    for r in results:
        tests = r.plain.tests if r.plain else {}
        suites[r.suite.name] = {
            "suite": asdict(r.suite),
            "skipped": r.skipped,
            "plain": r.counts(r.plain),
            "patched": r.counts(r.patched),
            "reached": sum(
                bool(r.patched.tests.get(t, {}).get("ops", {}).get("tfxent")) for t in tests
            ),
            "seconds": round(sum(x.seconds for x in (r.plain, r.patched) if x), 1),
            "problems": r.problems,
            "tests": {
                t: {"plain": _portable(tests[t]), "patched": _portable(r.patched.tests.get(t))}
                for t in tests
            },
        }
    return {"tf_version": tf.__version__, "suites": suites}


def summary(results: dict) -> dict:
    """Passed plain / passed patched over every suite that ran, and the suites' problems:
    the figure `tfxent check` prints and the matrix column shows."""
    ran = [s for s in results["suites"].values() if not s["skipped"]]
    return {
        "tf_version": results["tf_version"],
        "passed_plain": sum(s["plain"]["passed"] for s in ran),
        "passed_patched": sum(s["patched"]["passed"] for s in ran),
        "suites_run": len(ran),
        "suites_skipped": sorted(n for n, s in results["suites"].items() if s["skipped"]),
        "problems": [f"{n}: {p}" for n, s in results["suites"].items() for p in s["problems"]],
    }


def describe(figure: dict) -> str:
    """`summary()` as the lines `tfxent check --peers` prints."""
    lines = [
        f"peer tests (TF's and Keras's own, TF {figure['tf_version']}): "
        f"{figure['passed_plain']} passed plain / {figure['passed_patched']} patched, "
        f"{figure['suites_run']} suites"
        + (f" ({len(figure['suites_skipped'])} skipped)" if figure["suites_skipped"] else "")
    ]
    lines += [f"  problem: {problem}" for problem in figure["problems"]]
    return "\n".join(lines)


def render_figure(results: dict) -> str:
    """The matrix cell for one TF version: 'passed plain / passed patched', with a mark when
    the comparison found problems."""
    figure = summary(results)
    cell = f"{figure['passed_plain']} / {figure['passed_patched']}"
    return cell if not figure["problems"] else cell + f" ({len(figure['problems'])} problems)"


def render_report(results: dict) -> str:
    lines = [f"Peer suites on TF {results['tf_version']} (passed/failed/skipped, plain → patched)"]
    for name, s in results["suites"].items():
        if s["skipped"]:
            lines.append(f"  {name}: skipped, {s['skipped']}")
            continue
        p, q = s["plain"], s["patched"]
        lines.append(
            f"  {name}: {p['passed']}/{p['failed']}/{p['skipped']} → "
            f"{q['passed']}/{q['failed']}/{q['skipped']}; {s['reached']} reached tfxent's ops "
            f"({s['seconds']} s)"
        )
        lines += [f"    PROBLEM {problem}" for problem in s["problems"]]
    lines.append(f"peer tests passed plain / patched: {render_figure(results)}")
    return "\n".join(lines)


def check_summary() -> dict:
    """Run every peer suite on the installed TF and return `summary()`: the figure for
    `tfxent check` ("peer tests passed plain / patched")."""
    return summary(to_json(run_all()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfxent.parity.peers", description=__doc__)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--suite", action="append", help="run only these suites (by name)")
    args = parser.parse_args(argv)
    chosen = tuple(s for s in SUITES if not args.suite or s.name in args.suite)
    results = to_json(run_all(chosen))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(render_report(results))
    return 1 if summary(results)["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
