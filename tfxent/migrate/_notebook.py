"""Jupyter notebooks: migrate the code cells, keep every other byte of the file.

All code cells are migrated as one module (joined with marker comments), so an import in
cell 1 resolves a call in cell 7, as it does when the notebook runs top to bottom. IPython
syntax (``%magic``, ``!shell``, ``x = !cmd``, ``obj?``), found where IPython finds it, is
masked with placeholder statements before parsing and restored afterwards; a cell magic
other than the few that run Python (``%%time`` ...) leaves its cell alone. A cell that does
not parse is reported, its legacy names listed by a line scan, and the other cells are
migrated. Only the ``source`` values of changed cells are re-encoded, in the file's own
layout, so diffs stay small and outputs are untouched.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring

from tfxent.migrate._engine import (
    SourceError,
    parse,
    parse_error_finding,
    scan_unparsed,
    transform_code,
)
from tfxent.migrate._magics import mask_cell, unmask
from tfxent.migrate._options import Options
from tfxent.migrate._report import Finding, MigrationResult, Risk, sort_findings

# Names an import statement binds, read from the text of a cell that cannot be parsed.
_IMPORT = re.compile(r"^[ \t]*import[ \t]+(.+)$|^[ \t]*from[ \t]+\S+[ \t]+import[ \t]+(.+)$", re.M)
_BOUND = re.compile(r"([\w.]+)(?:[ \t]+as[ \t]+(\w+))?")
_MARKER = "# __tfxent_cell_{}__\n"
_MARKERS = re.compile(r"^# __tfxent_cell_(\d+)__\n", re.MULTILINE)
_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?[0-9][0-9eE.+-]*|true|false|null")


def _source_spans(text: str) -> dict[tuple[object, ...], tuple[int, int]]:
    """Character spans of ``cells[i].source`` and of its list items, by JSON path."""
    spans: dict[tuple[object, ...], tuple[int, int]] = {}

    def value(i: int, path: tuple[object, ...]) -> int:
        i = _WS.match(text, i).end()
        start, char = i, text[i]
        if char in "{[":
            close = "}" if char == "{" else "]"
            i, n = _WS.match(text, i + 1).end(), 0
            while text[i] != close:
                key: object = n
                if char == "{":
                    key, i = scanstring(text, i + 1)
                    i = _WS.match(text, i).end() + 1  # past ':'
                i = _WS.match(text, value(i, (*path, key))).end()
                n += 1
                if text[i] == ",":
                    i = _WS.match(text, i + 1).end()
            i += 1
        elif char == '"':
            _, i = scanstring(text, i + 1)
        else:
            i = _SCALAR.match(text, i).end()
        if len(path) >= 3 and path[0] == "cells" and path[2] == "source":
            spans[path] = (start, i)
        return i

    value(0, ())
    return spans


def _render_source(text: str, spans: dict, cell: int, new: str, ascii_only: bool) -> str:
    """The JSON for a cell's new source, laid out like the value it replaces."""
    start, end = spans[("cells", cell, "source")]
    if text[start] == '"':
        return json.dumps(new, ensure_ascii=ascii_only)
    items = [json.dumps(line, ensure_ascii=ascii_only) for line in new.splitlines(keepends=True)]
    first, second = spans.get(("cells", cell, "source", 0)), spans.get(("cells", cell, "source", 1))
    if first is None:  # was empty: nbformat's own layout, one space deeper than the key
        line_start = text.rfind("\n", 0, start) + 1
        base = _WS.match(text, line_start).group().lstrip("\r\n")
        open_ws, sep, close_ws = "\n" + base + " ", ",\n" + base + " ", "\n" + base
    else:
        last = max(k[3] for k in spans if k[:3] == ("cells", cell, "source") and len(k) == 4)
        open_ws = text[start + 1 : first[0]]
        sep = text[first[1] : second[0]] if second else "," + open_ws
        close_ws = text[spans[("cells", cell, "source", last)][1] : end - 1]
    return "[" + open_ws + sep.join(items) + close_ws + "]" if items else "[]"


def _cell_text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _imported_names(source: str) -> set[str]:
    names = set()
    for match in _IMPORT.finditer(source):
        for item in (match.group(1) or match.group(2)).strip("()\\ \t").split(","):
            bound = _BOUND.search(item)
            if bound is not None:
                names.add(bound.group(2) or bound.group(1).split(".")[0])
    return names


