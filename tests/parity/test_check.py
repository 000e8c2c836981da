"""`python -m tfxent check` (tfxent/cli/check.py, tfxent/parity/check.py and report.py):
selection, classification into the compat-matrix columns, closeness to TF, the 2.16 crash
guard, signatures, and one small end-to-end run."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import tensorflow as tf

from tfxent import __main__ as cli
from tfxent import _versions
from tfxent.cli import check as check_command
from tfxent.parity import check, crashes, runner, tolerance
from tfxent.parity import report as check_report
from tfxent.parity.calls import Outcome
from tfxent.parity.cases import MODES, Case, catalogue


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    check_command.add_args(parser)
    return parser.parse_args(list(argv))


def _selected(units) -> dict[tuple[str, bool], list[str]]:
    chosen: dict[tuple[str, bool], list[str]] = {}
    for unit in units:
        chosen.setdefault((unit.mode, unit.deterministic), []).extend(unit.case_ids)
    return chosen


def test_quick_names_are_in_the_catalogue():
    names = {c.name for c in catalogue()}
    assert check.QUICK_NAMES <= names, sorted(check.QUICK_NAMES - names)


def test_default_scope_runs_everything_in_eager_and_session_and_the_subset_elsewhere():
    cases = catalogue()
    chosen = _selected(check.plan_units(_args(), cases))
    everything = [c.id for c in cases]
    quick = [c.id for c in cases if c.name in check.QUICK_NAMES and c.api in check.PRIMARY_SURFACES]
    assert set(chosen) == {(m, d) for m in MODES for d in (False, True)}
    for det in (False, True):
        assert chosen[("eager", det)] == everything
        assert chosen[("session", det)] == everything
        assert chosen[("function", det)] == quick
        assert chosen[("xla", det)] == quick
    assert {c.api for c in cases if c.id in quick} == set(check.PRIMARY_SURFACES)


def test_full_quick_modes_determinism_and_filter():
    cases = catalogue()
    full = _selected(check.plan_units(_args("--full"), cases))
    assert all(len(ids) == len(cases) for ids in full.values())
    quick = _selected(check.plan_units(_args("--quick"), cases))
    assert all(all(i.split(":")[1] in check.QUICK_NAMES for i in ids) for ids in quick.values())
    narrow = _selected(
        check.plan_units(
            _args("--modes", "xla,eager", "--determinism", "on", "-k", "sparse"), cases
        )
    )
    assert set(narrow) == {("eager", True), ("xla", True)}
    assert all(":" in i and "sparse" in i for ids in narrow.values() for i in ids)


def test_bad_mode_is_a_usage_error(capsys):
    assert check_command.run(_args("--modes", "eager,graph")) == 2
    assert "unknown mode" in capsys.readouterr().err


def _result(mode="eager", det=False, problems=(), raised=False, orders=2):
    return check.Result("nn.dense:x", "nn.dense", mode, det, list(problems), raised=raised,
                        grad_orders=orders)  # fmt: skip


def test_columns_classify_by_mode_then_by_aspect():
    signatures = [{"problems": []}, {"problems": ["differs"]}]
    results = [
        _result(),
        _result(problems=["loss: values differ"]),
        _result(problems=["grad_logits: values differ", "hvp_logits: values differ"]),
        _result(raised=True),
        _result(raised=True, problems=["error: message 'x' not in tfxent's 'y'"]),
        _result(orders=0),
        _result("session", problems=["loss: values differ"]),
        _result("xla"),
        _result("eager", True, problems=["loss: signed zeros differ"]),
    ]
    table = check_report.columns(results, signatures)
    assert table["signatures"] == {"checked": 2, "failed": 1}
    assert table["values"] == {"checked": 4, "failed": 1}
    assert table["gradients_1"] == {"checked": 3, "failed": 1}
    assert table["gradients_2"] == {"checked": 3, "failed": 1}
    assert table["errors"] == {"checked": 2, "failed": 1}
    assert table["v1_graph"] == {"checked": 1, "failed": 1}
    assert table["xla"] == {"checked": 1, "failed": 0}
    assert table["determinism"] == {"checked": 1, "failed": 1}
    assert [check_report.cell(table[k]) for k in ("xla", "values")] == ["✓", "✗ 1"]
    assert check_report.cell(check_report.columns([], [])["xla"]) == "—"


def test_signatures_match_installed_tf_and_pin_the_tf1_contract():
    rows = check_report.compare_signatures()
    assert [r for r in rows if r["problems"]] == []
    functions = {r["function"] for r in rows}
    assert "tfxent.nn.softmax_cross_entropy_with_logits" in functions
    assert "tfxent.compat.v1.nn.softmax_cross_entropy_with_logits_v2" in functions
    assert "tfxent.softmax_cross_entropy_with_logits" in functions  # the _sentinel contract


def test_crash_guard_only_where_the_table_says_tf_crashes(monkeypatch):
    by_id = {c.id: c for c in catalogue()}
    zero = by_id["nn.dense:zero_classes"]
    segfaults = _versions.has("dense_zero_classes_segfault")
    assert crashes.tf_would_crash(zero, "eager", False) is segfaults
    monkeypatch.setattr(_versions, "has", lambda key, *a, **k: True)
    assert crashes.tf_would_crash(zero, "eager", False)
    assert crashes.tf_would_crash(zero, "session", False)
    assert not crashes.tf_would_crash(zero, "xla", False)
    assert not crashes.tf_would_crash(zero, "eager", True)
    assert not crashes.tf_would_crash(by_id["nn.sparse:zero_classes"], "eager", False)
    assert not crashes.tf_would_crash(by_id["nn.dense:f32_soft"], "eager", False)
    # Labels that broadcast the class axis to 0 reach the same crash (measured on 2.16.2).
    f32 = np.float32
    for logits, labels in (((2, 1), (2, 0)), ((2, 0), (2, 1)), ((1, 0), (2, 0))):
        case = Case("broadcast", "nn.dense", np.zeros(labels, f32), np.zeros(logits, f32))
        assert crashes.tf_would_crash(case, "eager", False)
        assert not crashes.substitute_known(case)


def test_a_crash_without_a_tabulated_answer_is_reported_not_run(monkeypatch):
    monkeypatch.setattr(_versions, "has", lambda key, *a, **k: key == "dense_zero_classes_segfault")
    case = Case("broadcast", "nn.dense", np.zeros((2, 0), np.float32), np.zeros((2, 1), np.float32))
    result = runner.compare(case, "eager")
    assert not result.ok and "not comparable" in result.problems[0]


def test_units_on_a_crashing_version_compare_tfxent_with_other_versions(monkeypatch):
    """Pretend to be 2.16: the zero-class cases must not call TF, and tfxent must give
    what the other versions give."""
    monkeypatch.setattr(_versions, "has", lambda key, *a, **k: key == "dense_zero_classes_segfault")
    ids = ("nn.dense:zero_classes", "nn.dense:zero_by_zero", "v1.dense_v2:rank1_zero_classes")
    for mode in ("eager", "function", "session"):
        results = check.run_unit(check.Unit(mode, False, ids))
        assert all(r.substituted for r in results)
        assert [r.problems for r in results] == [[], [], []]


def test_outcome_problems_catch_wrong_answers():
    expected = {"error": None, "shape": (2,), "dtype": "float32"}
    good = Outcome(values={"loss": np.zeros(2, np.float32)}, dtypes={"loss": "float32"})
    assert crashes.outcome_problems(good, expected) == []
    negative = Outcome(values={"loss": -np.zeros(2, np.float32)}, dtypes={"loss": "float32"})
    assert crashes.outcome_problems(negative, expected)
    raised = Outcome(error=ValueError("boom"))
    assert crashes.outcome_problems(raised, expected)


def test_ulp_distance_counts_representable_values():
    one = np.float32(1.0)
    up = np.nextafter(one, np.float32(2.0))
    assert tolerance.ulp_distance(np.array([one, 0.0]), np.array([one, -0.0])) == 0
    assert tolerance.ulp_distance(np.array([one], np.float32), np.array([up], np.float32)) == 1
    tiny = np.float32(1e-45)  # the smallest subnormal: -tiny and +tiny are 2 apart
    assert tolerance.ulp_distance(np.array([-tiny]), np.array([tiny])) == 2
    assert (
        tolerance.ulp_distance(np.array([np.nan], np.float32), np.array([np.nan], np.float32)) == 0
    )
    bf16 = tf.bfloat16.as_numpy_dtype
    assert tolerance.ulp_distance(np.array([1.0], bf16), np.array([1.0078125], bf16)) == 1
    assert tolerance.ulp_distance(np.array([1.0], np.float32), np.array([1.0])) is None
    assert not tolerance.bit_identical(np.array([0.0]), np.array([-0.0]))
    assert tolerance.bit_identical(np.array([np.nan, 2.0]), np.array([np.nan, 2.0]))


def test_closeness_of_outcomes_and_its_summary():
    same = np.array([1.0, 2.0], np.float32)
    near = np.array([1.0, np.nextafter(np.float32(2.0), np.float32(3.0))], np.float32)
    identical = Outcome(values={"loss": same, "grad_labels": None})
    assert runner._closeness(identical, Outcome(values={"loss": same.copy()})) == (True, 0)
    assert runner._closeness(identical, Outcome(values={"loss": near})) == (False, 1)
    assert runner._closeness(Outcome(), Outcome()) == (None, None)
    results = [
        _result(),
        _result(),
        _result(problems=["loss: values differ"]),
        _result(raised=True),
    ]
    for r, (kind, ulp) in zip(
        results,
        [("bit-identical", 0), ("within tolerance", 7), ("differing", 99), ("no values", None)],
        strict=True,
    ):
        r.closeness, r.max_ulp = kind, ulp
    summary = check_report.closeness(results)
    assert summary == {
        "bit-identical": 1, "within tolerance": 1, "differing": 1, "no values": 1, "known": 0,
        "max_ulp": 7,
    }  # fmt: skip
    assert check_report.identity_cell(summary) == "1/3"
    assert check_report.identity_cell(None) == "—"


def test_end_to_end_json_report(tmp_path, capsys):
    out = tmp_path / "report.json"
    status = cli.main(
        ["check", "-k", "nn.sparse:f32_int32$", "--modes", "eager", "-j", "1", "--json", str(out)]
    )
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert status == 0, printed
    assert report["ok"] and report["comparisons"] == 2 and report["cases"] == 1
    assert report["row"]["values"] == "✓" and report["row"]["xla"] == "—"
    assert set(report) >= {"tfxent", "tensorflow", "python", "op_build_seconds", "date", "row"}
    assert "compat_matrix.md row:" in printed and report["tensorflow"] in printed
    assert set(report["version_behaviours"]) == {b.key for b in _versions.BEHAVIOURS}
    closeness = report["closeness"]
    assert sum(closeness[kind] for kind in check_report.CLOSENESS) == report["comparisons"]
    assert closeness["differing"] == 0 and closeness["no values"] == 0
    assert "closeness to TF:" in printed and "bit-identical" in printed
    assert report["row"]["bit_identical"] == check_report.identity_cell(closeness)


@pytest.mark.slow
def test_worker_processes_give_the_same_results_as_one_process():
    units = check.plan_units(_args("--quick", "--modes", "eager", "-k", "sparse:f32"), catalogue())
    one = check.execute(units, 1)
    two = check.execute(units, 2)
    assert [(r.case, r.mode, r.deterministic, r.problems) for r in one] == [
        (r.case, r.mode, r.deterministic, r.problems) for r in two
    ]
