"""Observers of core calls: the extension point that tools (tfxent.audit) plug into.

The core never imports a tool; a tool registers a callable here instead. With no observer
registered a call costs one falsy check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class XentCall:
    """One call as the core sees it, after conversion to tensors and before the kernel."""

    kind: str  # "dense" or "sparse"
    labels: object  # as the caller passed them (a tensor, variable, array or list)
    logits: object
    axis: object  # the class axis after the dim/axis lookup (-1 for sparse)
    labels_stopped: bool  # True for the v1 dense function, which stops the labels' gradient


observers: list[Callable[[XentCall], None]] = []


def notify(call: XentCall) -> None:
    for observer in list(observers):
        observer(call)
