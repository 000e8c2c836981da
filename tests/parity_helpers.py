"""Parametrisation shared by the parity test modules: every catalogue case of some surfaces,
in every execution mode, with determinism off and on."""

from __future__ import annotations

import pytest

from tfxent.parity.cases import MODES, Case, catalogue
from tfxent.parity.runner import compare

DETERMINISM = pytest.mark.parametrize("deterministic", [False, True], ids=["kernel", "determinism"])
EACH_MODE = pytest.mark.parametrize("mode", MODES)


def cases_of(*apis: str, names: tuple[str, ...] | None = None) -> list:
    chosen = [c for c in catalogue() if c.api in apis and (names is None or c.name in names)]
    return [pytest.param(c, id=c.id) for c in chosen]


def assert_parity(case: Case, mode: str, deterministic: bool) -> None:
    result = compare(case, mode, deterministic)
    assert result.ok, f"{result.verdict}:\n" + "\n".join(result.problems)
