"""Load tfxent's custom ops once per process, down a ladder that never loads a mismatch.

1. **prebuilt**: the wheel's library for the installed TF, if its recorded TF version and
   git hash match and its recorded checksum verifies (`_build_prebuilt`);
2. **compiled**: otherwise the library compiled on first use into the private build cache
   (`_build_compile`, `_build_cache`);
3. otherwise `load()` raises BuildError, and `_backend` takes the composite path with one
   warning that names the reason for each rung.

`ladder()` says which rung was taken and why each higher one was not (`tfxent doctor`).
The modules split the jobs: flags (`_build_flags`), the cache's trust rules and lock
(`_build_cache`), compiling (`_build_compile`), the wheel's libraries (`_build_prebuilt`).
The names other modules use are imported here, so callers need only `_build`.
"""

from __future__ import annotations

import ctypes
import sys
import threading

import tensorflow as tf

from tfxent import _build_prebuilt
from tfxent._build_cache import BuildError, cache_root
from tfxent._build_compile import (
    BuildPlan,
    cached_library_is_valid,
    ensure_built,
    plan,
    sanitizer,
    sanitizer_preload,
)
from tfxent._build_flags import optimisation_flags, target_features

__all__ = [
    "BuildError",
    "BuildPlan",
    "PREBUILT",
    "COMPILED",
    "cache_root",
    "cached_library_is_valid",
    "ensure_built",
    "ladder",
    "load",
    "loaded_path",
    "optimisation_flags",
    "plan",
    "sanitizer",
    "sanitizer_preload",
    "target_features",
]

PREBUILT = "prebuilt"
COMPILED = "compiled"

_load_lock = threading.Lock()
_loaded: dict[str, object] = {}


def _asan_runtime_loaded() -> bool:
    return hasattr(ctypes.CDLL(None), "__asan_init")


def _load_prebuilt() -> tuple[object | None, str | None]:
    """The prebuilt library loaded, or None and why not (said on stderr if it was refused)."""
    found = _build_prebuilt.find()
    if found.library is None:
        if found.refused:
            print(
                f"tfxent: refusing the prebuilt op for TF {tf.__version__}: {found.problem}. "
                "Compiling it instead.",
                file=sys.stderr,
                flush=True,
            )
        return None, found.problem
    try:
        module = tf.load_op_library(str(found.library))
    except tf.errors.NotFoundError as err:
        return None, f"{found.library} does not load into TF {tf.__version__}: {err}"
    _loaded["path"] = str(found.library)
    return module, None


def _load_compiled() -> object:
    build = ensure_built()
    if build.sanitize == "address" and not _asan_runtime_loaded():
        # Loading it anyway would abort the process ("ASan runtime does not come first in
        # initial library list").
        raise BuildError(
            f"tfxent: TFXENT_SANITIZE=address built {build.library}, but the "
            "AddressSanitizer runtime is not loaded in this process. Start Python with "
            f"LD_PRELOAD='{sanitizer_preload() or 'libasan.so libstdc++.so'}' "
            "ASAN_OPTIONS=detect_leaks=0, or unset TFXENT_SANITIZE."
        )
    try:
        module = tf.load_op_library(str(build.library))
    except tf.errors.NotFoundError as err:
        raise BuildError(
            f"tfxent: the compiled op at {build.library} does not load into TF "
            f"{tf.__version__}: {err}. Delete {build.directory} to rebuild it."
        ) from err
    _loaded["path"] = str(build.library)
    return module


def load() -> object:
    """Load the op library down the ladder; one library per process, ever (a second copy of
    the same ops breaks every call)."""
    with _load_lock:
        if "module" not in _loaded:
            module, why_not_prebuilt = _load_prebuilt()
            _loaded["why_not"] = {PREBUILT: why_not_prebuilt}
            if module is not None:
                _loaded["rung"] = PREBUILT
            else:
                try:
                    module = _load_compiled()
                except BuildError as err:
                    _loaded["why_not"][COMPILED] = str(err)
                    raise BuildError(
                        f"{err}\n(The prebuilt op was not used either: {why_not_prebuilt}.)"
                    ) from err
                _loaded["rung"] = COMPILED
            _loaded["module"] = module
        return _loaded["module"]


def loaded_path() -> str | None:
    """Path of the library loaded into this process, if any."""
    return _loaded.get("path")  # type: ignore[return-value]


def ladder() -> list[dict[str, object]]:
    """Each rung tried by `load()` in order: its name, whether it was taken, and why not."""
    why_not: dict = _loaded.get("why_not", {})  # type: ignore[assignment]
    rungs = []
    for rung in (PREBUILT, COMPILED):
        taken = _loaded.get("rung") == rung
        if taken or rung in why_not:
            rungs.append({"rung": rung, "taken": taken, "why_not": why_not.get(rung)})
    return rungs
