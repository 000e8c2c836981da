"""`python -m tools.matrix` (tools/matrix.py, tools/matrix_render.py) without running tox:
result parsing, version selection, a rendering that is a pure function of the results, and
compat_matrix.md as the rendering of the stored results."""

from __future__ import annotations

import json

import pytest
from conftest_helpers import REPO

from tfxent.parity import differences, report
from tools import matrix, matrix_render

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="20">
<testcase classname="tests.test_a" name="test_ok" />
<testcase classname="tests.test_a" name="test_bad[x]"><failure message="m" /></testcase>
<testcase classname="tests.test_b" name="test_worse"><failure message="m" /></testcase>
<testcase classname="tests.test_b" name="test_setup"><error message="e" /></testcase>
</testsuite></testsuites>
"""

FAULT = """tests/parity/test_parity_dense.py ....
Fatal Python error: Segmentation fault

Current thread 0x00007f (most recent call first):
  File "/x/site-packages/tensorflow/python/ops/gen_nn_ops.py", line 12068 in softmax
  File "/x/tfxent/parity/runner.py", line 117 in forward
  File "/x/tests/parity_helpers.py", line 21 in assert_parity
  File "/x/tests/parity/test_parity_dense.py", line 14 in test_dense_matches_tf
  File "/x/site-packages/_pytest/python.py", line 159 in pytest_pyfunc_call
