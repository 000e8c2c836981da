"""``python -m tfxent migrate``: the command line of the codemod.

Exposes the ``DESCRIPTION`` / ``add_args`` / ``run`` triple that ``tfxent/__main__.py``
dispatches to. Results (diffs, the findings report) go to stdout; logs go to stderr.
Only the standard library is imported until :func:`run`, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tfxent.migrate._options import PRAGMA, Options

if TYPE_CHECKING:
    from tfxent.migrate._report import MigrationResult

DESCRIPTION = (
    "Rewrite v1 cross-entropy calls to v2 with identical semantics\n\n"
    "Rewrite TF 1.x softmax cross-entropy calls to the TF 2 API with identical semantics "
    "(labels wrapped in tf.stop_gradient as v1 did, dim -> axis, _sentinel removed, the _v2 "
    "name renamed), and report with file:line and a risk level the sites it will not rewrite."
)

_EPILOG = f"""\
modes (one of):
  --diff   print a unified diff of what would change, then the findings (default)
  --write  rewrite the files in place, then print the findings
  --check  change nothing; exit 1 if a file would change or a RISK finding remains (for CI)

findings, ranked:
  RISK  semantics change possible: a human must check the site (stored references,
        functools.partial, *args/**kwargs calls, positional calls that look like the
        TF 0.x (logits, labels) order, calls that raised in TF 1.x, files or cells that
        cannot be parsed and each cross-entropy name a line scan finds in them, files that
        look like TF 2 code)
  SAFE  a safe rewrite, applied by --write (identical loss and gradients on TF 2)
  INFO  nothing changes on TF 2 (e.g. tf.compat.v1 names kept, a name evaluated and
        discarded); noted for completeness
  Each is printed as PATH:LINE:COL (PATH#cellN:LINE:COL in notebooks, N counting all cells).
  A comment '# {PRAGMA}' on a line of a site leaves it alone and unreported.

report:
  --report FILE writes the findings to FILE instead of stdout: JSON when FILE ends in
  .json ({{"summary": {{...}}, "files": [{{"path", "changed", "error", "findings": [...]}}]}}),
  text otherwise. --json prints the JSON report on stdout.

input: every file is read as TF 1.x code (tf.nn.X is the v1 function), so point it at
code not yet migrated, and leave out code already written for TF 2 with --exclude (a file
that looks like TF 2 code gets a RISK finding, tf2-code). Its own output reads the same
under TF 1.x and TF 2 (a second run changes nothing). Hand-written TF 2 code whose labels'
gradient must flow should spell tf.compat.v2.nn.softmax_cross_entropy_with_logits (as the
_v2 rewrite does) or carry the '# {PRAGMA}' comment.

speed: files that do not contain "cross_entropy" (nor import nn from TensorFlow) are
skipped before any parse; with more than a few files to parse, --jobs worker processes
share them. --stats prints the counts and the time of each phase to stderr.

exit status: 0 OK; 1 a file (or a notebook cell) could not be read or parsed (the rest of
a notebook is still migrated and, with --write, written), or (--check) changes or RISK
findings remain; 2 usage error or interrupted.
"""


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the ``migrate`` arguments to ``parser`` (a subcommand parser)."""
    parser.description = textwrap.fill(DESCRIPTION, 88)
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a .py or .ipynb file, or a directory searched recursively for both "
        "(hidden directories and __pycache__ are skipped)",
    )
    mode = parser.add_mutually_exclusive_group()
    for flag, text in (
        ("--diff", "print a unified diff (the default)"),
        ("--write", "rewrite the files in place"),
        ("--check", "change nothing; exit 1 while changes or RISK findings remain"),
    ):
        mode.add_argument(
            flag, dest="migrate_mode", action="store_const", const=flag[2:], help=text
        )
    parser.set_defaults(migrate_mode="diff")
    parser.add_argument(
        "--report",
        metavar="FILE",
        type=Path,
        help="write the findings report to FILE (JSON if it ends in .json, else text)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--pin-v1",
        action="store_true",
        help="rewrite stored references and *args/**kwargs calls that would change meaning "
        "on TF 2 to the explicit tf.compat.v1.nn name, which keeps the TF 1.x semantics",
    )
    parser.add_argument(
        "--tf0-order",
        action="store_true",
        help="the code was written for TF 0.x: read positional v1 calls as (logits, labels), "
        "the order TF >= 2.12 reads as (labels, logits), and rewrite them to keywords "
        "(without it, calls that look like the 0.x order are reported and left alone)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATH",
        help="leave out this file or directory (e.g. code already written for TF 2); "
        "may be given several times",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="worker processes for large trees (default: the number of CPUs; 1: none)",
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="print files read, skipped, parsed and rewritten, and the time per phase",
    )


def unified_diff(result: MigrationResult) -> str:
    """A ``git apply``-able diff, marking a last line without a newline as diff does."""
    lines = difflib.unified_diff(
        result.original.splitlines(keepends=True),
        result.code.splitlines(keepends=True),
        fromfile=f"a/{result.path}",
        tofile=f"b/{result.path}",
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    """Run ``tfxent migrate`` with parsed ``args``; returns the exit status."""
    from tfxent.migrate._batch import Stats, collect, migrate_files
    from tfxent.migrate._files import write_result
    from tfxent.migrate._report import summarize, summary_line, to_json, to_text

    out = stdout if stdout is not None else sys.stdout
    mode = getattr(args, "migrate_mode", "diff")
    stats = Stats()
    start = time.perf_counter()
    try:
        files = collect(args.paths, getattr(args, "exclude", []))
    except FileNotFoundError as exc:
        _log(f"tfxent migrate: no such file or directory: {exc}")
        return 2
    if not files:
        _log("tfxent migrate: no .py or .ipynb files found under the given paths")
    start = stats.lap("find", start)
    options = Options(pin_v1=args.pin_v1, tf0_order=args.tf0_order)
    try:
        results = migrate_files(files, options, getattr(args, "jobs", 1), stats)
        start = time.perf_counter()
        for (path, display), result in zip(files, results, strict=True):
            if result.error is not None:
                _log(f"tfxent migrate: {display}: left untouched: {result.error}")
            elif result.failed:
                cells = sorted({f.cell for f in result.findings if f.code == "parse-error"})
                _log(
                    f"tfxent migrate: {display}: cell(s) {', '.join(map(str, cells))} could "
                    "not be parsed and are left as they are; the other cells are migrated"
                )
            if result.changed and mode == "diff":
                out.write(unified_diff(result))
            elif result.changed and mode == "write":
                try:
                    write_result(path, result)
                except OSError as exc:  # e.g. read-only: the file keeps its old content
                    result.error = f"could not write: {exc}"
                    _log(f"tfxent migrate: {display}: {result.error}")
                else:
                    _log(f"tfxent migrate: rewrote {display}")
    except KeyboardInterrupt:
        _log("tfxent migrate: interrupted")
        return 2

    written = mode == "write"
    if args.report is not None:
        as_json = args.report.suffix == ".json"
        report = to_json(results, written=written) if as_json else to_text(results, written=written)
        args.report.write_text(report, encoding="utf-8")
        _log(f"tfxent migrate: report written to {args.report}")
    if args.json:
        out.write(to_json(results, written=written))
    elif args.report is None:
        out.write(to_text(results, written=written))
    counts = summarize(results)
    if args.report is not None or args.json:  # the text report ends with this line itself
        _log(summary_line(counts, written=written))
    stats.lap("output", start)
    if getattr(args, "stats", False):
        print(stats.to_text(), end="", file=sys.stderr, flush=True)

    if counts["failed"]:
        return 1
    if mode == "check" and (counts["risk"] or counts["changed"]):
        return 1
    return 0
