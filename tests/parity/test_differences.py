"""The registry of known differences (tfxent/parity/differences.py) tells the truth.

Each difference with a comparable example still shows on it, and only as described (when it
no longer occurs, remove it from the registry); each `pinned_by` names a test that pytest
collects; and the runner accepts a comparison only when a difference explains every one of
its problems.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest_helpers import REPO, child_env

from tfxent.parity import crashes, differences, runner
from tfxent.parity.cases import Case
from tfxent.parity.differences import DIFFERENCES, Example

COMPARABLE = [d for d in DIFFERENCES if isinstance(d.example, Example)]


@pytest.mark.parametrize("difference", COMPARABLE, ids=lambda d: d.key)
def test_difference_still_occurs(difference):
    example = difference.example
    result = runner.compare(example.case, example.mode, deterministic=example.deterministic)
    if not difference.where.here() or crashes.tf_would_crash(
        example.case, example.mode, example.deterministic
    ):
        # This TF cannot show it: the example must then be at parity.
        assert not result.problems, result.problems
        return
    assert difference.where.covers(example.case, example.mode, example.deterministic)
    if difference.fragments:
        assert result.problems, f"{difference.key} no longer occurs: remove it from the registry"
        assert result.known is difference, result.problems
        assert result.ok
    else:
        # Within tolerance: the results must still differ in their bits.
        assert result.ok and not result.problems, result.problems
        assert result.identical is False, (
            f"{difference.key}: tfxent is now bit-identical to TF here: remove it"
        )


def _collected(node_ids: list[str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + node_ids,
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return {line.strip() for line in done.stdout.splitlines() if "::" in line}


def _missing(pins: list[str]) -> list[str]:
    """The pins that name no test pytest collects from their files."""
    files = sorted({pin.split("::")[0] for pin in pins})
    absent = [f for f in files if not (REPO / f).is_file()]
    collected = _collected([f for f in files if f not in absent])
    return [
        pin
        for pin in pins
        if pin.split("::")[0] in absent
        or not any(c == pin or c.startswith(pin + "[") for c in collected)
    ]


@pytest.mark.slow
def test_every_pinned_by_names_a_test_pytest_collects():
    from tfxent import _versions

    pins = sorted({d.pinned_by for d in DIFFERENCES} | {b.pinned_by for b in _versions.BEHAVIOURS})
    missing = _missing(pins)
    assert not missing, f"pinned_by names no collected test: {missing}"


@pytest.mark.slow
def test_pinned_by_check_fails_for_a_test_that_does_not_exist():
    real = "tests/parity/test_differences.py::test_keys_are_unique_and_every_entry_is_complete"
    wrong = "tests/parity/test_differences.py::test_that_does_not_exist"
    assert _missing([real, wrong, "tests/no_such_file.py::test_x"]) == [
        wrong,
        "tests/no_such_file.py::test_x",
    ]


def test_a_comparison_is_accepted_only_when_every_problem_is_explained():
    mul_order = differences.get("determinism-session-mul-order")
    assert mul_order.explains(["error: message 'Incompatible shapes: [2,4] vs. [2,3]' ..."])
    assert not mul_order.explains([])
    assert not mul_order.explains(["error: message 'Incompatible shapes' ...", "loss: dtype"])
    case = Case("class_mismatch", "nn.dense", np.ones((2, 3)), np.ones((2, 4)))
    assert differences.explaining(case, "session", True, ["Incompatible shapes"]) is mul_order
    assert differences.explaining(case, "eager", True, ["Incompatible shapes"]) is None
    assert differences.explaining(case, "session", False, ["Incompatible shapes"]) is None


def test_keys_are_unique_and_every_entry_is_complete():
    assert len({d.key for d in DIFFERENCES}) == len(DIFFERENCES)
    for d in DIFFERENCES:
        assert d.title and d.reason and d.pinned_by.startswith("tests/"), d.key
        assert "::" in d.pinned_by, d.key
        if not isinstance(d.example, Example):
            assert isinstance(d.example, str) and d.example, d.key
