"""tfxent under tf.distribute: the same training as on one device, on tfxent's custom op.

tests/dropin/dropin_programs/distributed_training.py trains a small network on scikit-learn's digits
with a custom training loop (`tfxent.nn.sparse_softmax_cross_entropy_with_logits`, gradients
all-reduced across replicas) and with Keras `fit` (`CategoricalCrossentropy(from_logits=True)`
under `tfxent.patched()`), once on one device and under a strategy that splits every global
batch across replicas. The losses and weights must agree within float32 tolerance, and every
replica's traced step must compute with tfxent's custom op and its gradient op, not TF's xent
ops and not the composite path.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("sklearn")
keras = pytest.importorskip("keras")
if int(keras.__version__.split(".")[0]) < 3:
    pytest.skip("Keras 3 (TF 2.16+)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
PROGRAM = Path(__file__).resolve().parent / "dropin_programs" / "distributed_training.py"
EPS32 = float(np.finfo(np.float32).eps)
TOLERANCE = 64 * EPS32  # all-reduce sums two half-batch gradients: a few ulps per step
OPS = {"custom_loop": "TfxentSparseSoftmaxXent", "fit": "TfxentSoftmaxXent"}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        TFXENT_REQUIRE_OP="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    for name in ("TFXENT_FORCE_COMPOSITE", "TF_CONFIG"):
        env.pop(name, None)
    return env


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROGRAM), *args],
        cwd=REPO,
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen, what: str) -> dict:
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"{what} timed out:\n{stderr[-3000:]}")
    assert process.returncode == 0, f"{what} failed:\n{stderr[-4000:]}"
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"{what} printed no result:\n{stdout[-2000:]}"
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def mirrored():
    """MirroredStrategy over two logical CPUs, and the one-device reference, in one process."""
    return _result(_start("mirrored"), "the MirroredStrategy run")


def _assert_same_losses(actual: list, expected: list, what: str) -> None:
    np.testing.assert_allclose(actual, expected, rtol=TOLERANCE, err_msg=f"{what}: losses")


def _assert_same_weights(actual: list, expected: list, what: str) -> None:
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        want = np.array(want)
        np.testing.assert_allclose(
            np.array(got),
            want,
            rtol=TOLERANCE,
            atol=TOLERANCE * float(np.max(np.abs(want))),
            err_msg=f"{what}: weights[{index}]",
        )


def _assert_same(actual: dict, expected: dict, what: str) -> None:
    _assert_same_losses(actual["losses"], expected["losses"], what)
    _assert_same_weights(actual["weights"], expected["weights"], what)


def _assert_custom_op_everywhere(calls: list[dict], op: str, devices: set[str]) -> None:
    assert calls, "tfxent was never called"
    for call in calls:
        assert (call["backend"], call["xla"]) == ("custom-op", False), call
        assert not call["tf_xent_ops"], call
        assert op in call["tfxent_ops"], call
    replica_calls = [c for c in calls if c["device"]]
    assert {c["device"] for c in replica_calls} == devices, "one trace per replica device"
    for call in replica_calls:
        assert op + "Grad" in call["tfxent_ops"], "each replica's gradient is tfxent's op"


@pytest.mark.parametrize("loop", ["custom_loop", "fit"])
def test_mirrored_strategy_on_two_cpus_equals_one_device(mirrored, loop):
    assert mirrored["replicas"] == 2
    _assert_same(mirrored["distributed"][loop], mirrored["single"][loop], loop)
    devices = {f"/job:localhost/replica:0/task:0/device:CPU:{i}" for i in (0, 1)}
    _assert_custom_op_everywhere(mirrored["distributed_calls"][loop], OPS[loop], devices)
    # The reference is tfxent on one device (and its weights moved: the comparison has teeth).
    single = mirrored["single"][loop]
    assert single["losses"][-1] < single["losses"][0]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_with_two_workers_equals_one_device(mirrored):
    ports = ",".join(str(port) for port in _free_ports(2))
    workers = [_start("multiworker", str(index), ports) for index in (0, 1)]
    results = [_result(worker, f"worker {index}") for index, worker in enumerate(workers)]
    single = mirrored["single"]
    for index, result in enumerate(results):
        assert result["replicas"] == 2
        device = f"/job:worker/replica:0/task:{index}/device:CPU:0"
        for loop in ("custom_loop", "fit"):
            _assert_custom_op_everywhere(result["distributed_calls"][loop], OPS[loop], {device})
        _assert_same(result["distributed"]["custom_loop"], single["custom_loop"], "custom loop")
        fit = result["distributed"]["fit"]
        _assert_same_weights(fit["weights"], single["fit"]["weights"], f"fit, worker {index}")
    # Each worker's fit logs cover its share of every batch (see the program): their mean is
    # the one-device history.
    history = np.mean([r["distributed"]["fit"]["losses"] for r in results], axis=0)
    _assert_same_losses(history, single["fit"]["losses"], "fit, mean of the workers")
