"""The examples in the docstrings of tfxent.nn, tfxent.patch and tfxent._versions run.

Each module's doctests run with `doctest`, so a stale example fails here; only these
modules are imported (collecting doctests from every module would import the benchmark,
the codemod and the build machinery too).
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ("tfxent.nn", "tfxent.patch", "tfxent._versions")


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    return [test for test in doctest.DocTestFinder().find(module) if test.examples]


@pytest.mark.parametrize("name", MODULES)
def test_module_has_doctests(name):
    assert _examples(name), f"{name} lost its docstring examples"


@pytest.mark.parametrize(
    "test",
    [pytest.param(test, id=test.name) for name in MODULES for test in _examples(name)],
)
def test_doctest_passes(test):
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)
    assert result.attempted == len(test.examples)


def test_a_wrong_example_fails():
    parser = doctest.DocTestParser()
    wrong = parser.get_doctest(">>> 1 + 1\n3\n", {}, "wrong", "wrong.py", 0)
    result = doctest.DocTestRunner().run(wrong, out=lambda text: None)
    assert result.failed == 1
