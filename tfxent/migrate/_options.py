"""What the user tells the codemod about their code that the code cannot say for itself."""

from __future__ import annotations

import dataclasses

PRAGMA = "tfxent: ignore"  # on any line of a site: leave it alone and do not report it


@dataclasses.dataclass(frozen=True)
class Options:
    # Rewrite stored references and *args/**kwargs calls, whose arguments cannot be checked,
    # to the explicit tf.compat.v1.nn name, which keeps the TF 1.x semantics on TF 2.
    pin_v1: bool = False
    # The code was written for TF 0.x: positional v1 calls are (logits, labels), the order
    # TF >= 2.12 reads as (labels, logits). Without it such calls are reported, not guessed.
    tf0_order: bool = False


DEFAULT_OPTIONS = Options()
