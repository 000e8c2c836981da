"""What real TF 1.x repositories exposed: notebook lines taken for IPython syntax, messages
and exit codes that disagreed, sites of unparseable files left unlisted, TF 2 files read as
TF 1.x without a word, and every file parsed even without a cross-entropy call."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from tfxent.cli import migrate as cli
from tfxent.migrate import Risk, migrate_notebook, migrate_source

SCE = "softmax_cross_entropy_with_logits"
CALL = f"loss = tf.nn.{SCE}(labels=y, logits=z)\n"
MIGRATED = f"loss = tf.nn.{SCE}(labels=tf.stop_gradient(y), logits=z)\n"


def notebook(*sources: str) -> str:
    cells = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
         "source": s.splitlines(keepends=True)}
        for s in sources
    ]  # fmt: skip
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def cell_sources(text: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(text)["cells"]]


def summary(result) -> list[tuple[int | None, int, str, str]]:
    return [(f.cell, f.line, f.risk.value, f.code) for f in result.findings]


def migrate(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="tfxent migrate")
    cli.add_args(parser)
    out = io.StringIO()
    return cli.run(parser.parse_args(list(argv)), stdout=out), out.getvalue()


# -- 1. notebook lines taken for IPython syntax ---------------------------------------------


def test_percent_continuing_an_expression_is_python_not_a_magic():
    cell = 'msg = ("loss %s"\n       % 1.0)\n' + CALL
    result = migrate_notebook(notebook("import tensorflow as tf", cell), "nb.ipynb")
    assert cell_sources(result.code)[1] == cell.replace(CALL, MIGRATED)
    assert summary(result) == [(2, 3, "safe", "v1-dense-call")]
    assert result.error is None and not result.failed


def test_question_mark_ending_a_docstring_line_is_python_not_help():
    cell = (
        'def f(y, z):\n    """Is this right?\n    """\n'
        f"    return tf.nn.{SCE}(labels=y, logits=z)\n"
    )
    result = migrate_notebook(notebook("import tensorflow as tf", cell), "nb.ipynb")
    assert cell_sources(result.code)[1] == cell.replace("labels=y", "labels=tf.stop_gradient(y)")
    assert summary(result) == [(2, 4, "safe", "v1-dense-call")]
    assert not result.failed


# -- 2. messages and exit status ------------------------------------------------------------


def test_call_whose_import_cell_does_not_parse_says_so():
    text = notebook('import tensorflow as tf\nprint "hi"', CALL)
    result = migrate_notebook(text, "nb.ipynb")
    assert summary(result) == [(1, 2, "risk", "parse-error"), (2, 1, "risk", "unresolved-name")]
    parse_error, unresolved = (f.message for f in result.findings)
    assert "this cell left untouched and not checked; the other cells are migrated" in parse_error
    assert "`tf` is imported in cell 1, which could not be parsed" in unresolved
    assert "star import" not in unresolved


def test_notebook_with_an_unparseable_cell_fails_like_an_unparseable_py_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb.ipynb").write_text(notebook("import tensorflow as tf", "print 'py2'", CALL))
    (tmp_path / "old.py").write_text("print 'py2'\nimport tensorflow as tf\n" + CALL)
    for mode in ("--diff", "--write"):
        for name in ("nb.ipynb", "old.py"):
            status, out = migrate(mode, name)
            assert status == 1, (mode, name)
            assert "1 failed" in out
    # The notebook's other cells are written, as its message says; the .py file is not.
    assert cell_sources((tmp_path / "nb.ipynb").read_text())[2] == MIGRATED
    assert (tmp_path / "old.py").read_text().endswith(CALL)


def test_bare_expression_statement_is_info():
    result = migrate_source(f"import tensorflow as tf\ntf.nn.{SCE}\n", "m.py")
    assert summary(result) == [(None, 2, "info", "discarded-reference")]
    assert not result.changed


def test_unparseable_file_lists_each_site_by_line_scan():
    source = (
        'print "a TF 0.x era script"\nimport tensorflow as tf\n'
        f"# tf.nn.{SCE} in a comment is no site\n"
        f"a = tf.nn.{SCE}(labels=y, logits=z); b = tf.nn.sparse_{SCE}(labels=i, logits=z)\n"
        f"c = nn.{SCE}_v2(labels=y, logits=z)\n"
    )
    result = migrate_source(source, "old.py")
    assert result.error is not None and result.code == source
    assert [(f.line, f.column, f.risk, f.code) for f in result.findings] == [
        (1, 1, Risk.RISK, "parse-error"),
        (4, 5, Risk.RISK, "unparsed-site"),
        (4, 70, Risk.RISK, "unparsed-site"),
        (5, 5, Risk.RISK, "unparsed-site"),
    ]
    assert f"`tf.nn.sparse_{SCE}` in a file that cannot be parsed" in result.findings[2].message


TF2_FILE = f"""\
import tensorflow as tf


