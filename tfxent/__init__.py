"""tfxent: TensorFlow-exact softmax cross-entropy on tfxent's own compiled custom ops.

Three surfaces, one core (docs/design.md):

* this module: the TF 1.15 `tf.nn` contract that legacy code was written against, with its
  `_sentinel` guard against positional calls;
* `tfxent.nn`: `tf.nn` of the installed TF;
* `tfxent.compat.v1.nn`: `tf.compat.v1.nn` of the installed TF.

Importing this package does not import TensorFlow, so `tfxent.migrate` and the command line
start fast without it. The surfaces and `audit`, `saved_model` are resolved on first use
(PEP 562). The ops are registered with TF as soon as both are loaded: at once when
TensorFlow is already imported, otherwise right after TensorFlow's own import completes,
so `import tfxent` before or after `import tensorflow` is all a SavedModel using the ops
needs before `tf.saved_model.load`.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from tfxent import _after_import
from tfxent._tf1 import (  # TF-free until called
    softmax_cross_entropy_with_logits,
    softmax_cross_entropy_with_logits_v2,
    sparse_softmax_cross_entropy_with_logits,
)
from tfxent.patch import patch, patched, unpatch  # TF-free until called

__version__ = "0.1.0"

__all__ = [
    "audit",
    "compat",
    "fused",
    "nn",
    "patch",
    "patched",
    "saved_model",
    "softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits_v2",
    "sparse_softmax_cross_entropy_with_logits",
    "unpatch",
]

# Submodules that import TensorFlow, loaded by the first `tfxent.<name>`.
_LAZY_SUBMODULES = frozenset({"compat", "fused", "nn", "saved_model"})


def __getattr__(name: str) -> object:
    if name not in _LAZY_SUBMODULES and name != "audit":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        if name == "audit":
            # tfxent.audit(), the runtime migration audit (also TFXENT_AUDIT=1): a function.
            return importlib.import_module(f"{__name__}._audit").audit
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as err:
        if (err.name or "").partition(".")[0] != "tensorflow" and "tensorflow" not in str(err):
            raise
        raise ImportError(
            f"tfxent.{name} needs TensorFlow 2.12-2.21, which is an optional extra so "
            "that it never installs a second TF: pip install 'tfxent[tensorflow]' or "
            "'tfxent[tensorflow-cpu]'"
        ) from err


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _register_ops(backend: ModuleType) -> None:
    # Loads (building if needed) the op library, then registers the ops' gradients, which a
    # SavedModel's functions need too. A build failure warns and calls fall back to the
    # composite path (or it raises with TFXENT_REQUIRE_OP=1).
    backend.preload()
    importlib.import_module(f"{__name__}._ops")
    # pfor (vectorized_map, jacobian) rules for the ops: registered with TF, like their gradients.
    importlib.import_module(f"{__name__}._pfor")
    # TFXENT_AUDIT=1 audits the whole process from here on (README, "Migrating from TF 1.x").
    importlib.import_module(f"{__name__}._audit").start_from_environment()


def _import_backend(_tensorflow: ModuleType) -> None:
    # When one of tfxent's own modules imported TensorFlow (it is still mid-import), that
    # code path loads the op itself once it is complete: `tfxent._backend` registers through
    # the hook below when its import finishes, and `python -m tfxent build` builds
    # explicitly. Importing the backend from here would run it against half-initialized
    # modules (e.g. `tfxent._build`, which imports TensorFlow before it defines its names).
    if any(
        name.startswith(f"{__name__}.") and getattr(module.__spec__, "_initializing", False)
        for name, module in list(sys.modules.items())
    ):
        return
    importlib.import_module(f"{__name__}._backend")


_after_import.when_imported(f"{__name__}._backend", _register_ops)
_after_import.when_imported("tensorflow", _import_backend)
