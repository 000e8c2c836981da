"""``tfxent migrate``: rewrite TF 1.x softmax cross-entropy calls for TF 2, same semantics.

A LibCST codemod; it imports neither TensorFlow nor, until one of the names below is first
used, libcst. Library entry points:

* :func:`migrate_source` -- one module's text in, a :class:`MigrationResult` out
  (``.code``, ``.findings``, ``.changed``, ``.error``);
* :func:`migrate_notebook` -- the same for a notebook's JSON text;
* :func:`migrate_file` -- a ``.py`` or ``.ipynb`` path, nothing written;
* :class:`Options` -- what the code cannot say for itself (``pin_v1``, ``tf0_order``).

The command line lives in :mod:`tfxent.cli.migrate` (``python -m tfxent migrate --help``).
"""

from __future__ import annotations

import importlib

# Public name -> the private module defining it, imported on first use (PEP 562).
_EXPORTS = {
    "PRAGMA": "_options",
    "Finding": "_report",
    "MigrationResult": "_report",
    "Options": "_options",
    "Risk": "_report",
    "XentMigrationCommand": "_codemod",
    "migrate_file": "_files",
    "migrate_notebook": "_notebook",
    "migrate_source": "_engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
