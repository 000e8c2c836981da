"""TF's and Keras's own tests, from the installed wheels, plain and under `tfxent.patch()`.

`tfxent.parity.peers` runs each shipped suite in a child pytest twice, counting op types with
TF's op callbacks. This module runs them all once (tens of seconds: marked slow, runs in CI)
and requires: the same outcome and failure message plain and patched for every test, apart
from the listed expected differences; no TF xent op under the patch; tfxent's op in every
test that used TF's op plain. The comparison itself is checked on made-up runs first, so a
difference cannot pass unnoticed.
"""

from __future__ import annotations

import pytest
import tensorflow as tf

from tfxent.parity import peers

SUITES = {suite.name: suite for suite in peers.SUITES}


def _entry(outcome: str, tfxent_ops: int = 0, tf_ops: int = 0, message: str = "") -> dict:
    entry = {"outcome": outcome, "ops": {"tfxent": tfxent_ops, "tf": tf_ops}}
    return {**entry, "message": message} if message else entry


def _result(plain: dict, patched: dict, suite: str = "keras.losses_test") -> peers.SuiteResult:
    return peers.SuiteResult(SUITES[suite], peers.Run(plain), peers.Run(patched))


def test_compare_accepts_identical_outcomes_with_tfxent_ops():
    result = _result({"t::a": _entry("passed", tf_ops=2)}, {"t::a": _entry("passed", 2)})
    assert peers.compare(result) == []


@pytest.mark.parametrize(
    ("patched", "problem"),
    [
        (_entry("failed", 1), "passed plain, failed patched"),
        (_entry("passed", 1, tf_ops=1), "TF's xent op ran under tfxent.patch()"),
        (_entry("passed", 0), "no tfxent op patched"),
    ],
    ids=["outcome", "tf_op_under_patch", "no_tfxent_op"],
)
def test_compare_reports_every_kind_of_difference(patched, problem):
    result = _result({"t::a": _entry("passed", tf_ops=1)}, {"t::a": patched})
    assert any(problem in p for p in peers.compare(result))


def test_compare_reports_different_failure_messages_but_not_graph_names():
    plain = _entry("failed", message="{{function_node __wrapped__GatherV2_device_}} bad [Op:X]")
    same = _entry("failed", 1, message="{{function_node __wrapped__Tfxent_device_}} bad [Op:Y]")
    other = _entry("failed", 1, message="worse")
    assert peers.compare(_result({"t::a": plain}, {"t::a": same})) == []
    assert peers.compare(_result({"t::a": plain}, {"t::a": other}))


def test_figure_and_summary_from_results_json():
    results = {
        "tf_version": "2.99.0",
        "suites": {
            "a": {
                "skipped": "",
                "plain": {"passed": 3},
                "patched": {"passed": 2},
                "problems": ["x"],
            },
            "b": {"skipped": "not shipped", "plain": {}, "patched": {}, "problems": []},
        },
    }
    assert peers.render_figure(results) == "3 / 2 (1 problems)"
    assert peers.summary(results)["suites_skipped"] == ["b"]


@pytest.fixture(scope="module")
def results() -> dict[str, peers.SuiteResult]:
    return {r.suite.name: r for r in peers.run_all()}


@pytest.mark.slow
def test_peer_suites_patched_equal_plain(results):
    problems = [f"{name}: {p}" for name, r in results.items() for p in r.problems]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_suite_that_ran_reached_tfxent(results):
    for name, result in results.items():
        if result.skipped:
            continue
        ran = [t for t in result.patched.tests.values() if t["ops"]["tfxent"]]
        assert ran, f"{name}: no test executed tfxent's ops under the patch"
        assert result.counts(result.plain)["passed"] > 0, name


@pytest.mark.slow
def test_expected_differences_still_differ(results):
    # Each listed difference must still be one; once it is fixed, remove the entry.
    for entry in peers.expected_differences():
        suite, fragment = entry.peer
        result = results[suite]
        if result.skipped:
            continue
        [test] = [t for t in result.plain.tests if fragment in t]
        before, after = result.plain.tests[test], result.patched.tests[test]
        assert (before["outcome"], peers.normalized_failure(before.get("message", ""))) != (
            after["outcome"],
            peers.normalized_failure(after.get("message", "")),
        ), f"{entry.key} no longer differs: remove it from tfxent/parity/differences.py"


def test_the_suites_are_found_in_the_installed_wheels():
    # TF's bases ship with every TF this project supports, Keras 3's losses tests with every
    # Keras 3 (TF >= 2.16); Keras 2 ships none of these. The suites must not silently vanish.
    expected = ["tf.xent_op_test_base", "tf.sparse_xent_op_test_base"]
    if peers.major_version("keras") >= 3:
        expected.append("keras.losses_test")
    for name in expected:
        path = peers.locate(SUITES[name])
        assert path is not None and path.is_file(), (name, tf.__version__)


def test_check_prints_the_peer_figure_and_each_problem():
    figure = {
        "tf_version": "2.21.0",
        "passed_plain": 272,
        "passed_patched": 271,
        "suites_run": 11,
        "suites_skipped": ["keras.sklearn"],
        "problems": ["keras.losses: test_x passed plain, failed patched"],
    }
    assert peers.describe(figure).splitlines() == [
        "peer tests (TF's and Keras's own, TF 2.21.0): 272 passed plain / 271 patched, "
        "11 suites (1 skipped)",
        "  problem: keras.losses: test_x passed plain, failed patched",
    ]
