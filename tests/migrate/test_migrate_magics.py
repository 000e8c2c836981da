"""Notebook IPython syntax is found where IPython's own input transformers find it.

The reference is `IPython.core.inputtransformer2`: its token transformers are applied one
at a time, as `TransformerManager` does, and each transformed piece's original lines are
collected. `tfxent` masks exactly those lines, on generated cells mixing magics, shell
escapes, `?` help, `%` continuations, docstrings and strings holding IPython characters.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfxent.migrate._magics import MASKED, mask_cell, mask_lines, unmask

inputtransformer2 = pytest.importorskip("IPython.core.inputtransformer2")


def ipython_lines(cell: str) -> set[int]:
    """Indices of the lines IPython rewrites (token transformers only, as in a cell body)."""
    manager = inputtransformer2.TransformerManager()
    lines = cell.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    origin = list(range(len(lines)))  # original index of each current line
    changed: set[int] = set()
    for _ in range(100):
        tokens = inputtransformer2.make_tokens_by_line(lines)
        found = [t.find(tokens) for t in manager.token_transformers]
        for transformer in sorted(filter(None, found), key=lambda t: t.sortby()):
            try:
                new = transformer.transform(lines)
            except SyntaxError:
                continue
            start, taken = transformer.start_line, len(lines) - len(new) + 1
            changed.update(origin[start : start + taken])
            origin[start : start + taken] = [origin[start]]
            lines = new
            break
        else:
            return changed
    raise AssertionError("IPython kept transforming")


def tfxent_lines(cell: str) -> set[int]:
    masked = mask_lines(cell.splitlines(keepends=True), [])
    return {i for i, line in enumerate(masked) if MASKED.match(line.rstrip("\r\n"))}


FRAGMENTS = [
    "x = 1",
    "%time y = f(x)",
    "%matplotlib inline",
    "!pip install tensorflow==1.15",
    "!!ls",
    "files = !ls -la",
    "env = %env HOME",
    "tf.nn?",
    "tf.nn.softmax_cross_entropy_with_logits??",
    "?tf.nn",
    "%timeit?",
    "msg = ('loss %s'\n       % 1.0)",
    "value = (a\n    % b)",
    'def f(y):\n    """Is this right?\n    """\n    return y',
    "s = '''multi\n%not a magic\n!nor a shell\n'''",
    "t = 'what?'",
    'u = "%d items" % 3  # really?',
    "for i in range(2):\n    !echo $i\n    %time z = i",
    "if x:\n    tf.nn?\nelse:\n    pass",
    "result = f(a,\n           b)?",
    "call(1,\n     2)",
    "!echo one \\\n  two",
    "k = [1,\n     2]",
    "# a comment?",
    "w = x % 2",
    "x != 2",
    "/print hello",
    ",print a b",
    "d = {'a': 1,\n     '?': 2}",
    "",
]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8))
def test_masked_lines_are_the_lines_ipython_transforms(fragments):
    cell = "\n".join(f for f in fragments)
    if not cell.strip() or cell.startswith(("%%", "\n", " ")):
        return  # cell magics and leading blank or indented lines: IPython's clean-up steps
    assert tfxent_lines(cell) == ipython_lines(cell)


def test_every_fragment_alone_agrees():
    for fragment in filter(None, FRAGMENTS):
        assert tfxent_lines(fragment) == ipython_lines(fragment), fragment


def test_the_generated_cells_hold_both_kinds_of_line():
    # Guards the test above: the fragments give IPython something to transform and not.
    changed = {f for f in FRAGMENTS if f and ipython_lines(f)}
    assert len(changed) >= 10 and len(set(filter(None, FRAGMENTS)) - changed) >= 10


def test_masking_round_trips_and_keeps_line_numbers():
    cell = "import tensorflow as tf\nfor i in x:\n    !echo a \\\n  b\n    y = %env HOME\r\nz = 1"
    masked: list[str] = []
    text = mask_cell(cell, masked)
    assert text.count("\n") == cell.count("\n") and len(masked) == 3
    compile(text, "cell", "exec")  # the placeholders keep the block valid
    assert unmask(text, masked) == cell
