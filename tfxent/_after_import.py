"""Run a function right after a module's first import completes (a tiny post-import hook).

`import tfxent` must not import TensorFlow (the codemod and the command line do not need
it), yet it promises that tfxent's ops are registered before `tf.saved_model.load`. This
finder lets the package wait for TensorFlow's own import to finish and register the ops
then. It sits first on `sys.meta_path`, answers only for the names it was given (once each),
delegates the search to the finders after it, and wraps the loader so that the callback runs
after the module body has executed. Nothing is imported here, so installing it costs nothing.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from types import ModuleType


class _CallbackLoader:
    """The real loader, plus a callback after `exec_module`."""

    def __init__(self, loader: object, callback: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: object) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module keeps its own loader (resources, reload, inspection see no wrapper).
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        try:
            self._callback(module)
        except Exception as err:  # the watched import itself succeeded: it must not fail
            warnings.warn(f"{module.__name__} imported, but {err!r}", stacklevel=2)

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)


class _Finder:
    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[[ModuleType], None]] = {}

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        callback = self.callbacks.pop(name, None)
        if callback is None:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = _CallbackLoader(spec.loader, callback)
                return spec
        return None


_finder = _Finder()


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call `callback(module)` once `name` is imported: now if it already is (an error
    propagates), else right after its first import completes (not if that import fails; an
    error is then a warning, so that the import does not fail for it)."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    _finder.callbacks[name] = callback
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
