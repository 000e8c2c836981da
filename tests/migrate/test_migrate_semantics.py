"""Semantic equivalence: each corpus snippet, migrated, runs on TF 2.21 as it did on TF 1.x.

The legacy snippet runs against a ``tf`` whose v1 names (``tf.nn.X``, ``tf.compat.v1.nn.X``,
``nn_ops.X``) are tfxent's top-level functions, i.e. the TF 1.15 contract; the migrated
snippet runs on the real TensorFlow. Loss, logits gradient and labels gradient (labels made
by a second "teacher" variable, as in distillation) are compared. TF's own ``tf_upgrade_v2``
is run on the same snippets and what its output does is recorded next to ours.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")  # without TF there is nothing to compare

import tfxent  # noqa: E402  (the TF 1.15 contract: legacy code's meaning)
from tfxent.migrate import Risk, migrate_source  # noqa: E402

CORPUS = Path(__file__).parent / "migrate_corpus"
TF_UPGRADE_V2 = Path(sys.executable).with_name("tf_upgrade_v2")

DENSE, SPARSE = "dense", "sparse"
# What legacy code meant. TF1: the TF 1.15 contract (positional calls raise). TF212: TF >= 2.12
# compat.v1, the only TF where a positional v1 call ran as (labels, logits). TF0: TF 0.x, whose
# positional order was (logits, labels).
TF1, TF212, TF0 = "tf1", "tf212", "tf0"
MATCH = "match"


@dataclasses.dataclass(frozen=True)
class Case:
    legacy: str = TF1
    kind: str = DENSE
    shape: tuple[int, ...] = (4, 5)
    class_axis: int = -1
    raw_labels: bool = False  # pass the teacher's logits as they are (the snippet softmaxes)
    ours: str = MATCH  # what our output does when run (reported cases are left as they were)
    reported: bool = False  # a RISK finding, call left untouched
    pinned: str | None = None  # what our --pin-v1 output does (for reported cases)
    tf0: str | None = None  # what our --tf0-order output does (for TF 0.x code)
    upgrade: str = MATCH  # what tf_upgrade_v2's output does


LABELS_GRAD = "labels-grad-differs"
LOSS = "loss-differs"
CASES = {
    "dense_keywords_dim": Case(shape=(2, 5, 3), class_axis=1),
    "dense_positional": Case(legacy=TF212),
    "dense_positional_neutral": Case(legacy=TF212),
    "dense_positional_legacy_order": Case(
        legacy=TF0, ours=LOSS, reported=True, tf0=MATCH, upgrade=LOSS
    ),
    "dense_positional_matmul": Case(legacy=TF0, ours=LOSS, reported=True, tf0=MATCH, upgrade=LOSS),
    "dense_sentinel": Case(upgrade="TypeError"),
    "dense_already_stopped": Case(),
    "dense_stopped_compat_v1": Case(),
    "dense_stopped_array_ops": Case(),
    "dense_kwargs": Case(ours=LABELS_GRAD, reported=True, pinned=MATCH, upgrade=LABELS_GRAD),
    "dense_starargs": Case(
        legacy=TF212, ours=LABELS_GRAD, reported=True, pinned=MATCH, upgrade=LABELS_GRAD
    ),
    "v2_helper_dim": Case(shape=(2, 3, 4), class_axis=2),
    "sparse_sentinel": Case(kind=SPARSE, upgrade="TypeError"),
    "sparse_positional": Case(kind=SPARSE, legacy=TF212),
    "from_tf_import_nn_alias": Case(upgrade=LABELS_GRAD),
    "from_tf_import_nn": Case(upgrade="TypeError"),  # dim= left in place
    "stored_reference": Case(ours=LABELS_GRAD, reported=True, pinned=MATCH, upgrade=LABELS_GRAD),
    # partial(..., dim=1): left as it was, the v2 function rejects dim= (TypeError).
    "partial_reference": Case(ours="TypeError", reported=True, pinned=MATCH, upgrade="TypeError"),
    "import_tensorflow_noalias": Case(upgrade=LABELS_GRAD),
    "walrus_match": Case(upgrade="no-output"),
    "nn_ops": Case(),
    "import_compat_v1_alias": Case(shape=(2, 5, 3), class_axis=1),
    "from_compat_v1_import_nn": Case(),
    "from_nn_import_function": Case(upgrade=LABELS_GRAD),
    "from_nn_import_v2_function": Case(upgrade="ImportError"),
    "compat_v1_spelled": Case(),
    "try_except_import": Case(),
    "already_v2_compat": Case(),
    "distillation": Case(raw_labels=True),
    "formatting_comments": Case(upgrade="TypeError"),
}


def test_every_corpus_snippet_has_a_case():
    snippets = {p.stem for p in CORPUS.glob("*.py")} - {"unparseable_py2"}
    assert snippets == set(CASES)


# -- running a snippet under a given meaning -------------------------------------------------


class _Proxy:
    """A module stand-in: the overrides, then everything else from the real module."""

    def __init__(self, base: object, **overrides: object) -> None:
        self._base, self._overrides = base, overrides

    def __getattr__(self, name: str) -> object:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._base, name)


def _legacy_modules(meaning: str) -> dict[str, object]:
    nn_ops = importlib.import_module("tensorflow.python.ops.nn_ops")
    ops = importlib.import_module("tensorflow.python.ops")
    if meaning == TF1:
        dense = tfxent.softmax_cross_entropy_with_logits
        dense_v2 = tfxent.softmax_cross_entropy_with_logits_v2
        sparse = tfxent.sparse_softmax_cross_entropy_with_logits
    elif meaning == TF212:
        dense = tf.compat.v1.nn.softmax_cross_entropy_with_logits
        dense_v2 = tf.compat.v1.nn.softmax_cross_entropy_with_logits_v2
        sparse = tf.compat.v1.nn.sparse_softmax_cross_entropy_with_logits
    else:  # TF 0.x: (logits, labels, dim=-1, name=None), labels' gradient stopped as in 1.x

        def dense(logits, labels, dim=-1, name=None):
            return tfxent.softmax_cross_entropy_with_logits(
                labels=labels, logits=logits, dim=dim, name=name
            )

        def sparse(logits, labels, name=None):
            return tfxent.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=logits, name=name
            )

        dense_v2 = tfxent.softmax_cross_entropy_with_logits_v2
    names = {
        "softmax_cross_entropy_with_logits": dense,
        "softmax_cross_entropy_with_logits_v2": dense_v2,
        "sparse_softmax_cross_entropy_with_logits": sparse,
    }
    nn = _Proxy(tf.compat.v1.nn, **names)
    v1 = _Proxy(tf.compat.v1, nn=nn)
    compat = _Proxy(tf.compat, v1=v1)  # compat.v2 stays the real v2 API, as in TF 1.14+
    fake_nn_ops = _Proxy(
        nn_ops,
        softmax_cross_entropy_with_logits=dense,
        softmax_cross_entropy_with_logits_v2_helper=dense_v2,
        sparse_softmax_cross_entropy_with_logits=sparse,
    )
    fake_ops = _Proxy(ops, nn_ops=fake_nn_ops)
    top = _Proxy(tf, nn=nn, compat=compat)
    return {
        "tensorflow": top,
        "tensorflow.nn": nn,
        "tensorflow.compat": compat,
        "tensorflow.compat.v1": v1,
        "tensorflow.compat.v1.nn": nn,
        "tensorflow.python.ops": fake_ops,
        "tensorflow.python.ops.nn_ops": fake_nn_ops,
    }


def load(source: str, name: str, meaning: str | None = None):
    """Exec a snippet and return its ``loss``; ``meaning`` None means the real TF 2.21."""
    namespace: dict[str, object] = {"__name__": f"corpus_{name}"}
    if meaning is not None:
        modules = _legacy_modules(meaning)

        def fake_import(mod, globals=None, locals=None, fromlist=(), level=0):
            if level == 0 and mod.split(".")[0] == "tensorflow":
                return modules[mod] if fromlist else modules["tensorflow"]
            return builtins.__import__(mod, globals, locals, fromlist, level)

        namespace["__builtins__"] = {**vars(builtins), "__import__": fake_import}
    exec(compile(source, f"{name}.py", "exec"), namespace)
    return namespace["loss"]


def evaluate(fn, case: Case) -> dict[str, np.ndarray]:
    """Loss, d(weighted loss)/d(logits) and d(weighted loss)/d(teacher) for fixed inputs."""
    rng = np.random.default_rng(1234)
    student = tf.Variable(rng.standard_normal(case.shape).astype(np.float32))
    teacher = tf.Variable(rng.standard_normal(case.shape).astype(np.float32))
    reduced = tuple(d for i, d in enumerate(case.shape) if i != case.class_axis % len(case.shape))
    weights = tf.constant(rng.standard_normal(reduced).astype(np.float32))
    with tf.GradientTape() as tape:
        if case.kind == SPARSE:
            labels = tf.constant(rng.integers(0, case.shape[-1], reduced), dtype=tf.int32)
        elif case.raw_labels:
            labels = teacher * 1.0
        else:
            labels = tf.nn.softmax(teacher, axis=case.class_axis)
        loss = fn(labels, student)
        total = tf.reduce_sum(loss * weights)
    d_logits, d_teacher = tape.gradient(total, [student, teacher])
    zeros = np.zeros(case.shape, np.float32)
    return {
        "loss": loss.numpy(),
        "d_logits": d_logits.numpy() if d_logits is not None else zeros,
        "d_labels": d_teacher.numpy() if d_teacher is not None else zeros,
    }


def outcome(reference: dict[str, np.ndarray], source: str, name: str, case: Case) -> str:
    """How running ``source`` on TF 2.21 compares with the legacy meaning."""
    try:
        got = evaluate(load(source, name), case)
    except Exception as exc:  # the output may not even run: that is an outcome too
        return type(exc).__name__
    for key, label in (("loss", LOSS), ("d_logits", "logits-grad-differs"), ("d_labels", None)):
        if got[key].shape != reference[key].shape or not np.allclose(
            got[key], reference[key], rtol=1e-5, atol=1e-6
        ):
            return label or LABELS_GRAD
    return MATCH


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory) -> dict[str, str | None]:
    """tf_upgrade_v2 (the console script shipped with TF) run on every snippet."""
    if not TF_UPGRADE_V2.exists():
        pytest.skip("tf_upgrade_v2 console script not installed")
    work = tmp_path_factory.mktemp("tf_upgrade_v2")
    # Its --intree mode stops at the first file it cannot parse, so that one runs alone.
    tree = work / "in"
    tree.mkdir()
    for name in CASES:
        if name != "walrus_match":
            shutil.copy(CORPUS / f"{name}.py", tree)
    for args in (
        ["--intree", str(tree), "--outtree", str(work / "out")],
        ["--infile", str(CORPUS / "walrus_match.py"), "--outfile", str(work / "out/walrus.py")],
    ):
        subprocess.run(
            [str(TF_UPGRADE_V2), *args, "--reportfile", str(work / "report.txt")],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    outputs = {}
    for name in CASES:
        out = work / "out" / ("walrus.py" if name == "walrus_match" else f"{name}.py")
        outputs[name] = out.read_text() if out.exists() else None
    return outputs


def _reference(name: str) -> tuple[Case, str, dict[str, np.ndarray]]:
    """The snippet's case, its source, and what it computes under its legacy meaning."""
    case = CASES[name]
    source = (CORPUS / f"{name}.py").read_text()
    return case, source, evaluate(load(source, name, case.legacy), case)


