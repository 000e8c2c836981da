"""`python -m tfxent build`: compile the custom op ahead of time (for images and CI)."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Compile the custom op for the installed TensorFlow ahead of time

Compile tfxent's custom op against the installed TensorFlow and store it in the build
cache, so that the first import in a job does not pay for the compile. Safe to run from
several processes at once: a file lock makes them compile once. Prints the library's path;
exit status 1 when the op cannot be built.
"""


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if a valid cached library exists"
    )


def run(args: argparse.Namespace) -> int:
    from tfxent import _build

    try:
        build = _build.ensure_built(force=args.force)
    except _build.BuildError as err:
        print(err, file=sys.stderr)
        return 1
    print(build.library)
    return 0