class Model(tf.keras.Model):
    def train_step(self, x, y):
        with tf.GradientTape() as tape:
            loss = tf.nn.{SCE}(labels=y, logits=self(x))
        return tape.gradient(loss, self.trainable_variables)
"""


def test_plain_tf2_file_gets_a_visible_warning():
    result = migrate_source(TF2_FILE, "model.py")
    assert summary(result) == [(None, 4, "risk", "tf2-code"), (None, 7, "safe", "v1-dense-call")]
    assert "looks like TF 2 code" in result.findings[0].message
    # TF 1.x code that also uses GradientTape-free compat.v1 idioms gets no such warning.
    v1 = migrate_source(TF2_FILE.replace("tf.GradientTape()", "tf.compat.v1.Session()"), "m.py")
    assert "tf2-code" not in [f.code for f in v1.findings]


def test_exclude_leaves_out_files_and_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tf2").mkdir()
    (tmp_path / "tf2" / "model.py").write_text(TF2_FILE)
    (tmp_path / "single.py").write_text(TF2_FILE)
    (tmp_path / "legacy.py").write_text("import tensorflow as tf\n" + CALL)
    status, out = migrate("--check", ".")
    assert status == 1 and out.count("tf2-code") == 2
    status, out = migrate("--check", "--exclude", "tf2", "--exclude", "single.py", ".")
    assert "tf2-code" not in out and "legacy.py" in out
    assert out.endswith("1 file(s) scanned, 1 would be rewritten, 0 failed; "
                        "findings: 0 risk, 1 safe, 0 info (1 sites rewritten)\n")  # fmt: skip


# -- 4. speed: skipped before any parse, --stats, worker processes --------------------------


def _tree(root: Path, plain: int, with_calls: int) -> None:
    (root / "pkg").mkdir()
    for i in range(plain):
        (root / "pkg" / f"plain_{i}.py").write_text(f"import tensorflow as tf\nx{i} = tf.ones(3)\n")
    for i in range(with_calls):
        (root / "pkg" / f"loss_{i}.py").write_text("import tensorflow as tf\n" + CALL * (i + 1))


def test_stats_counts_files_skipped_before_any_parse(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _tree(tmp_path, plain=5, with_calls=2)
    (tmp_path / "pkg" / "alias.py").write_text("from tensorflow import nn as n\nf = n.relu\n")
    status, _ = migrate("--check", "--stats", "--jobs", "1", "pkg")
    assert status == 1
    err = capsys.readouterr().err
    assert "8 file(s) read, 5 skipped by the text check, 3 parsed, 2 with changes, 0 failed" in err
    for phase in ("find files", "text check", "migrate", "parse", "rewrite", "output"):
        assert phase in err


def test_worker_processes_give_the_serial_result(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _tree(tmp_path, plain=3, with_calls=20)
    serial = migrate("--check", "--json", "--jobs", "1", "--stats", "pkg")
    assert "1 process(es)" in capsys.readouterr().err
    parallel = migrate("--check", "--json", "--jobs", "2", "--stats", "pkg")
    assert "2 process(es)" in capsys.readouterr().err
    assert parallel == serial
    assert json.loads(serial[1])["summary"]["rewritten"] == sum(range(1, 21))


@pytest.mark.parametrize(
    "source",
    [
        f"from tensorflow.nn import {SCE} as xent\nl = xent(labels=y, logits=z)\n",
        f"from tensorflow.nn import *\nl = {SCE}(labels=y, logits=z)\n",
        f"import tensorflow as tf\nf = getattr(tf.nn, '{SCE}')\n",
        f"from tensorflow.python.ops import nn_ops\nl = nn_ops.{SCE}(labels=y, logits=z)\n",
    ],
)
def test_text_check_keeps_every_form_that_can_reach_a_site(source):
    from tfxent.migrate._files import may_need_migration

    assert may_need_migration(source.encode())


@pytest.mark.parametrize(
    ("source", "parsed"),
    [
        ("import tensorflow as tf\nx = tf.nn.relu(y)\n", False),
        ("from tensorflow import nn\nx = nn.relu(y)\n", True),
        ("from tensorflow.compat.v1 import (\n    nn,\n)\n", True),
        ("import tensorflow.python.ops.nn_ops as ops\n", True),
        ("import numpy as np\n", False),
    ],
)
def test_text_check_parses_files_importing_nn_from_tensorflow(source, parsed):
    from tfxent.migrate._files import may_need_migration

    assert may_need_migration(source.encode()) is parsed
