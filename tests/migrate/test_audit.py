"""`tfxent.audit()`: each finding at the right call site, in eager mode, in tf.function and
in v1 graphs; the report's text and JSON; TFXENT_AUDIT=1; and nothing left behind when off.

Call sites are checked against the line of this file that carries the matching
`# site: NAME` comment, so moving a call cannot leave a stale expected line.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import tfxent  # noqa: E402
from tfxent import _audit, _hooks  # noqa: E402
from tfxent._audit import _checks  # noqa: E402

HERE = Path(__file__).resolve()


def site_line(name: str) -> int:
    marker = f"# site: {name}"
    lines = [i for i, text in enumerate(HERE.read_text().splitlines(), 1) if marker in text]
    assert len(lines) == 1, f"marker {marker!r} must appear once"
    return lines[0]


def quiet(**kwargs) -> _audit.Audit:
    """An audit that keeps its report (tests read it) instead of printing it."""
    return tfxent.audit(report_at_exit=False, **kwargs)


def only(audit: _audit.Audit, code: str) -> _audit.Finding:
    found = [f for f in audit.findings if f.code == code]
    assert len(found) == 1, audit.report()
    return found[0]


def codes(audit: _audit.Audit) -> set[str]:
    return {f.code for f in audit.findings}


PROCESS_AUDIT = _audit.start_from_environment()  # set when the suite runs with TFXENT_AUDIT


@pytest.fixture(autouse=True)
def no_observer_leaks():
    expected = [PROCESS_AUDIT._observer] if PROCESS_AUDIT else []
    assert _hooks.observers == expected
    yield
    assert _hooks.observers == expected


class Teacher(tf.Module):
    def __init__(self, trainable: bool = True):
        super().__init__(name="teacher")
        with self.name_scope:
            self.w = tf.Variable(
                [[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], name="w", trainable=trainable
            )
            self.b = tf.Variable([0.1, 0.2, 0.3], name="b", trainable=trainable)

    def __call__(self, x):
        return tf.nn.softmax(x @ self.w + self.b)


class Student(tf.Module):
    def __init__(self):
        super().__init__(name="student")
        with self.name_scope:
            self.w = tf.Variable([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]], name="w")

    def __call__(self, x):
        return x @ self.w


X = tf.constant([[1.0, 2.0], [0.5, -1.0]])
TEACHER_NAMES = ["teacher/b:0", "teacher/w:0"]


# -- v1 labels that depend on trainable variables -------------------------------------------
def distillation_step(teacher, student, x):
    with tf.GradientTape() as tape:
        soft = teacher(x)
        logits = student(x)
        loss = tfxent.softmax_cross_entropy_with_logits(labels=soft, logits=logits)  # site: distill
    return tape.gradient(loss, student.trainable_variables + teacher.trainable_variables)


def test_distillation_in_tf_function_names_the_call_site_and_the_teacher_variables():
    teacher, student = Teacher(), Student()
    step = tf.function(distillation_step)
    with quiet() as audit:
        for _ in range(3):
            step(teacher, student, X)
    finding = only(audit, "v1-labels-trainable")
    assert (Path(finding.path).resolve(), finding.line) == (HERE, site_line("distill"))
    assert finding.function == "distillation_step"
    assert finding.variables == TEACHER_NAMES and finding.exact
    assert finding.risk == "risk" and finding.surface.startswith("dense v1")
    assert finding.modes == {"traced": 1}  # traced once, then the graph runs without hooks
    assert codes(audit) == {"v1-labels-trainable"}


def test_distillation_in_eager_mode_names_the_tapes_trainable_variables():
    teacher, student = Teacher(), Student()
    with quiet() as audit:
        for _ in range(3):
            distillation_step(teacher, student, X)
    finding = only(audit, "v1-labels-trainable")
    assert (Path(finding.path).resolve(), finding.line) == (HERE, site_line("distill"))
    # Eager tensors carry no provenance: the tape's trainable variables, a superset.
    assert set(TEACHER_NAMES) <= set(finding.variables) and not finding.exact
    assert "student/w:0" in finding.variables
    assert finding.occurrences == 3 and finding.modes == {"eager": 3}


def test_eager_labels_that_are_a_variable_are_named_exactly():
    teacher = Teacher()
    with quiet() as audit:
        tfxent.softmax_cross_entropy_with_logits(labels=teacher.b, logits=[1.0, 2.0, 3.0])
    finding = only(audit, "v1-labels-trainable")
    assert finding.variables == ["teacher/b:0"] and finding.exact


@pytest.mark.parametrize("use_resource", [True, False])
def test_v1_graph_names_the_variables_the_labels_are_read_from(use_resource):
    with tf.Graph().as_default(), quiet() as audit:
        x = tf.compat.v1.placeholder(tf.float32, [None, 2])
        with tf.compat.v1.variable_scope("teacher", use_resource=use_resource):
            w = tf.compat.v1.get_variable("w", initializer=[[1.0, 2.0], [3.0, 4.0]])
            frozen = tf.compat.v1.get_variable("frozen", [2], trainable=False)
        labels = tf.nn.softmax(x @ w + frozen)
        student = tf.compat.v1.get_variable("student_w", initializer=[[1.0, 0.0], [0.0, 1.0]])
        loss = tfxent.softmax_cross_entropy_with_logits(labels=labels, logits=x @ student)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(loss, {x: [[1.0, 2.0]]})
    finding = only(audit, "v1-labels-trainable")
    assert finding.variables == ["teacher/w:0"] and finding.exact
    assert finding.modes == {"traced": 1}


def test_unmodified_tf1_program_is_audited_under_patch():
    # Legacy code calls tf.compat.v1.nn, not tfxent: patched, its calls run through tfxent's
    # surfaces and the audit sees them at the program's own line.
    with tf.Graph().as_default(), tfxent.patched(), quiet() as audit:
        x = tf.compat.v1.placeholder(tf.float32, [None, 2])
        with tf.compat.v1.variable_scope("teacher"):
            w = tf.compat.v1.get_variable("w", initializer=[[1.0, 2.0], [3.0, 4.0]])
        v1_nn, labels = tf.compat.v1.nn, tf.nn.softmax(x @ w)
        loss = v1_nn.softmax_cross_entropy_with_logits(labels=labels, logits=x)  # site: legacy
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(loss, {x: [[1.0, 2.0]]})
    finding = only(audit, "v1-labels-trainable")
    assert finding.variables == ["teacher/w:0"]
    assert (finding.path, finding.line) == (str(HERE), site_line("legacy"))


def test_keras_teacher_variables_are_named():
    keras = pytest.importorskip("keras")
    # Keras 3 names variables "<model>/<layer>/<weight>", Keras 2 (TF ≤ 2.15) "<layer>/...":
    # distinct layer names keep the teacher's variables recognisable in both.
    teacher = keras.Sequential([keras.layers.Dense(3, name="teacher_dense")], name="teacher")
    student = keras.Sequential([keras.layers.Dense(3, name="student_dense")], name="student")

    @tf.function
    def step(x):
        with tf.GradientTape():
            soft = tf.nn.softmax(teacher(x))
            return tfxent.softmax_cross_entropy_with_logits(labels=soft, logits=student(x))

    with quiet() as audit:
        step(X)
    names = only(audit, "v1-labels-trainable").variables
    assert len(names) == 2, names
    assert names[0].endswith("teacher_dense/bias:0"), names
    assert names[1].endswith("teacher_dense/kernel:0"), names


def test_labels_without_gradient_to_trainable_variables_are_not_reported():
    teacher, frozen, student = Teacher(), Teacher(trainable=False), Student()

    @tf.function
    def step(x):
        with tf.GradientTape():
            logits = student(x)
            stopped = tf.stop_gradient(teacher(x))
            hard = tf.one_hot(tf.argmax(teacher(x), axis=-1), 3)  # no gradient through argmax
            rounded = tf.round(teacher(x))
            losses = [
                tfxent.softmax_cross_entropy_with_logits(labels=rounded, logits=logits),
                tfxent.softmax_cross_entropy_with_logits(labels=stopped, logits=logits),
                tfxent.softmax_cross_entropy_with_logits(labels=hard, logits=logits),
                tfxent.softmax_cross_entropy_with_logits(labels=frozen(x), logits=logits),
                # v2 semantics: the labels' gradient is meant to flow, nothing changes.
                tfxent.nn.softmax_cross_entropy_with_logits(labels=teacher(x), logits=logits),
            ]
        return losses

    with quiet() as audit:
        step(X)
        with tf.GradientTape():
            tfxent.softmax_cross_entropy_with_logits(
                labels=tf.stop_gradient(teacher(X)), logits=student(X)
            )
    assert "v1-labels-trainable" not in codes(audit), audit.report()


def test_labels_read_in_a_nested_function_and_a_cond_branch_are_traced_to_the_variable():
    teacher, student = Teacher(), Student()

    @tf.function
    def soft_labels(x):
        return teacher(x)

    @tf.function
    def step(x, use_teacher):
        labels = tf.cond(use_teacher, lambda: soft_labels(x), lambda: tf.ones([2, 3]) / 3)
        return tfxent.softmax_cross_entropy_with_logits(labels=labels, logits=student(x))

    with quiet() as audit:
        step(X, tf.constant(True))
    assert only(audit, "v1-labels-trainable").variables == TEACHER_NAMES


def test_labels_captured_by_a_cond_branch_are_traced_into_the_enclosing_graph():
    teacher, student = Teacher(), Student()

    @tf.function
    def step(x, flag):
        soft = teacher(x)  # computed outside the branch, captured by it

        def distill():  # the labels are made in the branch's graph from the captured `soft`
            labels = soft / tf.reduce_sum(soft, axis=-1, keepdims=True)
            return tfxent.softmax_cross_entropy_with_logits(labels=labels, logits=student(x))

        return tf.cond(flag, distill, lambda: tf.zeros([2]))

    with quiet() as audit:
        step(X, tf.constant(True))
    assert only(audit, "v1-labels-trainable").variables == TEACHER_NAMES


# -- label values ------------------------------------------------------------------------------
UNNORMALIZED = [[0.5, 0.25, 0.0], [0.2, 0.3, 0.5]]  # row 0 sums to 0.75
ZERO_ROW = [[0.0, 0.0, 0.0], [0.2, 0.3, 0.5]]
LOGITS = [[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]


@pytest.mark.parametrize(
    ("labels", "code", "fragment"),
    [
        (UNNORMALIZED, "labels-not-normalized", "1 of 2 label rows do not sum to 1"),
        (ZERO_ROW, "labels-zero-rows", "1 of 2 label rows are all zero (e.g. row 0)"),
    ],
)
@pytest.mark.parametrize("mode", ["eager", "tf.function", "tf.function-run"])
def test_rows_that_do_not_sum_to_one(labels, code, fragment, mode):
    with quiet(graph_values=mode == "tf.function-run") as audit:
        if mode == "eager":
            tfxent.nn.softmax_cross_entropy_with_logits(tf.constant(labels), LOGITS)  # site: rows
        elif mode == "tf.function":  # constant labels: checked while tracing
            tf.function(lambda: tfxent.nn.softmax_cross_entropy_with_logits(labels, LOGITS))()
        else:  # labels are an argument: checked when the graph runs
            f = tf.function(lambda y: tfxent.nn.softmax_cross_entropy_with_logits(y, LOGITS))
            f(tf.constant(labels))
            f(tf.constant(labels))
    finding = only(audit, code)
    assert fragment in finding.message and finding.risk == "warning"
    assert codes(audit) == {code}
    if mode == "eager":
        assert (Path(finding.path).resolve(), finding.line) == (HERE, site_line("rows"))
    if mode == "tf.function-run":
        assert finding.modes == {"run": 2}


def test_rows_summing_to_one_within_float32_rounding_are_not_reported():
    rng = np.random.default_rng(0)
    labels = tf.nn.softmax(rng.normal(size=(64, 1000)).astype(np.float32))
    with quiet() as audit:
        tfxent.nn.softmax_cross_entropy_with_logits(labels, tf.zeros([64, 1000]))
        tfxent.nn.softmax_cross_entropy_with_logits([[0.1] * 10], tf.zeros([1, 10]))
    assert audit.findings == []


def test_rows_are_taken_along_the_class_axis():
    labels = [[[1.0, 0.5], [0.0, 0.5]]]  # sums to 1 along axis 1, not along axis -1
    with quiet() as audit:
        tfxent.nn.softmax_cross_entropy_with_logits(labels, tf.zeros([1, 2, 2]), axis=1)
    assert audit.findings == []
    with quiet() as audit:
        tfxent.nn.softmax_cross_entropy_with_logits(labels, tf.zeros([1, 2, 2]))
    assert codes(audit) == {"labels-not-normalized"}


def test_graph_values_are_not_checked_without_graph_values_and_the_report_says_where():
    f = tf.function(lambda y: tfxent.nn.softmax_cross_entropy_with_logits(y, LOGITS))
    with quiet() as audit:
        f(tf.constant(UNNORMALIZED))
    assert audit.findings == []
    (item,) = audit.as_dict()["unchecked"]
    assert "graph_values=True" in item["reason"]
    assert "not checked:" in audit.report()


def test_run_check_is_a_no_op_once_the_audit_has_ended():
    f = tf.function(lambda y: tfxent.nn.softmax_cross_entropy_with_logits(y, LOGITS))
    with quiet(graph_values=True) as audit:
        f(tf.constant(ZERO_ROW))
    before = audit.as_dict()
    loss = f(tf.constant(ZERO_ROW))  # the traced graph still holds the check op
    assert audit.as_dict() == before
    np.testing.assert_allclose(
        loss[1], tfxent.nn.softmax_cross_entropy_with_logits(ZERO_ROW, LOGITS)[1]
    )


def test_xla_functions_get_no_run_check():
    f = tf.function(
        lambda y: tfxent.nn.softmax_cross_entropy_with_logits(y, LOGITS), jit_compile=True
    )
    with quiet(graph_values=True) as audit:
        f(tf.constant(UNNORMALIZED))  # a host callback would not compile under XLA
    assert audit.findings == []
    assert "XLA" in audit.as_dict()["unchecked"][0]["reason"]


# -- shapes and sparse ranges ------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["eager", "tf.function"])
def test_labels_broadcast_against_logits(mode):
    labels = tf.constant([[0.0, 1.0, 0.0]])  # one row for two rows of logits
    call = lambda y: tfxent.nn.softmax_cross_entropy_with_logits(y, LOGITS)  # noqa: E731
    with quiet() as audit:
        call(labels) if mode == "eager" else tf.function(call)(labels)
    finding = only(audit, "labels-broadcast")
    assert "(1, 3) are broadcast against logits of shape (2, 3)" in finding.message
    assert codes(audit) == {"labels-broadcast"}


@pytest.mark.parametrize("mode", ["eager", "tf.function", "xla"])
def test_sparse_labels_out_of_range(mode):
    labels, logits = [2, 3], tf.constant(LOGITS)
    with quiet() as audit:
        if mode == "eager":
            with pytest.raises(tf.errors.InvalidArgumentError, match="outside the valid range"):
                tfxent.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)  # site: sparse
        else:
            f = tf.function(
                lambda: tfxent.nn.sparse_softmax_cross_entropy_with_logits(labels, logits),
                jit_compile=mode == "xla",
            )
            if mode == "xla":
                assert np.isnan(f().numpy()[1])  # the silent NaN the audit is there to catch
            else:
                with pytest.raises(tf.errors.InvalidArgumentError):
                    f()
    finding = only(audit, "sparse-labels-out-of-range")
    assert "1 of 2 labels outside [0, 3) (e.g. 3; min 3, max 3)" in finding.message
    assert finding.risk == "risk"
    if mode == "eager":  # recorded before the CPU kernel raised
        assert (Path(finding.path).resolve(), finding.line) == (HERE, site_line("sparse"))


# -- clean programs, reports, the environment, and being off ------------------------------------
def test_a_clean_program_has_no_findings_and_the_same_results():
    teacher, student = Teacher(), Student()

    def step(x, y):
        with tf.GradientTape() as tape:
            logits = student(x)
            hard = tfxent.softmax_cross_entropy_with_logits(
                labels=tf.stop_gradient(teacher(x)), logits=logits
            )
            sparse = tfxent.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
            loss = tf.reduce_sum(hard + sparse)
        return loss, tape.gradient(loss, student.trainable_variables)

    y = tf.constant([0, 2])
    expected = step(X, y)
    with quiet(graph_values=True) as audit:
        eager = step(X, y)
        traced = tf.function(step)(X, y)
        traced = tf.function(step)(X, y)
    assert audit.findings == [] and audit.as_dict()["unchecked"] == []
    assert audit.as_dict()["calls"]["total"] == 2 + 4 + 4  # eager, traced twice; run twice
    assert "no findings" in audit.report()
    for got in (eager, traced):
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
        np.testing.assert_allclose(got[1][0], expected[1][0], rtol=1e-6)


def test_json_report_structure():
    with quiet() as audit:
        tfxent.nn.softmax_cross_entropy_with_logits(ZERO_ROW, LOGITS)
        tfxent.nn.softmax_cross_entropy_with_logits(ZERO_ROW, LOGITS)
    data = json.loads(audit.report(json=True))
    assert data["tool"] == "tfxent.audit" and data["version"] == 1
    assert data["calls"] == {"total": 2, "eager": 2, "traced": 0}
    assert set(data["counts"]) == set(_audit.CODES)
    assert data["counts"]["labels-zero-rows"] == {"sites": 2, "occurrences": 2}
    assert data["counts"]["labels-broadcast"] == {"sites": 0, "occurrences": 0}
    assert data["unchecked"] == [] and data["errors"] == []
    first = data["findings"][0]
    assert set(first) == {
        "code", "risk", "path", "line", "function", "surface", "message", "variables",
        "exact", "occurrences", "modes", "location",
    }  # fmt: skip
    assert first["code"] == "labels-zero-rows" and first["modes"] == {"eager": 1}
    assert first["location"].endswith(f"test_audit.py:{first['line']}")


def test_the_report_is_printed_when_the_block_exits_even_on_error():
    stream = io.StringIO()
    with pytest.raises(tf.errors.InvalidArgumentError):
        with tfxent.audit(file=stream):
            tfxent.nn.sparse_softmax_cross_entropy_with_logits([5], [[1.0, 2.0]])
    text = stream.getvalue()
    assert text.startswith("tfxent audit: 1 finding at 1 call site; 1 calls observed")
    assert "RISK sparse-labels-out-of-range" in text and "test_audit.py:" in text


def test_report_on_demand_and_json_printing():
    if PROCESS_AUDIT is None:
        with pytest.raises(RuntimeError, match="no audit is running"):
            _audit.report()
    stream = io.StringIO()
    with tfxent.audit(json=True, file=stream):
        tfxent.nn.softmax_cross_entropy_with_logits(UNNORMALIZED, LOGITS)
        assert "labels-not-normalized" in _audit.report()
    assert json.loads(stream.getvalue())["counts"]["labels-not-normalized"]["sites"] == 1


PROGRAM = """
import tensorflow as tf, tfxent
w = tf.Variable([[1.0, 2.0], [3.0, 4.0]], name="teacher_w")
with tf.GradientTape():
    tfxent.softmax_cross_entropy_with_logits(labels=tf.nn.softmax(w), logits=[[1.0, 2.0]] * 2)
