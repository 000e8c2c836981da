"""`python -m tfxent migrate`: the v1 -> v2 codemod's command line.

For now the command lives in tfxent.migrate.cli; this module is its entry in the command
list.
"""

from __future__ import annotations

from tfxent.migrate import cli as _cli

DESCRIPTION = "Rewrite v1 cross-entropy calls to v2 with identical semantics\n\n" + _cli.DESCRIPTION
add_args = _cli.add_args
run = _cli.run