@pytest.mark.parametrize("name", sorted(CASES))
def test_migrated_snippet_matches_its_legacy_meaning(name):
    case, source, reference = _reference(name)
    result = migrate_source(source, f"{name}.py")
    assert result.error is None

    assert outcome(reference, result.code, name, case) == case.ours
    risky = [f for f in result.findings if f.risk is Risk.RISK and not f.rewritten]
    assert bool(risky) == case.reported
    if case.reported:
        assert result.code == source  # reported, not guessed
        pinned = migrate_source(source, f"{name}.py", pin_v1=True).code
        assert outcome(reference, pinned, name, case) == (case.pinned or case.ours)
    if case.legacy == TF0:
        stated = migrate_source(source, f"{name}.py", tf0_order=True)
        assert not [f for f in stated.findings if f.risk is Risk.RISK and not f.rewritten]
        assert outcome(reference, stated.code, name, case) == case.tf0


@pytest.mark.parametrize("name", sorted(CASES))
def test_what_tf_upgrade_v2_output_does(name, upgraded):
    case, _, reference = _reference(name)
    upgrade_output = upgraded[name]
    got = "no-output" if upgrade_output is None else outcome(reference, upgrade_output, name, case)
    assert got == case.upgrade, f"tf_upgrade_v2 output:\n{upgrade_output}"