print("done")
"""


def test_environment_variable_prints_the_report_at_process_exit(tmp_path):
    # `import tfxent` starts the process audit when TFXENT_AUDIT is set.
    script = tmp_path / "train.py"
    script.write_text(PROGRAM)
    env = {**os.environ, "TFXENT_AUDIT": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"  # the report goes to stderr, after the program
    report = done.stderr[done.stderr.index("tfxent audit: 1 finding at 1 call site") :]
    assert "train.py:5: RISK v1-labels-trainable in <module>()" in report
    assert "teacher_w:0" in report


def test_environment_variable_json_and_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TFXENT_AUDIT", "json")
    monkeypatch.setenv("TFXENT_AUDIT_FILE", str(tmp_path / "audit.json"))
    audit = _audit.from_environment()  # what importing the package does
    try:
        assert audit.active and _hooks.observers[-1] == audit._observer
        tfxent.nn.softmax_cross_entropy_with_logits(UNNORMALIZED, LOGITS)  # site: env
    finally:
        atexit.unregister(audit.print_report)
        audit.stop()
    audit.print_report()  # what the atexit handler does
    (finding,) = json.loads((tmp_path / "audit.json").read_text())["findings"]
    assert finding["code"] == "labels-not-normalized" and finding["line"] == site_line("env")


@pytest.mark.skipif(PROCESS_AUDIT is not None, reason="the suite runs with TFXENT_AUDIT set")
def test_off_means_no_observer():
    audit = tfxent.audit(report_at_exit=False)
    assert _hooks.observers == []
    with audit:
        assert len(_hooks.observers) == 1 and audit.active
        with audit:  # re-entering does not register twice
            assert len(_hooks.observers) == 1
    assert _hooks.observers == [] and not audit.active
    tfxent.nn.softmax_cross_entropy_with_logits(ZERO_ROW, LOGITS)
    assert audit.as_dict()["calls"]["total"] == 0


def test_an_observer_failure_never_reaches_the_program(monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(_checks, "call_site", broken)
    with quiet() as audit:
        loss = tfxent.nn.softmax_cross_entropy_with_logits(ZERO_ROW, LOGITS)
    assert loss.shape == (2,)
    assert audit.as_dict()["errors"] == ["RuntimeError: boom"]
