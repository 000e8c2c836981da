"""tfxent's sparse functions against the installed tf.nn (docs/tf_behaviour.md#dtypes,
docs/tf_behaviour.md#sparse-forward, docs/tf_behaviour.md#gradients,
docs/tf_behaviour.md#errors–docs/tf_behaviour.md#xla)."""

from __future__ import annotations

import pytest
from parity_helpers import DETERMINISM, EACH_MODE, assert_parity, cases_of


@DETERMINISM
@EACH_MODE
@pytest.mark.parametrize("case", cases_of("nn.sparse", "v1.sparse"))
def test_sparse_matches_tf(case, mode, deterministic):
    assert_parity(case, mode, deterministic)
