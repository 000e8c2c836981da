"""Which backend computes a call, and that each one is right (docs/design.md "The core").

The custom op must run on every CPU call (proved from TF's own placement log in eager mode,
and from traced graphs elsewhere); the composite path must match TF where it is used; the
environment switches must do what the README says.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config

import tfxent
from tfxent import _backend
from tfxent.parity.calls import determinism, run, surfaces
from tfxent.parity.cases import catalogue
from tfxent.parity.runner import compare, expects_custom_op


def _python(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )


def test_eager_calls_execute_the_custom_op_not_tf_xent():
    # TF logs every eagerly executed op with its type when placement logging is on.
    done = _python(
        """
        import tensorflow as tf, tfxent
        tf.debugging.set_log_device_placement(True)
        x = tf.constant([[1.0, 2.0, 3.0]]); y = tf.constant([[0.0, 1.0, 0.0]])
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tfxent.nn.softmax_cross_entropy_with_logits(y, x)
        tape.gradient(loss, x)
        tfxent.nn.sparse_softmax_cross_entropy_with_logits([1], x)
        """,
        TF_CPP_MIN_LOG_LEVEL="0",
    )
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    for op in ("TfxentSoftmaxXent", "TfxentSoftmaxXentGrad", "TfxentSparseSoftmaxXent"):
        assert f"Executing op {op}" in log
    assert "Executing op SoftmaxCrossEntropyWithLogits" not in log
    assert "Executing op SparseSoftmaxCrossEntropyWithLogits" not in log


def test_graph_mode_uses_the_custom_op_for_loss_and_gradient():
    @tf.function
    def step(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = tfxent.compat.v1.nn.softmax_cross_entropy_with_logits(
                labels=labels, logits=logits
            )
        return tape.gradient(loss, logits)

    args = (tf.ones([2, 3]) / 3, tf.zeros([2, 3]))
    graph = step.get_concrete_function(*args).graph
    types = {op.type for op in graph.get_operations()}
    for function in graph._functions.values():  # noqa: SLF001 - the gradient function
        types |= {node.op for node in function.definition.node_def}
    assert {"TfxentSoftmaxXent", "TfxentSoftmaxXentGrad"} <= types
    assert "SoftmaxCrossEntropyWithLogits" not in types


def test_xla_context_uses_the_composite_path():
    @tf.function(jit_compile=True)
    def loss(labels, logits):
        return tfxent.nn.softmax_cross_entropy_with_logits(labels, logits)

    args = (tf.ones([2, 3]) / 3, tf.zeros([2, 3]))
    types = {op.type for op in loss.get_concrete_function(*args).graph.get_operations()}
    assert not any(t.startswith("Tfxent") or "CrossEntropy" in t for t in types)
    np.testing.assert_allclose(loss(*args), [np.log(3.0)] * 2, rtol=1e-6)


def test_value_cases_cover_every_kind_of_value_call():
    ids = {c.id for c in VALUE_CASES}
    # Integer labels, sparse rank-1 logits with a scalar label, broadcast labels, zero classes.
    wanted = {"nn.sparse:f32_int32", "nn.sparse:f32_int64", "nn.sparse:rank1_scalar_label"}
    wanted |= {"nn.dense:int32_labels", "nn.dense:labels_1xC", "nn.dense:zero_classes"}
    assert wanted <= ids, sorted(wanted - ids)
    assert "nn.sparse:label_too_big" not in ids and "nn.dense:class_mismatch" not in ids


def test_backend_choice_is_visible_and_defaults_to_the_op():
    choice = _backend.choose(tf.zeros([1, 1]))
    assert (choice.backend, choice.reason) == (_backend.OP, "default")


def _tf_returns_values(case) -> bool:
    """Whether TF's own call returns a loss (eagerly, determinism off) rather than raising."""
    _, theirs = surfaces(case.api)
    with determinism(False):
        return run(theirs, case, "eager").error is None


# Cases where TF returns values, chosen by what TF does with them: the composite path
# reproduces TF's mathematics; TF's error messages are the custom op's job (the composite
# is only a fallback there).
VALUE_CASES = [
    c for c in catalogue() if c.api in ("nn.dense", "nn.sparse") and _tf_returns_values(c)
]


@pytest.mark.parametrize("deterministic", [False, True], ids=["kernel", "determinism"])
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("case", VALUE_CASES, ids=[c.id for c in VALUE_CASES])
def test_forced_composite_path_matches_tf(monkeypatch, case, mode, deterministic):
    monkeypatch.setenv("TFXENT_FORCE_COMPOSITE", "1")
    assert _backend.choose(tf.zeros([1, 1])).backend == _backend.COMPOSITE
    result = compare(case, mode, deterministic)
    problems = [p for p in result.problems if "custom op" not in p]
    assert not problems, "\n".join(problems)
    if mode == "function" and not result.raised and expects_custom_op(case, mode, deterministic):
        # The backend check of the comparison sees the op missing: proof it did not run.
        assert any("does not contain its custom op" in p for p in result.problems)


