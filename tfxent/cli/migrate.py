"""``python -m tfxent migrate``: the command line of the codemod.

Exposes the ``DESCRIPTION`` / ``add_args`` / ``run`` triple that ``tfxent/__main__.py``
dispatches to. Results (diffs, the findings report) go to stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import textwrap
from pathlib import Path
from typing import TextIO

from tfxent.migrate._codemod import PRAGMA
from tfxent.migrate._engine import migrate_file, write_result
from tfxent.migrate._report import MigrationResult, summarize, summary_line, to_json, to_text

DESCRIPTION = (
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
        TF 0.x (logits, labels) order, calls that raised in TF 1.x, unparseable files)
  SAFE  a safe rewrite, applied by --write (identical loss and gradients on TF 2)
  INFO  nothing changes on TF 2 (e.g. tf.compat.v1 names kept); noted for completeness
  Each is printed as PATH:LINE:COL (PATH#cellN:LINE:COL in notebooks, N counting all cells).
  A comment '# {PRAGMA}' on a line of a site leaves it alone and unreported.

report:
  --report FILE writes the findings to FILE instead of stdout: JSON when FILE ends in
  .json ({{"summary": {{...}}, "files": [{{"path", "changed", "error", "findings": [...]}}]}}),
  text otherwise. --json prints the JSON report on stdout.

input: every file is read as TF 1.x code (tf.nn.X is the v1 function), so point it at
code not yet migrated. Its own output reads the same under TF 1.x and TF 2 (a second run
changes nothing). Hand-written TF 2 code whose labels' gradient must flow should spell
tf.compat.v2.nn.softmax_cross_entropy_with_logits (as the _v2 rewrite does) or carry the
'# {PRAGMA}' comment.

exit status: 0 OK; 1 a file could not be read or parsed, or (--check) changes or RISK
findings remain; 2 usage error or interrupted.
"""

_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})


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


def collect(paths: list[str]) -> list[tuple[Path, str]]:
    """Files to migrate, with the name to show for each; raises FileNotFoundError."""
    found: dict[Path, str] = {}
    for given in paths:
        path = Path(given)
        if path.is_file():
            found.setdefault(path.resolve(), given)
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
                for name in sorted(files):
                    if name.endswith((".py", ".ipynb")):
                        file = Path(root, name)
                        found.setdefault(file.resolve(), file.as_posix())
        else:
            raise FileNotFoundError(given)
    return [(path, display) for path, display in found.items()]


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
    out = stdout if stdout is not None else sys.stdout
    mode = getattr(args, "migrate_mode", "diff")
    try:
        files = collect(args.paths)
    except FileNotFoundError as exc:
        _log(f"tfxent migrate: no such file or directory: {exc}")
        return 2
    if not files:
        _log("tfxent migrate: no .py or .ipynb files found under the given paths")
    results: list[MigrationResult] = []
    try:
        for path, display in files:
            result = migrate_file(path, display, pin_v1=args.pin_v1, tf0_order=args.tf0_order)
            results.append(result)
            if result.error is not None:
                _log(f"tfxent migrate: {display}: left untouched: {result.error}")
            elif result.changed and mode == "diff":
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

    if counts["failed"]:
        return 1
    if mode == "check" and (counts["risk"] or counts["changed"]):
        return 1
    return 0
