"""IPython syntax in notebook cells, found exactly where IPython finds it.

IPython (``IPython.core.inputtransformer2``) tokenizes a cell as Python, groups the tokens
into logical lines, and recognises its syntax only at the start of a logical line (``%magic``,
``!shell``, ``?obj`` and the other escapes), right after a top-level ``=`` (``x = %magic``,
``x = !cmd``), or as a logical line's last token (``obj?``). A ``%`` that continues an
expression inside brackets and a ``?`` inside a string are Python. It finds one piece at a
time, earliest first, and tokenizes again after each (what follows may not tokenize until
the piece is gone). This module follows those rules with the standard tokenizer, so it needs
no IPython; the tests check it against IPython's transformers. Each piece's physical lines
(with backslash continuations) are replaced by ``pass`` placeholders at the indentation of
its first line, which keeps the cell's line numbers and its blocks valid.
"""

from __future__ import annotations

import re
import tokenize
from collections.abc import Callable

_ESCAPES = frozenset({"!", "?", "%", ",", ";", "/"})  # IPython's single-character escapes
_INDENTS = frozenset({tokenize.INDENT, tokenize.DEDENT})
# What IPython's help transform accepts before a final `?` or `??` (else it leaves the line).
_HELP_TARGET = re.compile(r"%{0,2}(?!\d)[\w*]+(?:\.(?!\d)[\w*]+|\[-?[0-9]+\])*\?\??$")
# Cell magics whose body is Python (the rest make the cell another language).
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
MASK = "pass  # __tfxent_magic_{}__"
MASKED = re.compile(r"^[ \t]*pass  # __tfxent_magic_(\d+)__(?=\r?$)", re.MULTILINE)

Tokens = list[tokenize.TokenInfo]
# (first line, column, priority): IPython applies the earliest piece, help before escapes.
Found = tuple[int, int, int, Callable[[list[str]], tuple[int, int] | None]]


def _logical_lines(lines: list[str]) -> list[Tokens]:
    groups: list[Tokens] = [[]]
    depth = 0
    try:
        for token in tokenize.generate_tokens(iter(lines).__next__):
            groups[-1].append(token)
            if token.type == tokenize.NEWLINE or (token.type == tokenize.NL and depth <= 0):
                groups.append([])
            elif token.type == tokenize.OP and token.string in ("(", "[", "{"):
                depth += 1
            elif token.type == tokenize.OP and token.string in (")", "]", "}") and depth:
                depth -= 1
    except (tokenize.TokenError, SyntaxError):
        pass  # the cell ends inside a string or brackets (or dedents badly): lines so far
    return [group for group in groups if group]


def _continued(lines: list[str], line: int) -> int:
    """The last physical line of a piece continued with backslashes."""
    while line + 1 < len(lines) and lines[line].endswith("\\\n"):
        line += 1
    return line


def _first(group: Tokens) -> tokenize.TokenInfo | None:
    return next((t for t in group if t.type not in _INDENTS), None)


def _escaped(groups: list[Tokens]) -> Found | None:
    for group in groups:
        first = _first(group)
        if first is not None and first.string in _ESCAPES:
            line, column = first.start[0] - 1, first.start[1]

            def span(lines: list[str], line: int = line, column: int = column):
                end = _continued(lines, line)
                text = lines[line][column:]
                # `/` calls the name after it; IPython refuses a bare `/`.
                if text.startswith("/") and not text[1:].partition(" ")[0].strip():
                    return None
                return line, end

            return line, column, 10, span
    return None


def _assign_index(group: Tokens) -> int | None:
    depth = 0
    for index, token in enumerate(group):
        if token.string == "=" and depth == 0:
            return index
        if token.string in ("(", "[", "{"):
            depth += 1
        elif token.string in (")", "]", "}") and depth:
            depth -= 1
    return None


def _assigned(groups: list[Tokens]) -> list[Found]:
    """``x = %magic args`` and ``x = !cmd``: IPython's MagicAssign and SystemAssign."""
    found: dict[str, Found] = {}
    for group in groups:
        index = _assign_index(group)
        if index is None or index + 1 >= len(group):
            continue
        after = group[index + 1 :]
        token = after[0]
        if "%" not in found and token.string == "%" and len(after) > 1:
            if after[1].type == tokenize.NAME:
                found["%"] = (token.start[0] - 1, token.start[1], 10, _whole_piece(token))
        if "!" not in found and not group[index].line.strip().startswith("="):
            shell = next((t for t in after if not t.string.isspace()), None)
            if shell is not None and shell.string == "!":
                found["!"] = (shell.start[0] - 1, shell.start[1], 10, _whole_piece(shell))
    return list(found.values())


def _whole_piece(token: tokenize.TokenInfo) -> Callable[[list[str]], tuple[int, int]]:
    return lambda lines: (token.start[0] - 1, _continued(lines, token.start[0] - 1))


def _help_end(groups: list[Tokens]) -> Found | None:
    for group in groups:
        if len(group) > 2 and group[-2].string == "?":
            first = _first(group)
            line, column, last = first.start[0] - 1, first.start[1], group[-2].start[0] - 1

            def span(lines: list[str], line: int = line, column: int = column, last: int = last):
                text = "".join(lines[line : last + 1])[column:]
                return (line, last) if _HELP_TARGET.search(text.rstrip("\r\n")) else None

            return line, column, 5, span
    return None


def mask_lines(lines: list[str], masked: list[str]) -> list[str]:
    """Replace each piece of IPython syntax in a cell's lines (line endings kept) by
    placeholders; the original lines are appended to ``masked``, numbered by the markers."""
    work = list(lines)
    if work and not work[-1].endswith("\n"):
        work[-1] += "\n"  # as IPython reads a cell
    for _ in range(len(work) + 1):
        groups = _logical_lines(work)
        found = sorted(
            (f for f in (_escaped(groups), *_assigned(groups), _help_end(groups)) if f),
            key=lambda f: f[:3],
        )
        span = next((s for s in (f[3](work) for f in found) if s is not None), None)
        if span is None:
            break
        first, last = span
        indent = work[first][: len(work[first]) - len(work[first].lstrip(" \t"))]
        for index in range(first, last + 1):
            body = lines[index].rstrip("\r\n")
            work[index] = indent + MASK.format(len(masked)) + "\n"
            lines[index] = indent + MASK.format(len(masked)) + lines[index][len(body) :]
            masked.append(body)
    return lines


def mask_cell(source: str, masked: list[str]) -> str | None:
    """A cell's source with IPython syntax masked; None when a cell magic makes it another
    language than Python (``%%bash``...)."""
    lines = source.splitlines(keepends=True)
    if lines and lines[0].startswith("%%"):
        magic = lines[0][2:].split(maxsplit=1)[0] if lines[0][2:].strip() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return None
        body = lines[0].rstrip("\r\n")
        lines[0] = MASK.format(len(masked)) + lines[0][len(body) :]
        masked.append(body)
    return "".join(mask_lines(lines, masked))


def unmask(code: str, masked: list[str]) -> str:
    return MASKED.sub(lambda m: masked[int(m.group(1))], code)
