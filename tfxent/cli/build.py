"""`python -m tfxent build`: make the custom op ready ahead of time (for images and CI)."""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = """\
Compile the custom op for the installed TensorFlow ahead of time

Make tfxent's custom op ready for the installed TensorFlow, so that the first import in a job
does not pay for a compile: verify the wheel's prebuilt op if it has one for this TF, else
compile the op into the build cache. --from-source compiles even where a prebuilt op matches
(imports use it when TFXENT_FROM_SOURCE=1). Safe to run from several processes at once: a
file lock makes them compile once. Exit status 1 when the op cannot be built.
"""


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if a valid cached library exists"
    )
    parser.add_argument(
        "--from-source",
        action="store_true",
        help="compile locally even if the wheel's prebuilt op matches the installed TF",
    )


def run(args: argparse.Namespace) -> int:
    from tfxent import _build, _build_prebuilt

    if args.from_source:
        os.environ["TFXENT_FROM_SOURCE"] = "1"
    elif not args.force:
        found = _build_prebuilt.find()
        if found.library is not None:
            print("tfxent: the wheel's prebuilt op matches this TF; nothing to compile.")
            print(found.library)
            return 0
        print(f"tfxent: not using a prebuilt op: {found.problem}.", file=sys.stderr)
    try:
        build = _build.ensure_built(force=args.force)
    except _build.BuildError as err:
        print(err, file=sys.stderr)
        return 1
    if args.from_source and _build_prebuilt.available():
        print(
            "tfxent: compiled from source. Set TFXENT_FROM_SOURCE=1 for imports to load it "
            "instead of the wheel's prebuilt op.",
            file=sys.stderr,
        )
    print(build.library)
    return 0