def test_every_snippet_has_a_migration_that_keeps_its_meaning():
    # The default output where it is safe; where a call is reported instead, the option that
    # states what the code cannot say (--pin-v1, or --tf0-order for TF 0.x code). Each entry
    # is what test_migrated_snippet_matches_its_legacy_meaning measures for that snippet.
    for name, case in CASES.items():
        assert MATCH in (case.ours, case.pinned, case.tf0), name


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.legacy != TF1])
def test_positional_legacy_calls_raised_under_the_tf1_contract(name):
    # Why positional calls need care: TF 1.0-2.11 rejected them outright.
    case = CASES[name]
    fn = load((CORPUS / f"{name}.py").read_text(), name, TF1)
    with pytest.raises(ValueError, match="Only call"):
        evaluate(fn, case)


def test_v1_labels_get_no_gradient_and_v2_labels_do():
    # Guards the harness itself: without a labels gradient to lose, nothing above could fail.
    source = (CORPUS / "distillation.py").read_text()
    legacy = evaluate(load(source, "distillation", TF1), CASES["distillation"])
    unmigrated_on_tf2 = evaluate(load(source, "distillation"), CASES["distillation"])
    assert not legacy["d_labels"].any()
    assert np.abs(unmigrated_on_tf2["d_labels"]).max() > 1e-3