def test_build_failure_warns_and_falls_back_unless_the_op_is_required(tmp_path):
    script = """
        import tensorflow as tf, tfxent
        loss = tfxent.nn.softmax_cross_entropy_with_logits([[0.0, 1.0]], [[1.0, 2.0]])
        expected = tf.nn.softmax_cross_entropy_with_logits([[0.0, 1.0]], [[1.0, 2.0]])
        print(float(loss[0]), float(expected[0]))
        """
    env = {"CXX": "false", "TFXENT_CACHE_DIR": str(tmp_path / "cache"), "TFXENT_REQUIRE_OP": ""}
    fallback = _python(script, **env)
    assert fallback.returncode == 0, fallback.stderr
    ours, theirs = fallback.stdout.splitlines()[0].split()
    assert abs(float(ours) - float(theirs)) < 1e-6
    # The warning comes once, when `import tfxent` registers the ops.
    assert "could not build the custom op" in fallback.stderr

    required = _python(script, **{**env, "TFXENT_REQUIRE_OP": "1"})
    assert required.returncode != 0
    assert "BuildError" in required.stderr and "could not build the custom op" in required.stderr
    assert "TFXENT_FORCE_COMPOSITE=1" in required.stderr


def test_determinism_environment_variable_matches_tf_in_a_fresh_process():
    # TF_DETERMINISTIC_OPS=1 is read by TF itself; both sides must take their determinism
    # paths: the true gradient for labels that do not sum to 1, and the gather error.
    done = _python(
        """
        import numpy as np, tensorflow as tf, tfxent
        x = tf.constant([[1.0, 2.0, 0.5]]); y = tf.constant([[2.0, 1.0, 0.0]])
        def grad(f):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = f(y, x)
            return tape.gradient(loss, x).numpy()
        print(np.abs(grad(tfxent.nn.softmax_cross_entropy_with_logits)
                     - grad(tf.nn.softmax_cross_entropy_with_logits)).max())
        for f in (tfxent.nn.sparse_softmax_cross_entropy_with_logits,
                  tf.nn.sparse_softmax_cross_entropy_with_logits):
            try:
                f([2, 3], [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
            except tf.errors.InvalidArgumentError as err:
                print("indices[1] = 3 is not in [0, 3)" in str(err))
        """,
        TF_DETERMINISTIC_OPS="1",
    )
    assert done.returncode == 0, done.stderr
    diff, ours, theirs = done.stdout.split()
    assert float(diff) < 1e-6 and ours == theirs == "True"


def test_determinism_is_read_at_trace_time():
    labels, logits = tf.constant([0, 3]), tf.zeros([2, 3])
    traced = tf.function(tfxent.nn.sparse_softmax_cross_entropy_with_logits)
    traced.get_concrete_function(labels, logits)  # traced with determinism off
    config.enable_op_determinism()
    try:
        with pytest.raises(tf.errors.InvalidArgumentError, match="Received a label value of 3"):
            traced(labels, logits)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices\[1\] = 3"):
            tfxent.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    finally:
        config.disable_op_determinism()


@pytest.mark.parametrize(
    "function",
    ["nn.softmax_cross_entropy_with_logits", "compat.v1.nn.softmax_cross_entropy_with_logits"],
)
def test_forward_mode_jvp_matches_tf(function):
    def jvp(module):
        f = module
        for part in function.split("."):
            f = getattr(f, part)
        x = tf.constant([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
        y = tf.constant([[0.2, 0.7, 0.1], [1.0, 0.0, 0.0]])
        tangent = tf.constant([[0.3, -0.2, 0.5], [1.0, 0.5, -1.0]])
        with tf.autodiff.ForwardAccumulator(x, tangent) as acc:
            loss = f(labels=y, logits=x)
        return acc.jvp(loss).numpy()

    np.testing.assert_allclose(jvp(tfxent), jvp(tf), rtol=1e-6, atol=1e-7)


def test_doctor_reports_the_op_built_and_in_use():
    done = _python("import sys, tfxent.__main__ as m; sys.exit(m.main(['doctor', '--json']))")
    assert done.returncode == 0, done.stderr
    assert '"op_loaded": true' in done.stdout and '"backend": "custom-op"' in done.stdout


def test_deleting_the_cache_rebuilds_the_op(tmp_path):
    env = {"TFXENT_CACHE_DIR": str(tmp_path / "cache"), "TFXENT_REQUIRE_OP": "1"}
    script = "import sys, tfxent.__main__ as m; sys.exit(m.main(['build']))"
    first = _python(script, **env)
    assert first.returncode == 0 and "compiling the custom op" in first.stderr, first.stderr
    again = _python(script, **env)
    assert again.returncode == 0 and "compiling" not in again.stderr
    library = first.stdout.strip().splitlines()[-1]
    os.remove(library)
    rebuilt = _python(script, **env)
    assert rebuilt.returncode == 0 and "compiling the custom op" in rebuilt.stderr
    assert os.path.exists(library)
