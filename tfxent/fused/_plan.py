"""How many tokens one chunk holds: the [chunk, V] blocks are the only memory that grows
with the vocabulary besides the [D, V] kernel gradient (docs/fused.md#memory)."""

from __future__ import annotations

import tensorflow as tf

# Bytes the [chunk, V] blocks of one chunk may take together. Large enough that each chunk's
# matmuls run at oneDNN's full speed (a few hundred rows), small enough that the blocks stay
# well under an eighth of the unfused head's [N, V] buffers at the shapes that need fusing.
BLOCK_BUDGET = 64 * 2**20
# Fewer rows than this make the matmuls bandwidth-bound on the [D, V] kernel.
MIN_CHUNK = 32
# Rows are taken in multiples of this, which suits the matmul's register blocking.
ROW_MULTIPLE = 16


def blocks_per_chunk(dtype: tf.DType, soft_cap: bool) -> int:
    """Live [chunk, V] blocks, in units of 4 bytes per element: the logits and their gradient,
    plus a float32 copy of the logits when a soft cap or a half dtype needs one."""
    half = dtype in (tf.float16, tf.bfloat16)
    blocks = 2.0 * dtype.size / 4  # logits and gradient in the input dtype
    if soft_cap or half:
        blocks += 2.0  # float32 logits and float32 gradient before the cast back
    return int(blocks + 0.5)


def chunk_size(tokens: int | None, vocab: int, dtype: tf.DType, soft_cap: bool = False) -> int:
    """The chunk for `tokens` rows of `vocab` classes: the most rows whose blocks fit
    BLOCK_BUDGET, a multiple of ROW_MULTIPLE, at least MIN_CHUNK, at most the rows there are."""
    per_row = max(1, vocab) * 4 * blocks_per_chunk(dtype, soft_cap)
    rows = max(MIN_CHUNK, BLOCK_BUDGET // per_row // ROW_MULTIPLE * ROW_MULTIPLE)
    if tokens is not None:
        rows = min(rows, max(1, tokens))
    return int(rows)


# Bytes of one [D, block] product of the kernel gradient's column-block accumulation.
COLUMN_BLOCK_BUDGET = 16 * 2**20


def column_block(hidden_size: int | None) -> int:
    """Vocabulary columns per block of the kernel gradient's accumulation: a [D, block]
    float32 product within COLUMN_BLOCK_BUDGET, at least 256 columns."""
    return max(256, COLUMN_BLOCK_BUDGET // (4 * max(1, hidden_size or 1024)) // 256 * 256)