def test_tf_upgrade_v2_outputs_recorded(upgraded):
    # The rows of docs/migration.md, as observed in tf_upgrade_v2's output text.
    assert "_sentinel=None" in upgraded["dense_sentinel"]
    assert (
        upgraded["from_tf_import_nn_alias"] == (CORPUS / "from_tf_import_nn_alias.py").read_text()
    )
    assert upgraded["stored_reference"] == (CORPUS / "stored_reference.py").read_text()
    assert "stop_gradient(tf.compat.v1.stop_gradient(" in upgraded["dense_stopped_compat_v1"]
    assert (
        "labels=tf.stop_gradient(logits), logits=labels"
        in upgraded["dense_positional_legacy_order"]
    )
    assert upgraded["walrus_match"] is None


def test_tf_upgrade_v2_safety_mode_breaks_nn_ops_import(tmp_path):
    if not TF_UPGRADE_V2.exists():
        pytest.skip("tf_upgrade_v2 console script not installed")
    out = tmp_path / "nn_ops.py"
    subprocess.run(
        [str(TF_UPGRADE_V2), "--mode", "SAFETY", "--infile", str(CORPUS / "nn_ops.py"),
         "--outfile", str(out), "--reportfile", str(tmp_path / "r.txt")],
        capture_output=True, timeout=300, check=True,
    )  # fmt: skip
    with pytest.raises(ImportError):
        load(out.read_text(), "nn_ops_safety")
    ours = migrate_source((CORPUS / "nn_ops.py").read_text(), "nn_ops.py").code
    assert "import tensorflow as tf" in ours
    load(ours, "nn_ops_ours")  # imports fine


def _notebook_python(text: str) -> str:
    """A notebook's Python, with IPython-only lines and shell cells dropped."""
    lines = []
    for cell in json.loads(text)["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or source.startswith("%%bash"):
            continue
        lines += [
            line
            for line in source.splitlines()
            if not line.lstrip().startswith(("%", "!")) and not line.rstrip().endswith("?")
        ]
    return "\n".join(lines) + "\n"


def test_migrated_notebook_matches_its_legacy_meaning():
    case = Case()
    before = _notebook_python((CORPUS / "notebook.ipynb").read_text())
    after = _notebook_python((CORPUS / "expected" / "notebook.ipynb").read_text())
    assert before != after
    reference = evaluate(load(before, "notebook", TF1), case)
    assert outcome(reference, before, "notebook", case) == "TypeError"  # dim= on TF 2
    assert outcome(reference, after, "notebook", case) == MATCH
