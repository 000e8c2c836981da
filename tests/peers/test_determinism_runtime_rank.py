"""Determinism mode with sparse labels whose rank is known only at run time.

TF's determinism path gathers with `batch_dims=1` (docs/tf_behaviour.md#determinism): labels
[N, 1] give a loss [N, 1], a scalar fails in GatherV2. These are the reproducers TF's own
determinism tests check (`testLabelsPlaceholderScalar`, `testScalarHandling`); every case is
compared with the installed `tf.nn` at run time: values, logits gradients, exception classes
and messages, in `tf.function` with an unknown-rank `TensorSpec` and in a v1 Session.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config

import tfxent

LOGITS = np.array([[1.0, 2.0, 0.5], [3.0, 4.0, -1.0]], np.float32)
LABELS = {
    "rank1": np.array([0, 2], np.int32),
    "rank2_Nx1": np.array([[0], [1]], np.int32),
    "rank2_Nx3": np.array([[0, 1, 2], [2, 2, 0]], np.int32),
    "rank3": np.array([[[0, 1]], [[2, 0]]], np.int32),
    "scalar": np.array(0, np.int32),
    "rows_mismatch": np.array([[0], [1], [1]], np.int32),
    "out_of_range": np.array([[0, 5], [1, 0]], np.int32),
}
FUNCTIONS = {
    "nn": (tf.nn.sparse_softmax_cross_entropy_with_logits, tfxent.nn),
    "v1": (tf.compat.v1.nn.sparse_softmax_cross_entropy_with_logits, tfxent.compat.v1.nn),
}


@pytest.fixture
def determinism():
    config.enable_op_determinism()
    try:
        yield
    finally:
        config.disable_op_determinism()


def _message(err: Exception) -> str:
    """The kernel's message: the line before TF's `[[{{node ...}}]]` line (graph errors start
    with "Graph execution error" and a traceback), without the function's name."""
    lines = str(err).splitlines()
    found = [lines[i - 1] for i, line in enumerate(lines) if i and line.lstrip().startswith("[[")]
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", (found or lines)[0]).strip()


def _outcome(run) -> tuple:
    """('ok', loss, gradient) or ('raised', class, message)."""
    try:
        loss, grad = run()
    except Exception as err:  # noqa: BLE001 - the class is what is compared
        return ("raised", type(err), _message(err))
    return ("ok", np.asarray(loss), np.asarray(grad))


def _assert_same(ours: tuple, theirs: tuple) -> None:
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "raised":
        assert ours[2], ours
        assert ours[1] is theirs[1] and ours[2] == theirs[2], (ours, theirs)
        return
    for mine, tf_value in zip(ours[1:], theirs[1:], strict=True):
        assert mine.shape == tf_value.shape
        np.testing.assert_allclose(mine, tf_value, rtol=1e-6, atol=1e-7)


def _in_function(fn, labels: np.ndarray, with_gradient: bool = True):
    sig = [tf.TensorSpec(None, tf.int32), tf.TensorSpec([None, None], tf.float32)]

    @tf.function(input_signature=sig)
    def loss_and_grad(y, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = fn(labels=y, logits=x)
        return loss, tape.gradient(loss, x) if with_gradient else x

    return lambda: loss_and_grad(tf.constant(labels), tf.constant(LOGITS)), loss_and_grad


def _in_session(fn, labels: np.ndarray, with_gradient: bool = True):
    graph = tf.Graph()
    with graph.as_default():
        y = tf.compat.v1.placeholder(tf.int32)
        x = tf.compat.v1.placeholder(tf.float32, [None, 3])
        loss = fn(labels=y, logits=x)
        grad = tf.compat.v1.gradients(loss, x)[0] if with_gradient else x

    def run():
        with tf.compat.v1.Session(graph=graph) as sess:
            return sess.run([loss, grad], {y: labels, x: LOGITS})

    return run, graph


def _compare(build, ours_fn, theirs_fn, labels: np.ndarray) -> None:
    """Loss and gradient, or the error. A failing graph can have several failing ops, and
    which reports first is a race, so errors are compared on the loss alone."""
    ours, theirs = _outcome(build(ours_fn, labels)[0]), _outcome(build(theirs_fn, labels)[0])
    if "raised" in (ours[0], theirs[0]):
        ours = _outcome(build(ours_fn, labels, with_gradient=False)[0])
        theirs = _outcome(build(theirs_fn, labels, with_gradient=False)[0])
    _assert_same(ours, theirs)


XENT_KERNELS = {
    "SparseSoftmaxCrossEntropyWithLogits",
    "TfxentSparseSoftmaxXent",
    "TfxentSparseSoftmaxXentGrad",
}


def _op_types(graph: tf.Graph) -> set[str]:
    return {op.type for op in graph.get_operations()}


def test_known_rank_labels_in_determinism_mode_still_run_the_op(determinism):
    sig = [tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, None], tf.float32)]
    traced = tf.function(
        lambda y, x: tfxent.nn.sparse_softmax_cross_entropy_with_logits(y, x),
        input_signature=sig,
    )
    assert "TfxentSparseSoftmaxXent" in _op_types(traced.get_concrete_function().graph)


