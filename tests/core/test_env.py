"""tfxent/_env.py declares every environment switch once, and the README's table matches it."""

from __future__ import annotations

import re

import pytest
from conftest_helpers import REPO

from tfxent import _env

# Variables only the tests read: the fake compiler's (tests/conftest_helpers.py) and the
# bit-identity test's profile (tests/parity/test_bit_identity.py); not tfxent's switches.
TEST_HARNESS = {"TFXENT_TEST_CXX_FAIL", "TFXENT_TEST_CXX_SLEEP", "TFXENT_BITS_PROFILE"}
DECLARED = [switch.name for switch in _env.SWITCHES]


def _readme_table() -> list[tuple[str, str]]:
    """(name, default) of each row of the README's table of switches."""
    text = (REPO / "README.md").read_text()
    start = text.index("| variable | default | effect |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        variable, default = (cell.strip() for cell in line.strip("|").split("|")[:2])
        name = re.match(r"`([A-Z_]+)", variable).group(1)
        rows.append((name, default.strip("`")))
    return rows


def test_readme_table_lists_the_declared_switches_in_order_with_their_defaults():
    assert _readme_table() == [(s.name, s.default) for s in _env.SWITCHES]


# A variable's name as code and docs write it: quoted, in backticks, after $ or ${, or
# followed by `=` (a keyword argument or NAME=value); not a Python constant such as
# TFXENT_FUNCTIONS in a test.
_MENTION = re.compile(r"""(?:(?<=["'`$]|\{)(TFXENT_[A-Z_]*[A-Z])\b)|\b(TFXENT_[A-Z_]*[A-Z])(?==)""")


def _names_in(paths) -> set[str]:
    names = set()
    for path in paths:
        for quoted, assigned in _MENTION.findall(path.read_text()):
            names.add(quoted or assigned)
    return names


def test_every_switch_the_package_mentions_is_declared():
    used = _names_in((REPO / "tfxent").rglob("*.py"))
    assert used, "the scan found no switch at all"
    allowed = set(DECLARED) | set(_env.INTERNAL)
    assert used <= allowed, sorted(used - allowed)


def test_every_switch_the_tests_set_is_declared():
    used = _names_in(p for p in (REPO / "tests").rglob("*.py") if p.name != "test_env.py")
    assert "TFXENT_REQUIRE_OP" in used
    assert used <= set(DECLARED) | TEST_HARNESS, sorted(used - set(DECLARED) - TEST_HARNESS)


def test_reading_an_undeclared_switch_is_an_error(monkeypatch):
    monkeypatch.setenv("TFXENT_REQUIRE_OP", "1")
    assert _env.flag("TFXENT_REQUIRE_OP") and _env.value("TFXENT_REQUIRE_OP") == "1"
    with pytest.raises(KeyError, match="not a declared switch"):
        _env.value("TFXENT_NO_SUCH_SWITCH")
