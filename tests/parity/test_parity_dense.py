"""tfxent.nn / compat.v1 `_v2` dense functions against the installed tf.nn
(docs/tf_behaviour.md#dense-forward, docs/tf_behaviour.md#dtypes,
docs/tf_behaviour.md#gradients–docs/tf_behaviour.md#xla)."""

from __future__ import annotations

import pytest
from parity_helpers import DETERMINISM, EACH_MODE, assert_parity, cases_of


@DETERMINISM
@EACH_MODE
@pytest.mark.parametrize("case", cases_of("nn.dense", "v1.dense_v2"))
def test_dense_matches_tf(case, mode, deterministic):
    assert_parity(case, mode, deterministic)
