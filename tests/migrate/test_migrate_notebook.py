"""Notebooks: code cells migrated as one module, IPython syntax masked, other bytes kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfxent.migrate import Risk, migrate_notebook

CORPUS = Path(__file__).parent / "migrate_corpus"
SCE = "softmax_cross_entropy_with_logits"


def notebook(*sources: str, cell_type: str = "code", indent: int | None = 1) -> str:
    cells = [
        {"cell_type": cell_type, "execution_count": None, "metadata": {}, "outputs": [],
         "source": s.splitlines(keepends=True)}
        for s in sources
    ]  # fmt: skip
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=indent, ensure_ascii=False) + "\n"


def sources(text: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(text)["cells"]]


def test_corpus_notebook_cells_and_everything_else():
    text = (CORPUS / "notebook.ipynb").read_text()
    result = migrate_notebook(text, "nb.ipynb")
    before, after = json.loads(text), json.loads(result.code)
    # Only the two code cells that needed it changed; outputs, metadata, markdown kept.
    changed = [
        i for i, (a, b) in enumerate(zip(before["cells"], after["cells"], strict=True)) if a != b
    ]
    assert changed == [1, 3]
    assert sources(result.code)[1].startswith("import tensorflow as tf\n\n%matplotlib inline\n")
    assert "labels=tf.stop_gradient(labels), logits=logits, axis=-1" in sources(result.code)[3]
    assert sources(result.code)[2] == "!pip list | grep tensorflow"  # magic kept verbatim
    assert "café" in result.code  # non-ASCII kept unescaped, as the file had it
    assert [(f.cell, f.line, f.risk, f.code) for f in result.findings] == [
        (4, 3, Risk.SAFE, "v1-dense-call"),
        (5, 1, Risk.INFO, "skipped-cell"),  # %%bash
        (6, 2, Risk.RISK, "stored-reference"),  # %%time runs Python: checked
    ]
    assert result.findings[2].location == "nb.ipynb#cell6:2:6"


def test_unchanged_lines_of_the_file_are_byte_identical():
    text = (CORPUS / "notebook.ipynb").read_text()
    new = migrate_notebook(text, "nb.ipynb").code
    removed = [line for line in text.splitlines() if line not in new.splitlines()]
    assert removed == [f'    "    return nn.{SCE}(labels=labels, logits=logits, dim=-1)"']


def test_import_in_one_cell_resolves_a_call_in_another():
    text = notebook("import tensorflow as tf", "x = 1", f"l = tf.nn.{SCE}(labels=y, logits=z)")
    assert sources(migrate_notebook(text, "nb.ipynb").code)[2] == (
        f"l = tf.nn.{SCE}(labels=tf.stop_gradient(y), logits=z)"
    )


@pytest.mark.parametrize(
    "magic",
    ["%time x = 1", "!ls -la", "files = !ls", "y = %env HOME", "tf.nn?", "?tf.nn"],
)
def test_ipython_syntax_is_masked_and_restored(magic):
    cell = f"import tensorflow as tf\n{magic}\nl = tf.nn.{SCE}(labels=y, logits=z)\n"
    result = migrate_notebook(notebook(cell), "nb.ipynb")
    assert result.error is None
    assert sources(result.code)[0] == cell.replace("labels=y", "labels=tf.stop_gradient(y)")


def test_python_cell_magics_are_migrated_and_other_cell_magics_skipped():
    timed = f"%%time\nimport tensorflow as tf\nl = tf.nn.{SCE}(labels=y, logits=z)"
    shell = f"%%bash\necho tf.nn.{SCE}(labels=y)"
    result = migrate_notebook(notebook(timed, shell), "nb.ipynb")
    assert sources(result.code) == [timed.replace("labels=y", "labels=tf.stop_gradient(y)"), shell]
    assert [(f.cell, f.code) for f in result.findings] == [
        (1, "v1-dense-call"),
        (2, "skipped-cell"),
    ]


def test_magic_inside_a_block_keeps_the_block_valid():
    cell = (
        "import tensorflow as tf\nfor i in range(2):\n    !echo hi\n"
        f"l = tf.nn.{SCE}(labels=y, logits=z)"
    )
    result = migrate_notebook(notebook(cell), "nb.ipynb")
    assert sources(result.code)[0] == cell.replace("labels=y", "labels=tf.stop_gradient(y)")


def test_a_cell_that_does_not_parse_is_reported_and_the_others_still_migrate():
    text = notebook(
        "import tensorflow as tf", "print 'py2'", f"l = tf.nn.{SCE}(labels=y, logits=z)"
    )
    result = migrate_notebook(text, "nb.ipynb")
    assert sources(result.code)[1] == "print 'py2'"
    assert "tf.stop_gradient(y)" in sources(result.code)[2]
    assert [(f.cell, f.code, f.risk) for f in result.findings][0] == (2, "parse-error", Risk.RISK)


def test_broken_json_is_an_error_and_left_untouched():
    result = migrate_notebook('{"cells": [', "nb.ipynb")
    assert result.error and result.code == '{"cells": ['
    assert result.findings[0].code == "parse-error"


def test_non_python_kernel_is_skipped():
    text = json.dumps({"cells": [], "metadata": {"kernelspec": {"language": "R"}}, "nbformat": 4})
    result = migrate_notebook(text, "nb.ipynb")
    assert result.code == text and result.findings[0].risk is Risk.INFO


@pytest.mark.parametrize("indent", [1, 2, None])
def test_layout_of_the_json_is_kept(indent):
    text = notebook(f"import tensorflow as tf\nl = tf.nn.{SCE}(labels=y, logits=z)", indent=indent)
    new = migrate_notebook(text, "nb.ipynb").code
    assert new == text.replace("labels=y", "labels=tf.stop_gradient(y)")


def test_string_sources_and_empty_cells():
    nb = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "outputs": [], "source": []},
            {"cell_type": "code", "metadata": {}, "outputs": [],
             "source": f"import tensorflow as tf\nl = tf.nn.{SCE}(labels=y, logits=z)"},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    text = json.dumps(nb, indent=1)
    new = migrate_notebook(text, "nb.ipynb").code
    assert new == text.replace("labels=y", "labels=tf.stop_gradient(y)")
    assert migrate_notebook(new, "nb.ipynb").code == new