"""


def test_parse_junit_counts_and_failing_ids(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    parsed = matrix.parse_junit(path)
    assert (parsed["passed"], parsed["failed"], parsed["skipped"]) == (14, 3, 3)
    assert parsed["failing"] == [
        "tests/test_a.py::test_bad[x]",
        "tests/test_b.py::test_setup",
        "tests/test_b.py::test_worse",
    ]


def test_crash_summary_names_the_innermost_test_frame():
    assert matrix.crash_summary(FAULT) == (
        "Segmentation fault in tests/parity/test_parity_dense.py::test_dense_matches_tf"
    )
    assert matrix.crash_summary("all fine") is None
    log = (
        "Traceback (most recent call last):\n  File ...\nImportError: cannot import name 'record'\n"
    )
    assert matrix.crash_summary(log) == "ImportError: cannot import name 'record'"


def test_versions_cover_2_12_to_2_21_and_nightly_in_priority_order():
    assert list(matrix.VERSIONS)[:10] == [f"2.{m}" for m in range(12, 22)]
    assert matrix.VERSIONS["nightly"] == "tf-nightly"
    assert matrix.selected("all")[:3] == ["2.21", "2.12", "2.16"]
    assert matrix.selected("all")[-1] == "nightly"
    assert matrix.selected("2.13,2.21") == ["2.21", "2.13"]
    with pytest.raises(ValueError, match="2.11"):
        matrix.selected("2.11")


def _result(version: str, ok: bool = True, failing=(), date="2026-01-01", seconds=41.7):
    row = {key: "✓" for key, _ in report.COLUMNS}
    failures = []
    if not ok:
        row["values"] = "✗ 1"
        failures = [
            {
                "case": "nn.dense:f32_soft",
                "mode": "eager",
                "deterministic": False,
                "problems": [f"loss: differs at {matrix.ROOT}/tfxent/x.py |", "second"],
            }
        ]
    return {
        "label": version.rsplit(".", 1)[0],
        "env": "tf" + version.rsplit(".", 1)[0],
        "tests": {"passed": 100, "failed": len(failing), "skipped": 2, "failing": list(failing)},
        "check": {
            "tensorflow": version,
            "python": "3.11.7",
            "date": date,
            "op_build_seconds": seconds,
            "row": row,
            "ok": ok,
            "signatures": [],
            "failures": failures,
        },
    }


def test_render_is_deterministic_apart_from_dates_and_timings():
    results = {"2.21": _result("2.21.0"), "2.12": _result("2.12.1", ok=False)}
    first = matrix_render.render(results)
    again = matrix_render.render(dict(reversed(list(results.items()))))
    assert first == again
    later = {
        "2.21": _result("2.21.0", date="2027-02-02", seconds=12.0),
        "2.12": _result("2.12.1", ok=False, date="2027-02-02", seconds=99.0),
    }
    rendered = matrix_render.render(later)
    assert rendered != first
    normalise = lambda text: text.replace("2027-02-02", "D").replace("2026-01-01", "D")  # noqa: E731
    assert normalise(rendered).replace("12 s", "T").replace("99 s", "T") == normalise(
        first
    ).replace("42 s", "T")


def test_render_has_a_row_per_version_and_explains_failures():
    results = {"2.21": _result("2.21.0"), "2.16": _result("2.16.2", failing=["tests/t.py::x"])}
    text = matrix_render.render(results)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    labels = [line.split("|")[1].strip() for line in table[1:]]
    assert labels[: len(matrix.VERSIONS)] == [
        "2.12", "2.13", "2.14", "2.15", "2.16.2", "2.17", "2.18", "2.19", "2.20", "2.21.0",
        "nightly",
    ]  # fmt: skip
    assert "not run" in table[1]
    assert "### TF 2.16.2" in text and "`tests/t.py::x`" in text
    assert "## Intentional differences" in text and "_sentinel" in text
    for difference in differences.DIFFERENCES:
        assert f"`{difference.pinned_by}`" in text
    assert "## Differences between TF versions that tfxent follows" in text
    assert "eager_error_name_suffix" in text


def test_clean_shortens_site_packages_and_project_paths():
    text = f"ImportError: x ({matrix.ROOT}/.tox/tf2.12/lib/python3.11/site-packages/tf/a.py)"
    assert matrix_render._clean(text) == "ImportError: x (<site-packages>/tf/a.py)"
    assert matrix_render._clean(f"at {matrix.ROOT}/tfxent/b.py") == "at tfxent/b.py"


def test_render_strips_machine_paths():
    text = matrix_render.render({"2.12": _result("2.12.1", ok=False)})
    assert str(matrix.ROOT) not in text
    assert "tfxent/x.py \\|" in text and "(+1 more)" in text


def test_green_needs_parity_and_no_failed_or_crashed_tests():
    assert matrix_render.green(_result("2.21.0"))
    assert not matrix_render.green(_result("2.21.0", ok=False))
    assert not matrix_render.green(_result("2.21.0", failing=["t"]))
    crashed = _result("2.21.0")
    crashed["tests"] = {"passed": None, "crash": "Segmentation fault"}
    assert not matrix_render.green(crashed)
    assert not matrix_render.green(None)


def test_results_without_a_bit_identical_column_show_a_dash():
    old = _result("2.21.0")
    del old["check"]["row"]["bit_identical"]
    text = matrix_render.render({"2.21": old})
    row = next(line for line in text.splitlines() if line.startswith("| 2.21.0 "))
    headings = next(line for line in text.splitlines() if line.startswith("| TF "))
    cells = dict(zip(headings.split(" | "), row.split(" | "), strict=True))
    assert cells["bit-identical"] == "—"
    assert cells["XLA"] == "✓"


def test_the_version_table_lists_only_the_rows_tfxent_follows():
    followed = {row[0].split("`")[1] for row in matrix_render.following_rows()}
    assert "dense_zero_classes_segfault" not in followed
    assert "eager_error_name_suffix" in followed


def test_compat_matrix_md_is_the_rendering_of_the_stored_results():
    results = {}
    for label, env in matrix_render.VERSIONS.items():
        path = REPO / "compat" / "results" / f"{env}.json"
        results[label] = json.loads(path.read_text()) if path.exists() else None
    expected = matrix_render.render(results)
    assert (REPO / "compat_matrix.md").read_text(encoding="utf-8") == expected, (
        "compat_matrix.md is stale: run `python -m tools.matrix --render-only`"
    )
