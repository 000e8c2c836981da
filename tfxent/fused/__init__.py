"""The language-model head without its logits: fused linear + sparse softmax cross-entropy
for large vocabularies (docs/fused.md).

* `linear_sparse_softmax_cross_entropy(hidden, kernel, labels, bias=None, ...)`: the
  per-token loss of `hidden @ kernel + bias`, a chunk of tokens at a time;
* `plan_chunk(tokens, vocab, dtype)`: the chunk it picks;
* `LinearCrossEntropyHead`: the Keras 3 layer that replaces `Dense(V)` +
  `SparseCategoricalCrossentropy(from_logits=True)` (imported on first use, so that this
  package does not import Keras).
"""

from __future__ import annotations

from tfxent.fused._api import linear_sparse_softmax_cross_entropy
from tfxent.fused._plan import chunk_size as plan_chunk

__all__ = ["LinearCrossEntropyHead", "linear_sparse_softmax_cross_entropy", "plan_chunk"]


def __getattr__(name: str) -> object:
    if name == "LinearCrossEntropyHead":
        from tfxent.fused.keras_head import LinearCrossEntropyHead

        return LinearCrossEntropyHead
    raise AttributeError(f"module 'tfxent.fused' has no attribute {name!r}")
