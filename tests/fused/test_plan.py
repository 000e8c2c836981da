"""The chunk plan bounds the [chunk, V] blocks and never exceeds the tokens there are."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tfxent.fused import _plan, plan_chunk


@pytest.mark.parametrize("vocab", [1000, 32000, 128256, 256000, 10**6])
@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
@pytest.mark.parametrize(
    "gradients, budget",
    [(False, _plan.LOSS_BLOCK_BUDGET), (True, _plan.GRADIENT_BLOCK_BUDGET)],
)
def test_blocks_fit_the_budget(vocab, dtype, gradients, budget):
    chunk = plan_chunk(None, vocab, dtype, gradients=gradients)
    assert chunk & (chunk - 1) == 0 and chunk >= _plan.MIN_CHUNK
    block_bytes = chunk * vocab * 4 * _plan.blocks_per_chunk(dtype, soft_cap=False)
    assert block_bytes <= budget or chunk == _plan.MIN_CHUNK


def test_gradient_chunks_are_larger():
    """The kernel gradient's product has the chunk as its inner dimension (docs/fused.md#memory)."""
    assert plan_chunk(None, 128256, tf.float32, gradients=True) >= 256
    assert plan_chunk(None, 128256, tf.float32, gradients=True) > plan_chunk(
        None, 128256, tf.float32
    )


@pytest.mark.parametrize("tokens", [1, 5, 31, 10**6])
def test_never_more_rows_than_tokens(tokens):
    assert 1 <= plan_chunk(tokens, 32000, tf.float32) <= tokens


def test_column_blocks_are_bounded():
    for hidden in (1, 512, 1024, 2048, 8192):
        width = _plan.column_block(hidden)
        assert width >= 256 and (hidden * width * 4 <= _plan.COLUMN_BLOCK_BUDGET or width == 256)
