"""`python -m tfxent check`: the parity catalogue against the installed tf.nn, as a report.

The selection and execution live in tfxent/parity/check.py, the report in
tfxent/parity/report.py; this module is the command line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

DESCRIPTION = """\
Run the parity catalogue against the installed tf.nn and print a report

Run tfxent's parity catalogue against the installed TensorFlow: every case calls tfxent and
tf.nn side by side in eager, tf.function, a v1 Session and XLA, with op determinism off and
on, and compares values, first- and second-order gradients, dtypes, shapes and errors. The
signatures of tfxent.nn and tfxent.compat.v1.nn are compared with TF's.

The default run covers the whole catalogue in eager and Session mode and a representative
subset (--quick's: a few cases per behaviour on tf.nn's two functions and compat.v1's dense
one) in tf.function and XLA, whose tracing and compilation dominate the time (~5 minutes on
2 cores); --full runs everything everywhere (~20 minutes), --quick the subset everywhere.

Prints a report per surface and mode, how many results are bit-identical to TF's (and the
largest ulp distance of the others), every difference with its problems, and this TF's row
of compat_matrix.md. Exit status: 0 parity, 1 differences, 2 usage error.
"""


def add_args(parser: argparse.ArgumentParser) -> None:
    from tfxent.parity.cases import MODES

    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--quick", action="store_true", help="the representative subset in every mode"
    )
    scope.add_argument(
        "--full", action="store_true", help="every case in every mode (tens of minutes)"
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run TF's and Keras's own test files from the installed wheels, plain and "
        "under tfxent.patch(), and print how many passed each way (1-4 minutes; "
        "docs/peers.md)",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated execution modes (default: {','.join(MODES)})",
    )
    parser.add_argument(
        "--determinism",
        choices=("off", "on", "both"),
        default="both",
        help="op determinism setting(s) to run under (default: both)",
    )
    parser.add_argument(
        "-k",
        "--cases",
        metavar="REGEX",
        help="only cases whose id (api:name, e.g. nn.sparse:bf16) matches REGEX",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="worker processes (default: up to 2 per the CPU count; 1 runs in this process)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log every unit of work, and each comparison's closeness, to stderr",
    )


def run(args: argparse.Namespace) -> int:
    from tfxent.parity import check, report

    try:
        check.parse_modes(args.modes)
        if args.cases:
            re.compile(args.cases)
    except (ValueError, re.error) as err:
        print(f"tfxent check: {err}", file=sys.stderr)
        return 2
    jobs = args.jobs if args.jobs is not None else check.default_jobs()
    result = report.build_report(args, jobs)
    print(report.render(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=1, sort_keys=False, default=str)
            out.write("\n")
        check.log(f"wrote {args.json}")
    ok = result["ok"]
    if args.peers:
        from tfxent.parity import peers

        figure = peers.check_summary()
        print(peers.describe(figure))
        ok = ok and not figure["problems"]
    return 0 if ok else 1