@pytest.mark.parametrize("surface", sorted(FUNCTIONS))
@pytest.mark.parametrize("labels", sorted(LABELS))
def test_unknown_rank_spec_in_function_matches_tf(determinism, surface, labels):
    tf_fn, module = FUNCTIONS[surface]
    ours = module.sparse_softmax_cross_entropy_with_logits
    _compare(_in_function, ours, tf_fn, LABELS[labels])
    # Neither TF nor tfxent runs a xent kernel here: both gather from log_softmax.
    graph = _in_function(ours, LABELS[labels])[1].get_concrete_function().graph
    assert not _op_types(graph) & XENT_KERNELS and "GatherV2" in _op_types(graph)


@pytest.mark.parametrize("labels", sorted(LABELS))
def test_v1_placeholder_in_session_matches_tf(determinism, labels):
    ours = tfxent.compat.v1.nn.sparse_softmax_cross_entropy_with_logits
    _compare(
        _in_session, ours, tf.compat.v1.nn.sparse_softmax_cross_entropy_with_logits, LABELS[labels]
    )
    graph = _in_session(ours, LABELS[labels])[1]
    assert not _op_types(graph) & XENT_KERNELS and "GatherV2" in _op_types(graph)


def test_the_issue_reproducer_gives_tf_loss(determinism):
    # labels [N, 1]: a loss [N, 1] (not "labels must be 1-D"); the scalar: GatherV2's error.
    sig = [tf.TensorSpec(None, tf.int32), tf.TensorSpec([None, None], tf.float32)]
    results = []
    for fn in (
        tf.nn.sparse_softmax_cross_entropy_with_logits,
        tfxent.nn.sparse_softmax_cross_entropy_with_logits,
    ):
        f = tf.function(lambda y, x, fn=fn: fn(labels=y, logits=x), input_signature=sig)
        results.append(f(tf.constant([[0], [1]]), tf.constant([[1.0, 2.0], [3.0, 4.0]])))
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=r"batch_dims in the range \[0, 0\]"
        ):
            f(tf.constant(0), tf.constant([[1.0, 2.0]]))
    assert results[0].shape == results[1].shape == (2, 1)
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6)


def test_without_determinism_unknown_rank_labels_keep_the_kernel_check():
    # The kernel path is unchanged: TF's kernel and tfxent's op both require 1-D labels.
    ours, _ = _in_function(tfxent.nn.sparse_softmax_cross_entropy_with_logits, LABELS["rank2_Nx1"])
    theirs, _ = _in_function(tf.nn.sparse_softmax_cross_entropy_with_logits, LABELS["rank2_Nx1"])
    mine, tf_outcome = _outcome(ours), _outcome(theirs)
    assert tf_outcome[0] == "raised" and "labels must be 1-D" in tf_outcome[2]
    assert mine[:2] == tf_outcome[:2] and "labels must be 1-D" in mine[2]
