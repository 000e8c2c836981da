"""`python -m tfxent COMMAND`: dispatches to the commands listed in `tfxent.cli`."""

from __future__ import annotations

import argparse
import importlib
import sys

from tfxent.cli import COMMANDS, USAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tfxent",
        description="tfxent: TensorFlow-exact softmax cross-entropy on compiled custom ops.",
        epilog="Exit status: 0 OK, 1 differences or failures, 2 usage error or interrupted.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = (sys.argv[1:] if argv is None else argv)[:1]
    for command in COMMANDS:
        if chosen != [command.name]:
            sub.add_parser(command.name, help=command.summary)
            continue
        # Only the command that runs is imported: the others may be heavy (TensorFlow).
        module = importlib.import_module(command.module)
        parser_ = sub.add_parser(
            command.name,
            help=command.summary,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_args(parser_)
        parser_.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return USAGE
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("tfxent: interrupted", file=sys.stderr)
        return USAGE


if __name__ == "__main__":
    sys.exit(main())
