"""Bodies that cannot hold a site are left out of the analysis: same output, same findings."""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst
import pytest

from tfxent.migrate import _engine, migrate_notebook, migrate_source
from tfxent.migrate._elide import elide, restore

CORPUS = Path(__file__).parent / "migrate_corpus"
SCE = "softmax_cross_entropy_with_logits"
SOURCES = {
    "import_used_elsewhere": f"""\
        from tensorflow import nn


        def helper(x):
            return nn.relu(x)


        class Model:
            def unrelated(self, x):
                return nn.relu(x)

            def loss(self, y, z):
                return nn.{SCE}_v2(labels=y, logits=z)
        """,
    "global_rebinding": f"""\
        import tensorflow as tf


        def setup():
            global tf
            import tensorflow.compat.v1 as tf


        def loss(y, z):
            return tf.nn.{SCE}(labels=y, logits=z)
        """,
    "local_shadowing": f"""\
        import tensorflow as tf


        def other(tf):
            return tf.nn.{SCE}(labels=1, logits=2)


        def loss(y, z):  # tfxent must add no import: tf is bound
            return tf.nn.{SCE}(labels=y, logits=z)
        """,
}


def _no_elision(module):
    return module, []


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_same_output_and_findings_with_and_without_elision(name, monkeypatch):
    source = textwrap.dedent(SOURCES[name])
    fast = migrate_source(source, "m.py")
    monkeypatch.setattr(_engine, "elide", _no_elision)
    slow = migrate_source(source, "m.py")
    assert fast.code == slow.code and fast.findings == slow.findings
    assert fast.changed


def test_import_used_only_in_an_elided_body_is_kept():
    result = migrate_source(textwrap.dedent(SOURCES["import_used_elsewhere"]), "m.py")
    assert "from tensorflow import nn\n" in result.code
    assert f"tf.compat.v2.nn.{SCE}(labels=y, logits=z)" in result.code


@pytest.mark.parametrize(
    "name", sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".py", ".ipynb"))
)
def test_corpus_same_with_and_without_elision(name, monkeypatch):
    text = (CORPUS / name).read_text()
    run = migrate_notebook if name.endswith(".ipynb") else migrate_source
    fast = run(text, name)
    monkeypatch.setattr(_engine, "elide", _no_elision)
    slow = run(text, name)
    assert (fast.code, fast.findings) == (slow.code, slow.findings)


def test_elided_module_keeps_every_line_number_and_restores_exactly():
    source = (
        textwrap.dedent(SOURCES["import_used_elsewhere"])
        + "\n\ndef f(x):  # note\n"
        + ("    y = nn.relu(x)\n\n    # comment\n    return y\n")
    )
    module = cst.parse_module(source)
    reduced, originals = elide(module)
    assert len(originals) == 3  # helper, Model.unrelated (Model.loss holds a site) and f
    assert reduced.code.count("\n") == source.count("\n")
    assert "def loss(self, y, z):\n" in reduced.code and "nn.relu" not in reduced.code
    assert restore(reduced, originals).code == source
