"""Files: reading them as Python would, the cheap text check, migrating one file with its
failure isolated from the others, and writing the result in one step."""

from __future__ import annotations

import io
import os
import re
import tempfile
import tokenize
from pathlib import Path

from tfxent.migrate._engine import migrate_module
from tfxent.migrate._notebook import migrate_notebook
from tfxent.migrate._options import Options
from tfxent.migrate._report import Finding, MigrationResult, Risk

# A file can reach a legacy function only by spelling part of its name (every import form,
# alias, star import and getattr string spells "cross_entropy"), so a file without it has
# nothing to migrate. Files that import `nn` from TensorFlow in any form are parsed anyway.
_NEEDLE = b"cross_entropy"
_NN_IMPORT = re.compile(rb"\bimport\b[^\n;]*\bnn(?:_ops)?\b|\bimport[ \t]*[(\\]")


def may_need_migration(raw: bytes) -> bool:
    """False only for files that cannot contain a site (no parse needed to tell)."""
    return _NEEDLE in raw or (b"tensorflow" in raw and _NN_IMPORT.search(raw) is not None)


def decode_source(raw: bytes) -> tuple[str, str]:
    """Decode a file the way Python would (PEP 263 cookie, BOM); keep its newlines."""
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
    path: Path,
    display: str,
    *,
    pin_v1: bool = False,
    tf0_order: bool = False,
    timings: dict[str, float] | None = None,
) -> MigrationResult:
    """Migrate one ``.py`` or ``.ipynb`` file in memory (nothing is written here)."""
    try:
        text, _ = decode_source(path.read_bytes())
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        finding = Finding(display, 1, 1, Risk.RISK, "read-error", f"cannot read: {exc}")
        return MigrationResult(display, "", "", [finding], error=str(exc))
    try:
        if path.suffix == ".ipynb":
            return migrate_notebook(
                text, display, pin_v1=pin_v1, tf0_order=tf0_order, timings=timings
            )
        return migrate_module(text, display, Options(pin_v1=pin_v1, tf0_order=tf0_order), timings)
    except Exception as exc:  # a codemod bug must not take the other files down with it
        message = f"internal error, file left untouched: {type(exc).__name__}: {exc}"
        finding = Finding(display, 1, 1, Risk.RISK, "internal-error", message)
        return MigrationResult(display, text, text, [finding], error=message)


def write_result(path: Path, result: MigrationResult) -> None:
    _, encoding = decode_source(path.read_bytes())
    write_atomically(path, result.code.encode(encoding))
