"""GPU hosts: a call TF would place on a GPU never goes to tfxent's CPU-only op.

No GPU is available where these tests run, so they test the decision, not a GPU run:

* the device scope is real: `tf.device("/GPU:0")` scopes in eager mode, tf.function and v1
  graphs, nested scopes and device functions, read exactly as TF's placer would read them;
* the visible devices are real where TF can make them (logical CPUs, in a subprocess, since
  TF configures devices once per process) and mocked where it cannot: "a GPU is visible" is
  `_placement.accelerators` returning a GPU's name, which is all the decision reads of it.

What the composite path then computes is checked against tf.nn on the CPU; that it runs on a
real GPU, and how fast, is not tested here (README, "GPU hosts").
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest_helpers import REPO, child_env

import tfxent
from tfxent import _backend, _placement

TFXENT_OPS = {"TfxentSoftmaxXent", "TfxentSparseSoftmaxXent"}
LABELS = tf.constant([[0.1, 0.9, 0.0], [0.3, 0.3, 0.4]])
LOGITS = tf.constant([[1.0, 2.0, 0.5], [-1.0, 3.0, 0.0]])
SPARSE = tf.constant([1, 2])


@pytest.fixture
def gpu_visible(monkeypatch):
    monkeypatch.setattr(_placement, "accelerators", lambda: ["/device:GPU:0"])


def _traced_ops(device: str | None) -> set[str]:
    """Op types of the dense and sparse losses and their gradients, traced in a tf.function
    whose body is under `tf.device(device)` (None: no scope)."""

    @tf.function
    def losses(labels, logits, sparse):
        with tf.device(device), tf.GradientTape() as tape:
            tape.watch(logits)
            dense = tfxent.nn.softmax_cross_entropy_with_logits(labels, logits)
            total = tf.reduce_sum(dense) + tf.reduce_sum(
                tfxent.nn.sparse_softmax_cross_entropy_with_logits(sparse, logits)
            )
        return total, tape.gradient(total, logits)

    graph = losses.get_concrete_function(LABELS, LOGITS, SPARSE).graph
    return {op.type for op in graph.get_operations()}


def test_no_accelerator_is_visible_here():
    """The premise of every mock below: this machine has no GPU, and TF says so."""
    assert _placement.accelerators() == []
    assert TFXENT_OPS <= _traced_ops(None)


def test_a_visible_gpu_without_a_device_scope_takes_the_composite_path(gpu_visible):
    ops = _traced_ops(None)
    assert not ops & TFXENT_OPS and "SoftmaxCrossEntropyWithLogits" not in ops
    choice = _backend.choose(LOGITS)
    assert choice.backend == _backend.COMPOSITE and "/device:GPU:0" in choice.reason


def test_an_explicit_cpu_scope_keeps_the_op_on_a_gpu_host(gpu_visible):
    assert TFXENT_OPS <= _traced_ops("/CPU:0")
    with tf.device("/job:localhost/replica:0/task:0/device:CPU:0"):
        assert _backend.choose(LOGITS).backend == _backend.OP


@pytest.mark.parametrize("device", ["/GPU:0", "/device:GPU:1", "/job:localhost/device:TPU:0"])
def test_an_accelerator_scope_takes_the_composite_path_even_without_a_visible_gpu(device):
    """The scope alone decides: soft placement would run it on the CPU here, but a scope
    naming a GPU says where the user wants it."""
    ops = _traced_ops(device)
    assert not ops & TFXENT_OPS
    with tf.device(device):
        choice = _backend.choose(LOGITS)
    assert choice.backend == _backend.COMPOSITE and "device scope" in choice.reason


def test_a_function_traced_under_an_eager_cpu_scope_still_avoids_the_op(gpu_visible):
    """TF does not key a tf.function's trace on the eager caller's device scope, so the same
    graph may later run under a GPU scope: only scopes inside the function body count."""
    with tf.device("/CPU:0"):
        ops = {op.type for op in _dense_function().get_concrete_function().graph.get_operations()}
    assert not ops & TFXENT_OPS


def _dense_function():
    return tf.function(lambda: tfxent.nn.softmax_cross_entropy_with_logits(LABELS, LOGITS))


def test_the_innermost_scope_wins(gpu_visible):
    @tf.function
    def nested(labels, logits):
        with tf.device("/GPU:0"):
            with tf.device("/CPU:0"):
                on_cpu = tfxent.nn.softmax_cross_entropy_with_logits(labels, logits)
            on_gpu = tfxent.nn.softmax_cross_entropy_with_logits(labels, logits)
        return on_cpu, on_gpu

    graph = nested.get_concrete_function(LABELS, LOGITS).graph
    placed = {op.type: op.device for op in graph.get_operations() if op.type in TFXENT_OPS}
    assert list(placed) == ["TfxentSoftmaxXent"] and "CPU" in placed["TfxentSoftmaxXent"]


def test_v1_graph_device_scopes_and_device_functions():
    def ops_in(device) -> set[str]:
        graph = tf.Graph()
        with graph.as_default(), graph.device(device):
            labels = tf.compat.v1.placeholder(tf.float32, [None, 3])
            logits = tf.compat.v1.placeholder(tf.float32, [None, 3])
            tfxent.compat.v1.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits)
        return {op.type for op in graph.get_operations()}

    assert TFXENT_OPS & ops_in("/device:CPU:0")
    assert not TFXENT_OPS & ops_in("/device:GPU:0")
    # A device function (v1's replica_device_setter is one) is asked like TF's placer asks it.
    assert TFXENT_OPS & ops_in(lambda op: "/device:CPU:0")
    assert not TFXENT_OPS & ops_in(lambda op: "/device:GPU:0")


def test_eager_calls_on_a_gpu_host_compute_tf_s_values_on_the_composite_path(gpu_visible):
    dense = tfxent.nn.softmax_cross_entropy_with_logits(LABELS, LOGITS)
    sparse = tfxent.nn.sparse_softmax_cross_entropy_with_logits(SPARSE, LOGITS)
    np.testing.assert_allclose(
        dense, tf.nn.softmax_cross_entropy_with_logits(LABELS, LOGITS), rtol=1e-6
    )
    np.testing.assert_allclose(
        sparse, tf.nn.sparse_softmax_cross_entropy_with_logits(SPARSE, LOGITS), rtol=1e-6
    )


def test_doctor_lists_each_device_s_implementation(gpu_visible):
    from tfxent.cli import doctor

    table = doctor._devices()
    assert table["(no device scope)"].startswith("composite (no device scope, and TF would")
    assert table["/device:CPU:0"] == "custom-op"


def test_logical_cpus_all_get_the_op_and_a_mocked_gpu_only_changes_unscoped_calls():
    """Two logical CPUs (TF's own device configuration, set before TF starts): both get the
    op; then, with a GPU reported visible, unscoped calls take the composite path."""
    script = textwrap.dedent(
        """
        import json, tensorflow as tf
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        import tfxent
        from tfxent import _backend, _placement
        from tfxent.cli import doctor
        x = tf.constant([[1.0, 2.0]])
        result = {"visible": _placement.accelerators(), "devices": doctor._devices()}
        _placement.accelerators = lambda: ["/device:GPU:0"]
        with tf.device("/CPU:1"):
            result["cpu1_with_gpu"] = _backend.choose(x).backend
        result["unscoped_with_gpu"] = _backend.choose(x).backend
        print(json.dumps(result))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["visible"] == []
    devices = result["devices"]
    assert devices["/device:CPU:0"] == devices["/device:CPU:1"] == "custom-op"
    assert result["cpu1_with_gpu"] == "custom-op"
    assert result["unscoped_with_gpu"] == "composite"
