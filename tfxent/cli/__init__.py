"""The commands of `python -m tfxent`, listed once.

Each command is a module with `DESCRIPTION: str` (its first line is the summary listed
below), `add_args(parser) -> None` and `run(args) -> int`. `tfxent/__main__.py` dispatches
from `COMMANDS` and imports only the module of the command it runs, so `--help` loads none
(the summaries are kept here for that; tests/core/test_cli.py checks them against the
modules). Every command exits 0 when all is well, 1 when it found differences or failures,
and 2 on a usage error or an interruption.
"""

from __future__ import annotations

from dataclasses import dataclass

OK, FAILED, USAGE = 0, 1, 2


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    summary: str  # the first line of the module's DESCRIPTION


COMMANDS = (
    Command(
        "check",
        "tfxent.cli.check",
        "Run the parity catalogue against the installed tf.nn and print a report",
    ),
    Command(
        "bench",
        "tfxent.cli.bench",
        "Benchmark tfxent against tf.nn and tf.nn under XLA, near the roofline",
    ),
    Command(
        "build",
        "tfxent.cli.build",
        "Compile the custom op for the installed TensorFlow ahead of time",
    ),
    Command(
        "doctor",
        "tfxent.cli.doctor",
        "Show TF, the compiler, the build cache, the op's status and the backend in use",
    ),
    Command(
        "migrate",
        "tfxent.cli.migrate",
        "Rewrite v1 cross-entropy calls to v2 with identical semantics",
    ),
)
