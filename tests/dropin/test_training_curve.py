"""The README's proof: examples/training_curve.py trains a TF 1.x graph program at learning
rate 0.3 for 200 steps, once on TensorFlow alone and once under `tfxent.patch()`, and every
step's loss and every final weight must have the same bits. The graphs' op types show that
TF's xent kernels ran in the first and tfxent's custom ops, and only they, in the second."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "training_curve.py"
TF_XENT_OPS = {"SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"}
TFXENT_OPS = {"TfxentSoftmaxXent", "TfxentSparseSoftmaxXent"}


def _example():
    spec = importlib.util.spec_from_file_location("training_curve", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_patched_training_curve_is_bit_identical(tmp_path):
    example = _example()
    env = dict(os.environ, TFXENT_REQUIRE_OP="1", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    runs = {}
    for side in ("plain", "patched"):
        out = tmp_path / f"{side}.json"
        command = [sys.executable, str(EXAMPLE), "--child", side, "--steps", "200"]
        subprocess.run([*command, "--out", str(out)], check=True, env=env, timeout=900)
        runs[side] = json.loads(out.read_text())
    assert TF_XENT_OPS <= set(runs["plain"]["op_types"])
    assert TFXENT_OPS <= set(runs["patched"]["op_types"])
    assert not TF_XENT_OPS & set(runs["patched"]["op_types"])
    result = example.compare(runs["plain"], runs["patched"])
    assert result["steps"] == 200
    assert result["steps_differing"] == 0, result
    assert result["weights_differing"] == 0, result
