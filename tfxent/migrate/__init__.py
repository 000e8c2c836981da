"""``tfxent migrate``: rewrite TF 1.x softmax cross-entropy calls for TF 2, same semantics.

A LibCST codemod (it does not import TensorFlow). Library entry points:

* :func:`migrate_source` -- one module's text in, a :class:`MigrationResult` out
  (``.code``, ``.findings``, ``.changed``, ``.error``);
* :func:`migrate_notebook` -- the same for a notebook's JSON text;
* :func:`migrate_file` -- a ``.py`` or ``.ipynb`` path, nothing written;
* :class:`Options` -- what the code cannot say for itself (``pin_v1``, ``tf0_order``).

The command line lives in :mod:`tfxent.migrate.cli` (``python -m tfxent migrate --help``).
"""

from tfxent.migrate._codemod import PRAGMA, XentMigrationCommand
from tfxent.migrate._engine import migrate_file, migrate_source
from tfxent.migrate._notebook import migrate_notebook
from tfxent.migrate._options import Options
from tfxent.migrate._report import Finding, MigrationResult, Risk

__all__ = [
    "PRAGMA",
    "Finding",
    "MigrationResult",
    "Options",
    "Risk",
    "XentMigrationCommand",
    "migrate_file",
    "migrate_notebook",
    "migrate_source",
]
