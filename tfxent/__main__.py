"""`python -m tfxent {check,bench,migrate,build,doctor}`.

Each subcommand lives in its own module exposing `DESCRIPTION`, `add_args(parser)` and
`run(args) -> int`; this file only dispatches. Exit codes: 0 OK, 1 differences or failures
found, 2 usage error or interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Imported lazily, so `--help` and one subcommand never pay for the others.
SUBCOMMANDS = {
    "check": "tfxent.parity.check",
    "bench": "tfxent.bench",
    "migrate": "tfxent.cli.migrate",
    "build": "tfxent.commands.build",
    "doctor": "tfxent.commands.doctor",
}
_SUMMARIES = {
    "check": "run the parity catalogue against the installed tf.nn and print a report",
    "bench": "benchmark tfxent against tf.nn (and tf.nn under XLA) side by side",
    "migrate": "rewrite v1 cross-entropy calls to v2 with identical semantics",
    "build": "compile the custom op for the installed TF ahead of time",
    "doctor": "show TF, compiler, cache, op status and the backend in use",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tfxent",
        description="tfxent: TensorFlow-exact softmax cross-entropy on compiled custom ops.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = (argv if argv is not None else sys.argv[1:])[:1]
    for name, summary in _SUMMARIES.items():
        if chosen and chosen[0] == name:
            module = importlib.import_module(SUBCOMMANDS[name])
            command = sub.add_parser(
                name,
                help=summary,
                description=module.DESCRIPTION,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            module.add_args(command)
            command.set_defaults(run=module.run)
        else:
            sub.add_parser(name, help=summary)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("tfxent: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
