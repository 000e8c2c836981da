"""tfxent's sparse functions against the installed tf.nn (spec §4, §5, §6, §8–§10)."""

from __future__ import annotations

import pytest
from parity_helpers import DETERMINISM, EACH_MODE, assert_parity, cases_of


@DETERMINISM
@EACH_MODE
@pytest.mark.parametrize("case", cases_of("nn.sparse", "v1.sparse"))
def test_sparse_matches_tf(case, mode, deterministic):
    assert_parity(case, mode, deterministic)
