"""`patch()`, `unpatch()` and `patched()`: run unmodified code on tfxent.

`patch()` replaces TF's five softmax cross-entropy functions by their tfxent twins wherever
TensorFlow and Keras look them up, so that existing programs, `tf.compat.v1.losses` and
Keras losses compute with tfxent's custom op without a changed line:

* the public API modules `tf.nn` (also `tf.compat.v2.nn`) and `tf.compat.v1.nn`;
* TF's internal modules `tensorflow.python.ops.nn` and `nn_ops`, through which
  `tf.compat.v1.losses.softmax_cross_entropy` / `sparse_softmax_cross_entropy` call
  `nn.softmax_cross_entropy_with_logits_v2` / `nn.sparse_softmax_cross_entropy_with_logits`
  (ops/losses/losses_impl.py);
* Keras 3 needs nothing more: its TF backend calls `tf.nn.softmax_cross_entropy_with_logits`
  and `tf.nn.sparse_softmax_cross_entropy_with_logits` through the `tf` module at call time
  (keras/src/backend/tensorflow/nn.py; ops/nn.py from Keras 3.16).

Each replacement is chosen by the identity of the TF function an attribute holds, never by
its name: `tf.nn.softmax_cross_entropy_with_logits` *is* nn_ops'
`softmax_cross_entropy_with_logits_v2`. `_TWINS` below lists TF's five functions and their
twins: the TF 2 API functions become `tfxent.nn`'s, the v1 API functions (including
`softmax_cross_entropy_with_logits_v2_helper`, which v1 calls `..._v2`) `tfxent.compat.v1.nn`'s.

`patch(strict=True)` installs tfxent's top level (the TF 1.15 contract with its `_sentinel`
guard) into `tf.compat.v1.nn` instead, so a positional legacy call raises TF 1.x's
ValueError rather than running with TF ≥ 2.12's silently swapped `(labels, logits)` order.
TF's internal modules keep the keyword-tolerant v1 twins: TF calls them itself.

Limits: patching is process-wide. A `tf.function` traced before `patch()` keeps what it traced
(retrace, e.g. compile the Keras model again). A name bound before `patch()` with
`from tensorflow.nn import softmax_cross_entropy_with_logits` keeps TF's function, and one bound
while patched keeps tfxent's after `unpatch()`.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["is_patched", "patch", "patched", "unpatch"]

# Where TF and Keras keep module-level references to the functions (loaded modules only).
_PACKAGES = ("tensorflow", "keras", "tf_keras")
# TF's functions by their nn_ops names: (the tfxent surface holding the twin, its name there).
_TWINS = {
    "softmax_cross_entropy_with_logits_v2": ("nn", "softmax_cross_entropy_with_logits"),
    "sparse_softmax_cross_entropy_with_logits_v2": (
        "nn",
        "sparse_softmax_cross_entropy_with_logits",
    ),
    "softmax_cross_entropy_with_logits": ("v1", "softmax_cross_entropy_with_logits"),
    "softmax_cross_entropy_with_logits_v2_helper": (
        "v1",
        "softmax_cross_entropy_with_logits_v2",
    ),
    "sparse_softmax_cross_entropy_with_logits": (
        "v1",
        "sparse_softmax_cross_entropy_with_logits",
    ),
}


@dataclass(frozen=True)
class _Replacement:
    module: types.ModuleType
    name: str
    original: Callable
    replacement: Callable


_lock = threading.RLock()
_installed: list[_Replacement] = []
_strict: bool | None = None  # None while unpatched


def _twins(strict: bool) -> tuple[dict[int, tuple], dict[int, tuple]]:
    """For every TF function, keyed by its id: (the function, its twin), in general and
    inside `tf.compat.v1.nn` (where `strict` puts the TF 1.15 contract)."""
    from tensorflow.python.ops import nn_ops

    from tfxent import _tf1
    from tfxent import nn as tfxent_nn
    from tfxent.compat.v1 import nn as tfxent_v1_nn

    surfaces = {"nn": tfxent_nn, "v1": tfxent_v1_nn}
    general, public_v1 = {}, {}
    for tf_name, (surface, name) in _TWINS.items():
        original = getattr(nn_ops, tf_name)
        general[id(original)] = (original, getattr(surfaces[surface], name))
        strict_twin = strict and surface == "v1"
        twin = getattr(_tf1 if strict_twin else surfaces[surface], name)
        public_v1[id(original)] = (original, twin)
    return general, public_v1


def _modules() -> list[types.ModuleType]:
    """Every loaded TF/Keras module, the API modules first (accessing them loads them)."""
    import tensorflow as tf
    from tensorflow.python.ops import nn, nn_ops

    found = [tf.nn, tf.compat.v2.nn, tf.compat.v1.nn, nn, nn_ops]
    for name, module in list(sys.modules.items()):
        if isinstance(module, types.ModuleType) and name.split(".")[0] in _PACKAGES:
            found.append(module)
    unique: dict[int, types.ModuleType] = {}
    for module in found:
        unique.setdefault(id(module), module)
    return list(unique.values())


def _install(strict: bool) -> None:
    import tensorflow as tf

    general, public_v1 = _twins(strict)
    for module in _modules():
        table = public_v1 if module is tf.compat.v1.nn else general
        for name, value in list(vars(module).items()):
            original, twin = table.get(id(value), (None, None))
            if original is not None and value is original:
                _installed.append(_Replacement(module, name, value, twin))
                setattr(module, name, twin)


def _restore() -> None:
    for entry in reversed(_installed):
        current = vars(entry.module).get(entry.name)
        if current is entry.replacement:
            setattr(entry.module, entry.name, entry.original)
        else:
            warnings.warn(
                f"tfxent.unpatch: {entry.module.__name__}.{entry.name} was replaced by someone "
                "else after tfxent.patch(); left as it is",
                RuntimeWarning,
                stacklevel=3,
            )
    _installed.clear()


def patch(strict: bool = False) -> None:
    """Make TF's softmax cross-entropy functions compute with tfxent, process-wide.

    Replaces the functions in `tf.nn`, `tf.compat.v1.nn` and in the modules through which
    `tf.compat.v1.losses` and Keras reach them (the module docstring lists them).
    Calling it again with the same `strict` does nothing; with the other `strict` it switches.

    Args:
      strict: install tfxent's top level (TF 1.15's keyword-only `_sentinel` contract) into
        `tf.compat.v1.nn`, so positional legacy calls raise instead of running.

    >>> import tensorflow as tf, tfxent
    >>> from tfxent.patch import patch, unpatch
    >>> patch()
    >>> tf.nn.softmax_cross_entropy_with_logits is tfxent.nn.softmax_cross_entropy_with_logits
    True
    >>> unpatch()
    >>> tf.nn.softmax_cross_entropy_with_logits is tfxent.nn.softmax_cross_entropy_with_logits
    False
    """
    global _strict
    strict = bool(strict)
    with _lock:
        if _strict == strict:
            return
        if _strict is not None:
            _restore()
        try:
            _install(strict)
        except BaseException:
            _restore()
            _strict = None
            raise
        _strict = strict


def unpatch() -> None:
    """Put back exactly the TF functions `patch()` replaced; does nothing when unpatched.

    An attribute that someone else replaced after `patch()` is left alone, with a warning.
    """
    global _strict
    with _lock:
        if _strict is None:
            return
        _restore()
        _strict = None


def is_patched() -> bool:
    """Whether `patch()` is in effect (strict or not)."""
    with _lock:
        return _strict is not None


@contextlib.contextmanager
def patched(strict: bool = False) -> Iterator[None]:
    """`with tfxent.patched():` patch for the block, then restore the state it found
    (unpatched, or patched with the `strict` it had), so blocks nest."""
    with _lock:
        previous = _strict
        patch(strict)
    try:
        yield
    finally:
        with _lock:
            if previous is None:
                unpatch()
            else:
                patch(previous)
