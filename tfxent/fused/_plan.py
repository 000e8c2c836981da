"""How many tokens one chunk holds: the [chunk, V] blocks are the only memory that grows
with the vocabulary besides the [D, V] kernel gradient (docs/fused.md#memory)."""

from __future__ import annotations

import tensorflow as tf

# Bytes the [chunk, V] blocks of one chunk may take together when only the loss is computed:
# the logits matmul (K = D) is already near oneDNN's full speed at a hundred rows, and the
# blocks stay under a twentieth of the unfused head's [N, V] logits at the shapes that need
# fusing.
LOSS_BLOCK_BUDGET = 64 * 2**20
# The same when gradients are computed. Larger, because the kernel gradient hᵀ·G has the chunk
# as its inner dimension: oneDNN's product runs at a tenth of its speed at 64 rows and near
# full speed only from a few hundred (docs/fused.md#memory). The logit gradient is written
# over the logits, so this is one block of the input dtype: 256 rows at V = 128256 float32.
GRADIENT_BLOCK_BUDGET = 192 * 2**20
# Fewer rows than this make the matmuls bandwidth-bound on the [D, V] kernel.
MIN_CHUNK = 32


def blocks_per_chunk(dtype: tf.DType, soft_cap: bool) -> int:
    """Live [chunk, V] blocks, in units of 4 bytes per element: the logits (their gradient is
    written over them), plus a float32 copy when a soft cap or a half dtype needs one."""
    half = dtype in (tf.float16, tf.bfloat16)
    blocks = dtype.size / 4
    if soft_cap or half:
        blocks += 1.0
    return max(1, int(blocks + 0.5))


def chunk_size(
    tokens: int | None,
    vocab: int,
    dtype: tf.DType,
    soft_cap: bool = False,
    gradients: bool = False,
) -> int:
    """The chunk for `tokens` rows of `vocab` classes: the largest power of two of rows
    whose blocks fit the budget (GRADIENT_BLOCK_BUDGET if `gradients` are computed, else
    LOSS_BLOCK_BUDGET), at least MIN_CHUNK, at most the rows there are.

    A power of two because oneDNN's logits matmul (TF 2.21, 2 threads) allocates a scratch
    buffer of up to 110 MiB beside its [chunk, 128256] output at 320 to 448 rows and none at
    256 or 512; it also divides the usual batch × sequence lengths into whole chunks."""
    budget = GRADIENT_BLOCK_BUDGET if gradients else LOSS_BLOCK_BUDGET
    per_row = max(1, vocab) * 4 * blocks_per_chunk(dtype, soft_cap)
    fit = max(1, budget // per_row)
    rows = max(MIN_CHUNK, 1 << (fit.bit_length() - 1))
    if tokens is not None:
        rows = min(rows, max(1, tokens))
    return int(rows)


# Bytes of one [D, block] product of the kernel gradient's column-block accumulation. Small:
# with 16 MiB products (4096 columns at D = 1024) a second block-sized buffer was live during
# the chunk loop in most runs, with 4 MiB products never (docs/fused.md#memory).
COLUMN_BLOCK_BUDGET = 4 * 2**20


def column_block(hidden_size: int | None) -> int:
    """Vocabulary columns per block of the kernel gradient's accumulation: a [D, block]
    float32 product within COLUMN_BLOCK_BUDGET, at least 256 columns."""
    return max(256, COLUMN_BLOCK_BUDGET // (4 * max(1, hidden_size or 1024)) // 256 * 256)
