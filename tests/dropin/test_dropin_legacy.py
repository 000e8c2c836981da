"""Unmodified TF 1.x graph programs give TF's losses and weights, step by step, under patch().

Each program in tests/dropin/dropin_programs/ is ordinary legacy code (placeholders, `Session`,
an optimizer's `minimize`, `tf.nn` and `tf.compat.v1.losses`) training on scikit-learn's
digits. It runs twice, in fresh interpreters started side by side: on TensorFlow alone
(tfxent never imported) and under `tfxent.patch()`. Every step's loss and every variable
after every step must agree within float32 tolerance, and the op types of the patched graph
show that tfxent's custom op computed every cross-entropy: the Tfxent ops are there, TF's
xent ops are not, and neither is the composite path (which has no Tfxent op).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "dropin_programs"
TF_XENT_OPS = {"SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"}
EPS32 = float(np.finfo(np.float32).eps)
# Identical arithmetic except the kernels' summation order (≈1 ulp per step); a few hundred
# optimizer steps let that grow to ~16 ulps here. 256 ulps of the largest magnitude is far
# below any semantic difference (v1 vs v2 moves weights by ~0.1).
TOLERANCE_ULPS = 256

# run id -> (program, the patch mode of its tfxent run, {variant id: program arguments}, op
# types that each variant must use)
_DISTILLATION_VARIANTS = {"v1": ["--xent", "v1"], "v2": ["--xent", "v2"]}
_DISTILLATION_OPS = {
    "v1": {"TfxentSoftmaxXent", "TfxentSparseSoftmaxXent"},
    "v2": {"TfxentSoftmaxXent", "TfxentSparseSoftmaxXent"},
}
CASES = {
    "softmax_regression": (
        "softmax_regression",
        "patch",
        {"dense": ["--labels", "dense"], "sparse": ["--labels", "sparse"]},
        {"dense": {"TfxentSoftmaxXent"}, "sparse": {"TfxentSparseSoftmaxXent"}},
    ),
    "small_cnn": (
        "small_cnn",
        "patch",
        {"dense": ["--labels", "dense"], "sparse": ["--labels", "sparse"]},
        {"dense": {"TfxentSoftmaxXent"}, "sparse": {"TfxentSparseSoftmaxXent"}},
    ),
    # The program whose labels depend on a second network, where v1 and v2 differ: under
    # patch(), and under patch(strict=True), whose TF 1.15 contract runs its keyword calls.
    "distillation": ("distillation", "patch", _DISTILLATION_VARIANTS, _DISTILLATION_OPS),
    "distillation_strict": ("distillation", "strict", _DISTILLATION_VARIANTS, _DISTILLATION_OPS),
}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        TFXENT_REQUIRE_OP="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    env.pop("TFXENT_FORCE_COMPOSITE", None)
    return env


def _command(mode: str, outdir: Path, program: str, variants: dict[str, list[str]]) -> list:
    command = [sys.executable, str(PROGRAMS / "run.py"), mode, str(outdir)]
    for index, args in enumerate(variants.values()):
        if index:
            command.append("--then")
        command += [str(PROGRAMS / f"{program}.py"), *args]
    return command


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run each program on TF and under tfxent, both processes at once, once per module."""
    cache: dict[str, dict] = {}

    def get(run_id: str) -> dict:
        if run_id in cache:
            return cache[run_id]
        program, mode, variants, _ = CASES[run_id]
        runs = {}
        for run_mode in ("tf", mode):
            outdir = tmp_path_factory.mktemp(f"{run_id}-{run_mode}")
            process = subprocess.Popen(
                _command(run_mode, outdir, program, variants),
                cwd=REPO,
                env=_child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            runs[run_mode] = (process, outdir)
        loaded = {}
        for run_mode, (process, outdir) in runs.items():
            output, _ = process.communicate(timeout=600)
            assert process.returncode == 0, f"{program} ({run_mode}) failed:\n{output[-4000:]}"
            loaded["tf" if run_mode == "tf" else "tfxent"] = {
                name: (
                    dict(np.load(outdir / f"run{index}.npz")),
                    json.loads((outdir / f"run{index}.json").read_text()),
                )
                for index, name in enumerate(variants)
            }
        cache[run_id] = loaded
        return loaded

    return get


def _assert_same_training(reference: dict, patched: dict) -> None:
    assert reference.keys() == patched.keys()
    for name, expected in reference.items():
        actual = patched[name]
        assert actual.shape == expected.shape, name
        scale = max(1.0, float(np.max(np.abs(expected))))
        tolerance = TOLERANCE_ULPS * EPS32
        np.testing.assert_allclose(
            actual, expected, rtol=tolerance, atol=tolerance * scale, err_msg=name
        )


@pytest.mark.parametrize(
    ("run_id", "variant"),
    [(run_id, variant) for run_id, (_, _, variants, _) in CASES.items() for variant in variants],
)
def test_legacy_program_trains_as_on_tf_step_by_step(results, run_id, variant):
    runs = results(run_id)
    (reference, ref_report), (patched, patched_report) = (
        runs["tf"][variant],
        runs["tfxent"][variant],
    )

    # The reference really is TensorFlow alone, computing with TF's own xent ops.
    assert not ref_report["tfxent_imported"] and not ref_report["eager"]
    assert TF_XENT_OPS & set(ref_report["op_types"])
    # Under patch every cross-entropy is tfxent's custom op: not TF's op, not the composite.
    expected_ops = CASES[run_id][3]
    assert patched_report["tfxent_imported"] and not patched_report["eager"]
    assert expected_ops[variant] <= set(patched_report["op_types"])
    assert not TF_XENT_OPS & set(patched_report["op_types"])
    grads = {op + "Grad" for op in expected_ops[variant]}
    assert grads <= set(patched_report["op_types"]), "minimize must use tfxent's gradient op"

    steps = len(reference["losses"])
    assert steps >= 200
    _assert_same_training(reference, patched)


def test_distillation_v1_and_v2_train_differently(results):
    """The distillation program tells v1 from v2 (labels' gradient into the teacher), so the
    comparisons above would catch a surface that mixed them up."""
    runs = results("distillation")
    for source in ("tf", "tfxent"):
        v1, v2 = runs[source]["v1"][0], runs[source]["v2"][0]
        np.testing.assert_array_equal(v1["losses"][0], v2["losses"][0])  # same start
        assert np.max(np.abs(v1["teacher.w2"][-1] - v2["teacher.w2"][-1])) > 1e-2
    # tfxent's v1 run is far from TF's v2 run, and close to TF's v1 run.
    ours_v1, theirs_v2 = runs["tfxent"]["v1"][0], runs["tf"]["v2"][0]
    assert np.max(np.abs(ours_v1["teacher.w2"][-1] - theirs_v2["teacher.w2"][-1])) > 1e-2
