"""Running the codemod on source text and on files, one file's failure isolated from others."""

from __future__ import annotations

import ast
import io
import os
import tempfile
import tokenize
from pathlib import Path

import libcst as cst
from libcst.codemod import CodemodContext

from tfxent.migrate._codemod import XentMigrationCommand
from tfxent.migrate._options import Options
from tfxent.migrate._report import Finding, MigrationResult, Risk, sort_findings


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


def transform_code(code: str, path: str, options: Options) -> tuple[str, list[Finding]]:
    """Migrate Python source text; raises SourceError when it does not parse."""
    module = parse(code)
    command = XentMigrationCommand(CodemodContext(filename=path), path=path, options=options)
    new_module = command.transform_module(module)
    return new_module.code, sort_findings(command.findings)


def parse_error_result(path: str, exc: SourceError, cell: int | None = None) -> Finding:
    return Finding(
        path,
        exc.line,
        exc.column,
        Risk.RISK,
        "parse-error",
        f"cannot parse ({exc}); file left untouched and not checked",
        cell=cell,
    )


def migrate_source(
    code: str, filename: str = "<string>", *, pin_v1: bool = False, tf0_order: bool = False
) -> MigrationResult:
    """Migrate the text of one Python module (`pin_v1`, `tf0_order`: see :class:`Options`).

    Returns a :class:`MigrationResult` with the new code (``result.code``) and the findings
    (``result.findings``), each with file:line and a risk level. A source that does not
    parse comes back unchanged with ``result.error`` set and a ``parse-error`` finding.

    >>> r = migrate_source("import tensorflow as tf\\n"
    ...     "loss = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z, dim=1)\\n")
    >>> print(r.code, end="")
    import tensorflow as tf
    loss = tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(y), logits=z, axis=1)
    """
    try:
        options = Options(pin_v1=pin_v1, tf0_order=tf0_order)
        new_code, findings = transform_code(code, filename, options)
    except SourceError as exc:
        return MigrationResult(
            filename, code, code, [parse_error_result(filename, exc)], error=str(exc)
        )
    return MigrationResult(filename, code, new_code, findings)


def read_source(path: Path) -> tuple[str, str]:
    """Decode a file the way Python would (PEP 263 cookie, BOM); keep its newlines."""
    raw = path.read_bytes()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    return raw.decode(encoding), encoding


def write_atomically(path: Path, data: bytes) -> None:
    """Replace a file in one step, keeping its permissions (no half-written source)."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tfxent")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def migrate_file(
    path: Path, display: str, *, pin_v1: bool = False, tf0_order: bool = False
) -> MigrationResult:
    """Migrate one ``.py`` or ``.ipynb`` file in memory (nothing is written here)."""
    from tfxent.migrate._notebook import migrate_notebook  # notebooks only when needed

    try:
        text, _ = read_source(path)
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        finding = Finding(display, 1, 1, Risk.RISK, "read-error", f"cannot read: {exc}")
        return MigrationResult(display, "", "", [finding], error=str(exc))
    try:
        if path.suffix == ".ipynb":
            return migrate_notebook(text, display, pin_v1=pin_v1, tf0_order=tf0_order)
        return migrate_source(text, display, pin_v1=pin_v1, tf0_order=tf0_order)
    except Exception as exc:  # a codemod bug must not take the other files down with it
        message = f"internal error, file left untouched: {type(exc).__name__}: {exc}"
        finding = Finding(display, 1, 1, Risk.RISK, "internal-error", message)
        return MigrationResult(display, text, text, [finding], error=message)


def write_result(path: Path, result: MigrationResult) -> None:
    _, encoding = read_source(path)
    write_atomically(path, result.code.encode(encoding))
