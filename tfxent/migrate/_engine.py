"""Running the codemod on the text of one module: parse, rewrite, and what to say when the
text cannot be parsed or does not look like TF 1.x code."""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Mapping

import libcst as cst
from libcst.codemod import CodemodContext

from tfxent.migrate._codemod import XentMigrationCommand
from tfxent.migrate._elide import elide, restore
from tfxent.migrate._options import Options
from tfxent.migrate._report import Finding, MigrationResult, Risk, sort_findings

# Any of the three legacy names (and nn_ops' private helper), with its dotted prefix.
_SITE = re.compile(r"[\w.]*\b(?:sparse_)?softmax_cross_entropy_with_logits(?:_v2(?:_helper)?)?\b")
# Constructs that only TF 2 code uses, and spellings that mark TF 1.x (or compat.v1) code.
_TF2_SIGNS = re.compile(
    r"\bGradientTape\b|@tf\.function\b|class\s+\w+\(\s*(?:tf\.)?keras\.(?:Model|layers\.Layer)\b"
)
_TF1_SIGNS = re.compile(
    r"\bcompat\.v1\b|\bSession\b|\bplaceholder\b|\bvariable_scope\b|\bcontrib\b"
    r"|\bdisable_v2_behavior\b|\bget_variable\b|\btf\.layers\b"
)


class SourceError(Exception):
    """The source cannot be parsed; carries a 1-based (line, column)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def parse(code: str) -> cst.Module:
    """Parse with libcst (current Python grammar); raises SourceError when it cannot."""
    try:
        return cst.parse_module(code)
    except cst.ParserSyntaxError as exc:
        # Python's own parser names the problem and its line better than libcst's.
        try:
            ast.parse(code)
        except SyntaxError as syntax:
            line, column = syntax.lineno or 1, syntax.offset or 1
            raise SourceError(f"line {line}: {syntax.msg}", line, column) from exc
        except ValueError:  # e.g. null bytes
            pass
        raise SourceError(exc.message, exc.raw_line, exc.raw_column + 1) from exc


def _add_time(timings: dict[str, float] | None, phase: str, start: float) -> None:
    if timings is not None:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


def transform_code(
    code: str,
    path: str,
    options: Options,
    *,
    unparsed_imports: Mapping[str, str] | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[str, list[Finding]]:
    """Migrate Python source text; raises SourceError when it does not parse.

    ``unparsed_imports``: names whose import is in text that could not be parsed, with
    where that text is (a notebook cell), for the message of a call through them.
    ``timings``: seconds spent parsing and rewriting are added to its "parse" and "rewrite".
    """
    start = time.perf_counter()
    module, elided = elide(parse(code))
    _add_time(timings, "parse", start)
    start = time.perf_counter()
    command = XentMigrationCommand(
        CodemodContext(filename=path),
        path=path,
        options=options,
        unparsed_imports=unparsed_imports or {},
    )
    new_module = restore(command.transform_module(module), elided)
    findings = command.findings
    warning = tf2_warning(code, path, findings)
    if warning is not None:
        findings.append(warning)
    _add_time(timings, "rewrite", start)
    return new_module.code, sort_findings(findings)


def tf2_warning(code: str, path: str, findings: list[Finding]) -> Finding | None:
    """A RISK finding when code that plainly targets TF 2 would get TF 1.x semantics."""
    rewritten = sum(f.rewritten for f in findings)
    sign = _TF2_SIGNS.search(code)
    if not rewritten or sign is None or _TF1_SIGNS.search(code):
        return None
    line = code.count("\n", 0, sign.start()) + 1
    message = (
        f"this file looks like TF 2 code (`{sign.group().strip()}` on line {line}, no TF 1.x "
        f"API in sight), but it is read as TF 1.x: {rewritten} site(s) are rewritten to keep "
        "the v1 semantics (labels' gradient stopped). If the code already runs on TF 2, "
        "those rewrites change its gradients: leave it out with --exclude, or mark the "
        "sites '# tfxent: ignore'"
    )
    return Finding(path, line, sign.start() - code.rfind("\n", 0, sign.start()), Risk.RISK,
                   "tf2-code", message)  # fmt: skip


def scan_unparsed(
    code: str, path: str, where: str, cell: int | None = None, first_line: int = 1
) -> list[Finding]:
    """Each legacy name on the lines of text that could not be parsed, as a RISK finding,
    so that no site in it is forgotten (comment lines aside)."""
    findings = []
    for number, line in enumerate(code.splitlines(), start=first_line):
        if line.lstrip().startswith("#"):
            continue
        for match in _SITE.finditer(line):
            message = (
                f"`{match.group()}` in {where} that cannot be parsed: not checked and not "
                "rewritten; migrate this site by hand (or fix the syntax and run again)"
            )
            findings.append(
                Finding(
                    path, number, match.start() + 1, Risk.RISK, "unparsed-site", message, cell=cell
                )  # fmt: skip
            )
    return findings


def parse_error_finding(path: str, exc: SourceError, what: str, cell: int | None = None) -> Finding:
    """``what``: what is left untouched (the file, or a cell and why the rest is not)."""
    return Finding(
        path, exc.line, exc.column, Risk.RISK, "parse-error", f"cannot parse ({exc}); {what}",
        cell=cell,
    )  # fmt: skip


def migrate_source(
    code: str, filename: str = "<string>", *, pin_v1: bool = False, tf0_order: bool = False
) -> MigrationResult:
    """Migrate the text of one Python module (`pin_v1`, `tf0_order`: see :class:`Options`).

    Returns a :class:`MigrationResult` with the new code (``result.code``) and the findings
    (``result.findings``), each with file:line and a risk level. A source that does not
    parse comes back unchanged with ``result.error`` set, a ``parse-error`` finding, and an
    ``unparsed-site`` finding for each legacy name a line scan sees in it.

    >>> r = migrate_source("import tensorflow as tf\\n"
    ...     "loss = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z, dim=1)\\n")
    >>> print(r.code, end="")
    import tensorflow as tf
    loss = tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(y), logits=z, axis=1)
    """
    return migrate_module(code, filename, Options(pin_v1=pin_v1, tf0_order=tf0_order))


def migrate_module(
    code: str, filename: str, options: Options, timings: dict[str, float] | None = None
) -> MigrationResult:
    """:func:`migrate_source` with :class:`Options` (and ``timings``, see transform_code)."""
    try:
        new_code, findings = transform_code(code, filename, options, timings=timings)
    except SourceError as exc:
        findings = [
            parse_error_finding(filename, exc, "file left untouched and not checked"),
            *scan_unparsed(code, filename, "a file"),
        ]
        return MigrationResult(filename, code, code, sort_findings(findings), error=str(exc))
    return MigrationResult(filename, code, new_code, findings)
