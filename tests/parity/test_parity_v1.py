"""tfxent.compat.v1.nn.softmax_cross_entropy_with_logits (labels' gradient stopped) and the
argument handling of every surface against the installed TF (docs/tf_behaviour.md#signatures,
docs/tf_behaviour.md#gradients)."""

from __future__ import annotations

import pytest
from parity_helpers import DETERMINISM, EACH_MODE, assert_parity, cases_of


@DETERMINISM
@EACH_MODE
@pytest.mark.parametrize("case", cases_of("v1.dense"))
def test_v1_dense_matches_tf(case, mode, deterministic):
    assert_parity(case, mode, deterministic)
