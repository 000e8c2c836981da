"""The `tfxent migrate` codemod: exact before/after, findings, idempotence (no TF needed)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tfxent.migrate import Risk, migrate_notebook, migrate_source

CORPUS = Path(__file__).parent / "migrate_corpus"
EXPECTED = CORPUS / "expected"
SNIPPETS = sorted(
    p.name
    for p in CORPUS.iterdir()
    if p.suffix in (".py", ".ipynb") and "unparseable" not in p.name
)
SCE = "softmax_cross_entropy_with_logits"


def mig(source: str, **kwargs):
    return migrate_source(textwrap.dedent(source), "m.py", **kwargs)


def codes(result) -> list[tuple[str, str, int]]:
    return [(f.risk.value, f.code, f.line) for f in result.findings]


def _migrate_path(path: Path, text: str):
    fn = migrate_notebook if path.suffix == ".ipynb" else migrate_source
    return fn(text, path.name)


# -- the corpus: exact expected output, and a second run changes nothing --------------------


@pytest.mark.parametrize("name", SNIPPETS)
def test_corpus_output_is_exactly_the_expected_file(name):
    result = _migrate_path(CORPUS / name, (CORPUS / name).read_text())
    assert result.error is None
    assert result.code == (EXPECTED / name).read_text()


@pytest.mark.parametrize("name", SNIPPETS)
def test_second_run_changes_nothing(name):
    first = _migrate_path(CORPUS / name, (CORPUS / name).read_text())
    second = _migrate_path(CORPUS / name, first.code)
    assert second.code == first.code
    assert not [f for f in second.findings if f.rewritten]


def test_expected_files_differ_from_inputs_where_a_rewrite_is_due():
    # Guards the golden test: identical before/after files would make it vacuous.
    changed = {n for n in SNIPPETS if (CORPUS / n).read_text() != (EXPECTED / n).read_text()}
    assert {"dense_keywords_dim.py", "dense_sentinel.py", "notebook.ipynb"} <= changed
    assert "dense_already_stopped.py" not in changed


# -- representative rewrites ------------------------------------------------------------------


def test_dense_call_gets_stop_gradient_and_axis():
    result = mig(f"""\
        import tensorflow as tf
        loss = tf.nn.{SCE}(labels=y, logits=z, dim=1, name="xent")
        """)  # fmt: skip
    assert result.code == (
        "import tensorflow as tf\n"
        f'loss = tf.nn.{SCE}(labels=tf.stop_gradient(y), logits=z, axis=1, name="xent")\n'
    )
    assert codes(result) == [("safe", "v1-dense-call", 2)]
    assert result.findings[0].location == "m.py:2:8"


def test_sentinel_removed_from_last_position_keeps_no_dangling_comma():
    result = mig(
        f"import tensorflow as tf\ntf.nn.sparse_{SCE}(labels=y, logits=z, _sentinel=None)\n"
    )
    assert result.code.endswith(f"tf.nn.sparse_{SCE}(labels=y, logits=z)\n")


def test_compat_v1_alias_is_spelled_through_compat_v2():
    result = mig(f"import tensorflow.compat.v1 as tf\nl = tf.nn.{SCE}(labels=y, logits=z)\n")
    assert result.code.endswith(
        f"l = tf.compat.v2.nn.{SCE}(labels=tf.stop_gradient(y), logits=z)\n"
    )


def test_v2_helper_renamed_without_stop_gradient():
    result = mig(f"import tensorflow as tf\nl = tf.nn.{SCE}_v2(labels=y, logits=z, dim=0)\n")
    assert result.code.endswith(f"l = tf.compat.v2.nn.{SCE}(labels=y, logits=z, axis=0)\n")
    assert codes(result) == [("safe", "v2-helper-call", 2)]


def test_import_added_only_when_no_tensorflow_name_exists():
    result = mig(f"from tensorflow.compat.v1.nn import {SCE}\nl = {SCE}(labels=y, logits=z)\n")
    assert result.code == (
        f"import tensorflow as tf\n\nl = tf.nn.{SCE}(labels=tf.stop_gradient(y), logits=z)\n"
    )
    taken = mig(f"from tensorflow import nn\ntf = 3\nl = nn.{SCE}(labels=y, logits=z)\n")
    assert "import tensorflow\n" in taken.code
    assert f"nn.{SCE}(labels=tensorflow.stop_gradient(y), logits=z)" in taken.code


@pytest.mark.parametrize(
    "stopped",
    [
        "tf.stop_gradient(y)",
        "tf.compat.v1.stop_gradient(y)",
        "array_ops.stop_gradient(y)",
        "gen_array_ops.stop_gradient(y)",
        "stop_gradient(y)",
        "tf.raw_ops.StopGradient(input=y)",
    ],
)
def test_labels_already_stopped_in_any_spelling_are_not_wrapped_again(stopped):
    source = f"""\
        import tensorflow as tf
        from tensorflow import stop_gradient
        from tensorflow.python.ops import array_ops, gen_array_ops
        l = tf.nn.{SCE}(labels={stopped}, logits=z)
        """
    result = mig(source)
    assert result.code == textwrap.dedent(source)
    assert result.findings == []


def test_a_local_stop_gradient_is_not_trusted():
    result = mig(
        "import tensorflow as tf\n"
        "def stop_gradient(x): return x\n"
        f"l = tf.nn.{SCE}(labels=stop_gradient(y), logits=z)\n"
    )
    assert "labels=tf.stop_gradient(stop_gradient(y))" in result.code


@pytest.mark.parametrize(
    ("source", "untouched"),
    [
        (f"def f(tf):\n    return tf.nn.{SCE}(labels=y, logits=z)\n", True),  # not tensorflow
        (f"import mylib.nn as nn\nnn.{SCE}(labels=y, logits=z)\n", True),
        (f"def {SCE}(labels, logits): pass\n{SCE}(labels=y, logits=z)\n", True),
        ("import tensorflow as tf\ntf.losses.softmax_cross_entropy(y, z)\n", True),
        (f"import tensorflow as tf\ntf.compat.v2.nn.{SCE}(labels=y, logits=z)\n", True),
        (f"import tensorflow as tf\nl = tf.nn.{SCE}(labels=y, logits=z)  # tfxent: ignore\n", True),
        (f"import tensorflow as tf\ntf.nn.{SCE}(labels=y, logits=z)\n", False),
    ],
)
def test_only_tensorflow_names_are_touched(source, untouched):
    result = mig(source)
    assert (result.code == source) is untouched
    assert (result.findings == []) is untouched


# -- positional calls and the 0.x order --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("labels, logits", "safe"),
        ("y_true, y_pred", "safe"),
        ("tf.one_hot(y, 10), model(x)", "safe"),
        ("a, b", "assumed"),
        ("logits, labels", "legacy"),
        ("y_pred, y", "legacy"),
        ("outputs, targets", "legacy"),
        ("tf.matmul(x, w) + b, y", "legacy"),
        ("model(x), y", "legacy"),
        ("self.logits, batch['labels']", "legacy"),
        ("net @ w, onehot", "legacy"),
        ("z, labels=y", "legacy"),  # the positional collides with labels=
    ],
)
def test_positional_calls_are_keyworded_unless_they_look_like_tf0(args, expected):
    source = f"import tensorflow as tf\nl = tf.nn.{SCE}({args})\n"
    result = mig(source)
    (finding,) = result.findings
    if expected == "legacy":
        assert result.code == source
        assert (finding.risk, finding.code, finding.rewritten) == (
            Risk.RISK, "positional-legacy-order", False,
        )  # fmt: skip
    else:
        assert "labels=tf.stop_gradient(" in result.code and "logits=" in result.code
        assert finding.rewritten
        assert finding.risk is (Risk.SAFE if expected == "safe" else Risk.RISK)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("z, y", "logits=z, labels=tf.stop_gradient(y)"),  # confirmed by nothing: assumed
        ("logits, labels", "logits=logits, labels=tf.stop_gradient(labels)"),
        ("tf.matmul(x, w), onehot", "logits=tf.matmul(x, w), labels=tf.stop_gradient(onehot)"),
        ("z, labels=y", "logits=z, labels=tf.stop_gradient(y)"),
        ("labels, logits", None),  # the names say (labels, logits): the statement is wrong
    ],
)
def test_tf0_order_reads_positional_calls_as_logits_then_labels(args, expected):
    source = f"import tensorflow as tf\nl = tf.nn.{SCE}({args})\n"
    result = migrate_source(source, "t.py", tf0_order=True)
    (finding,) = result.findings
    if expected is None:
        assert result.code == source
        assert (finding.code, finding.rewritten) == ("positional-order-contradicted", False)
        assert "--tf0-order states" in finding.message
    else:
        assert f"({expected})" in result.code and finding.rewritten


# -- dim / axis / _sentinel / missing arguments --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "out", "finding"),
    [
        ("dim=None, axis=1", "axis=1", ("safe", "v1-dense-call")),
        ("dim=1, axis=None", "axis=1", ("safe", "v1-dense-call")),
        ("dim=1, axis=2", None, ("risk", "dim-and-axis")),
        ("axis=1", "axis=1", ("risk", "axis-without-dim")),
        ("axis=None", "axis=None", ("safe", "v1-dense-call")),
        ("dim=d", "axis=d", ("safe", "v1-dense-call")),
    ],
)
def test_dim_and_axis(args, out, finding):
    source = f"import tensorflow as tf\nl = tf.nn.{SCE}(labels=y, logits=z, {args})\n"
    result = mig(source)
    assert codes(result) == [(*finding, 2)]
    if out is None:
        assert result.code == source
    else:
        assert f"(labels=tf.stop_gradient(y), logits=z, {out})" in result.code


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ("_sentinel=x, labels=y, logits=z", "sentinel-value"),
        ("logits=z", "missing-argument"),
        ("labels=y, logits=z, reduction=1", "unknown-argument"),
        ("a, b, c, d, e, f", "too-many-arguments"),
    ],
)
def test_calls_that_raised_in_tf1_are_reported_not_rewritten(args, code):
    source = f"import tensorflow as tf\nl = tf.nn.{SCE}({args})\n"
    result = mig(source)
    assert result.code == source
    assert codes(result) == [("risk", code, 2)]


# -- references and star-args ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "finding"),
    [
        (f"fn = tf.nn.{SCE}", ("risk", "stored-reference")),
        (f"fn = tf.nn.{SCE}_v2", ("risk", "stored-reference")),
        (f"fn = tf.compat.v1.nn.{SCE}", ("info", "stored-reference")),
        (f"fn = tf.nn.sparse_{SCE}", ("info", "stored-reference")),
        (f"fn = partial(tf.nn.{SCE}, dim=1)", ("risk", "partial-reference")),
        (f"out = tf.map_fn(tf.nn.{SCE}, xs)", ("risk", "passed-reference")),
        (f"name = tf.nn.{SCE}.__name__", ("risk", "reference")),
        (f"l = tf.nn.{SCE}(**kw)", ("risk", "star-args")),
        (f"l = tf.nn.{SCE}(*args)", ("risk", "star-args")),
        (f"l = tf.compat.v1.nn.{SCE}(**kw)", ("info", "star-args")),
        (f"l = tf.nn.sparse_{SCE}(**kw)", ("info", "star-args")),
    ],
)
def test_sites_that_cannot_be_rewritten_are_reported_with_line_and_risk(line, finding):
    source = f"import tensorflow as tf\nfrom functools import partial\n\n{line}\n"
    result = mig(source)
    assert result.code == source
    assert codes(result) == [(*finding, 4)]


def test_names_no_import_explains_are_reported_not_guessed():
    source = f"from common import *\nl = tf.nn.{SCE}(labels=y, logits=z)\nfn = tf.nn.{SCE}_v2\n"
    result = mig(source)
    assert result.code == source
    assert codes(result) == [("risk", "unresolved-name", 2), ("risk", "unresolved-name", 3)]
    assert result.findings[0].message.startswith(
        f"`tf.nn.{SCE}`: no import in this file binds `tf`"
    )


def test_pin_v1_keeps_v1_semantics_for_unrewritable_sites():
    source = f"""\
        import tensorflow as tf
        from tensorflow.nn import {SCE} as xent
        fn = tf.nn.{SCE}
        g = xent
        l = tf.nn.{SCE}(**kw)
        s = tf.nn.sparse_{SCE}(**kw)
        """
    result = mig(source, pin_v1=True)
    assert result.code == textwrap.dedent(f"""\
        import tensorflow as tf
        fn = tf.compat.v1.nn.{SCE}
        g = tf.compat.v1.nn.{SCE}
        l = tf.compat.v1.nn.{SCE}(**kw)
        s = tf.nn.sparse_{SCE}(**kw)
        """)  # fmt: skip
    assert [f.risk.value for f in result.findings] == ["safe", "safe", "safe", "info"]
    assert mig(result.code, pin_v1=True).code == result.code


# -- parsing, formatting, reports ----------------------------------------------------------------


def test_unparseable_source_is_reported_and_left_untouched():
    source = (CORPUS / "unparseable_py2.py").read_text()
    result = migrate_source(source, "old.py")
    assert result.code == source and not result.changed
    assert "Missing parentheses" in result.error
    assert codes(result) == [("risk", "parse-error", 1), ("risk", "unparsed-site", 3)]


def test_windows_newlines_and_modern_syntax_are_kept():
    source = (
        f"import tensorflow as tf\r\nif (n := 2):\r\n    match n:\r\n        case 2:\r\n"
        f"            l = tf.nn.{SCE}(labels=y, logits=z)  # keep me\r\n"
    )
    result = migrate_source(source)
    assert result.code == source.replace("labels=y", "labels=tf.stop_gradient(y)")


def test_findings_report_text_and_json():
    from tfxent.migrate._report import to_json, to_text

    result = mig(
        f"import tensorflow as tf\nfn = tf.nn.{SCE}\nl = tf.nn.{SCE}(labels=y, logits=z)\n"
    )
    text = to_text([result], written=False)
    assert text.splitlines()[0].startswith("m.py:2:6: RISK (semantics change possible): stored-ref")
    assert text.splitlines()[1].startswith("m.py:3:5: SAFE (safe rewrite): v1-dense-call")
    assert "1 file(s) scanned, 1 would be rewritten, 0 failed; findings: 1 risk, 1 safe" in text
    data = json.loads(to_json([result], written=False))
    assert data["summary"] == {
        "files": 1, "changed": 1, "failed": 0, "risk": 1, "safe": 1, "info": 0, "rewritten": 1,
    }  # fmt: skip
    first = data["files"][0]["findings"][0]
    assert (first["location"], first["risk"], first["code"]) == (
        "m.py:2:6",
        "risk",
        "stored-reference",
    )


def test_docstring_examples():
    import doctest

    from tfxent.migrate import _engine

    assert doctest.testmod(_engine).failed == 0
