"""Which implementation computes a call: tfxent's custom op or the composite of TF primitives.

One function decides, so the decision is easy to see (`tfxent doctor`, the `tfxent` debug
log, the op types in a traced graph). The custom op is the default for every CPU call; the
composite path exists only where the op cannot run (docs/design.md, "The core").
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import tensorflow as tf
from tensorflow.python.framework import ops
from tensorflow.python.ops import control_flow_util

from tfxent import _build, _env, _placement

OP = "custom-op"
COMPOSITE = "composite"
log = logging.getLogger("tfxent")

# Set by `composite_only`: why every call in this context uses the composite path.
_composite_reason: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tfxent_composite_reason", default=None
)


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str
    xla: bool = False


_state_lock = threading.Lock()
_state: dict[str, object] = {}


def op_library() -> object | None:
    """The loaded op library, or None (with one warning) when it cannot be built.

    `TFXENT_REQUIRE_OP=1` turns that into an error, so CI never passes on the fallback.
    """
    with _state_lock:
        if "library" not in _state:
            try:
                _state["library"] = _build.load()
            except _build.BuildError as err:
                if _env.flag("TFXENT_REQUIRE_OP"):
                    raise
                _state["library"] = None
                _state["error"] = str(err)
                warnings.warn(
                    f"{err}\ntfxent falls back to its composite path (slower, same results).",
                    RuntimeWarning,
                    stacklevel=4,
                )
        return _state["library"]


def preload() -> None:
    """Load (building if needed) the op library now, unless every call is forced onto the
    composite path: `import tfxent` then registers the ops that a SavedModel may need."""
    if not _env.flag("TFXENT_FORCE_COMPOSITE"):
        op_library()


def load_error() -> str | None:
    """Why the op library is unavailable, if it was tried and failed."""
    return _state.get("error")  # type: ignore[return-value]


def in_xla_context() -> bool:
    """True while tracing for XLA (`jit_compile=True`); read at trace time like TF's switch."""
    return control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph())


def choose(logits: tf.Tensor) -> Choice:
    """Pick the backend for one call (in graph mode: for the traced graph)."""
    if in_xla_context():
        return Choice(COMPOSITE, "inside an XLA context (jit_compile): TF's XLA semantics", True)
    if _env.flag("TFXENT_FORCE_COMPOSITE"):
        return Choice(COMPOSITE, "TFXENT_FORCE_COMPOSITE=1")
    reason = _composite_reason.get()
    if reason is not None:
        return Choice(COMPOSITE, reason)
    off_cpu = _placement.off_cpu_reason(logits)
    if off_cpu:
        return Choice(COMPOSITE, off_cpu)
    if op_library() is None:
        return Choice(COMPOSITE, "the custom op could not be built")
    return Choice(OP, "default")


@contextlib.contextmanager
def composite_only(reason: str) -> Iterator[None]:
    """Inside the block, `choose` picks the composite path for every call this thread (this
    context) makes or traces, with `reason` as the reason; other threads are unaffected.
    tfxent.saved_model's portable export traces with it."""
    token = _composite_reason.set(reason)
    try:
        yield
    finally:
        _composite_reason.reset(token)


def describe(choice: Choice) -> None:
    log.debug("tfxent backend: %s (%s)", choice.backend, choice.reason)