def _joined(python: dict[int, str]) -> tuple[str, dict[int, int]]:
    """The cells as one module, and the module line where each cell starts."""
    joined, starts, line = "", {}, 1
    for index, source in python.items():
        joined += _MARKER.format(index) + source
        starts[index] = line + 1
        line += 1 + source.count("\n")
    return joined, starts


def migrate_notebook(
    text: str,
    path: str,
    *,
    pin_v1: bool = False,
    tf0_order: bool = False,
    timings: dict[str, float] | None = None,
) -> MigrationResult:
    """Migrate the code cells of a notebook's JSON text; everything else stays as it is
    (`pin_v1`, `tf0_order`: see :class:`Options`; `timings`: see ``transform_code``)."""
    try:
        notebook = json.loads(text)
        cells = notebook["cells"]
    except (ValueError, KeyError, TypeError) as exc:
        error = f"not a notebook this tool can read (nbformat 4 JSON): {exc}"
        finding = Finding(path, 1, 1, Risk.RISK, "parse-error", error)
        return MigrationResult(path, text, text, [finding], error=error)
    language = notebook.get("metadata", {}).get("kernelspec", {}).get("language", "python")
    if language != "python":
        note = f"kernel language is {language!r}: not checked"
        return MigrationResult(path, text, text, [Finding(path, 1, 1, Risk.INFO, "skipped", note)])

    options = Options(pin_v1=pin_v1, tf0_order=tf0_order)
    findings: list[Finding] = []
    masked: list[str] = []
    python: dict[int, str] = {}  # cell index -> masked source
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code" or not _cell_text(cell).strip():
            continue
        source = mask_cell(_cell_text(cell), masked)
        if source is None:
            if "cross_entropy" in _cell_text(cell):
                note = "cell magic: this cell is not Python and was not checked"
                findings.append(
                    Finding(path, 1, 1, Risk.INFO, "skipped-cell", note, cell=index + 1)
                )
            continue
        python[index] = source if source.endswith("\n") else source + "\n"

    joined, starts = _joined(python)
    try:
        new_joined, cell_findings = transform_code(joined, path, options, timings=timings)
    except SourceError:  # leave out the cells that do not parse on their own, and say so
        unparsed: dict[str, str] = {}  # a name imported in such a cell -> that cell
        for index in list(python):
            try:
                parse(python[index])
            except SourceError as exc:
                what = "this cell left untouched and not checked; the other cells are migrated"
                source = _cell_text(cells[index])
                findings.append(parse_error_finding(path, exc, what, cell=index + 1))
                findings.extend(scan_unparsed(source, path, "a cell", cell=index + 1))
                unparsed.update(dict.fromkeys(_imported_names(source), f"cell {index + 1}"))
                del python[index]
        joined, starts = _joined(python)
        try:
            new_joined, cell_findings = transform_code(
                joined, path, options, unparsed_imports=unparsed, timings=timings
            )
        except SourceError as exc:  # cells that parse alone but not together (rare)
            finding = parse_error_finding(path, exc, "file left untouched and not checked")
            return MigrationResult(path, text, text, [*findings, finding], error=str(exc))
    for f in cell_findings:
        index = max(i for i, s in starts.items() if s <= f.line)
        findings.append(Finding(f.path, f.line - starts[index] + 1, f.column, f.risk, f.code,
                                f.message, f.rewritten, cell=index + 1))  # fmt: skip

    pieces = _MARKERS.split(new_joined)  # [prefix, index, body, index, body, ...]
    new_sources = {int(i): body for i, body in zip(pieces[1::2], pieces[2::2], strict=True)}
    first = min(new_sources, default=None)
    if first is not None and pieces[0]:  # an import added above the first marker
        new_sources[first] = pieces[0] + new_sources[first]
    spans = _source_spans(text) if new_sources else {}
    ascii_only = text.isascii()
    edits = []
    for index, body in new_sources.items():
        original = _cell_text(cells[index])
        if not original.endswith("\n") and body.endswith("\n"):
            body = body[:-1]  # the newline was added for joining
        body = unmask(body, masked)
        if body != original:
            edits.append((spans[("cells", index, "source")], index, body))
    new_text = text
    for (start, end), index, body in sorted(edits, reverse=True):
        new_text = (
            new_text[:start]
            + _render_source(text, spans, index, body, ascii_only)
            + (new_text[end:])
        )
    return MigrationResult(path, text, new_text, sort_findings(findings))
