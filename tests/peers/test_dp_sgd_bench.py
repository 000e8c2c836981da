"""The DP-SGD benchmark case (tfxent/bench/dp_sgd.py, `python -m tfxent bench --suite dp-sgd`) at a
tiny size: it runs, both sides give the same per-example results, and tfxent's side is one
vectorized call of its ops. (Speed is the benchmark's to report, not a test's.)"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from peers.test_pfor import op_types

from tfxent.bench import dp_sgd as dp_sgd_bench


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(dp_sgd_bench, "BATCH", 4)
    monkeypatch.setattr(dp_sgd_bench, "CLASSES", 7)
    monkeypatch.setattr(dp_sgd_bench, "FEATURES", 3)


@pytest.mark.parametrize("kind", sorted(dp_sgd_bench.FUNCTIONS))
def test_per_example_xent_matches_tf_and_runs_one_vectorized_op(tiny, kind):
    ours, theirs = dp_sgd_bench.FUNCTIONS[kind]
    _, logits, labels = dp_sgd_bench._inputs(kind)
    run = dp_sgd_bench.per_example_xent(ours)
    for mine, reference in zip(
        run(logits, labels), dp_sgd_bench.per_example_xent(theirs)(logits, labels), strict=True
    ):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)
    types = op_types(run.get_concrete_function(logits, labels))
    assert {"TfxentSparseSoftmaxXent", "TfxentSoftmaxXent"} & types
    assert not types & {"While", "StatelessWhile"}


def test_rows_report_both_sides_and_the_loss_share(tiny):
    rows = dp_sgd_bench.rows(samples=1, repeat=1)
    assert {(r["case"], r["kind"]) for r in rows} == {
        (case, kind)
        for case in ("per-example xent", "per-example step")
        for kind in dp_sgd_bench.FUNCTIONS
    }
    for row in rows:
        assert row["tfxent_s"] > 0 and row["tf_nn_s"] > 0
        assert row["speedup"] == pytest.approx(row["tf_nn_s"] / row["tfxent_s"])
        assert row["shape"] == [4, 7]
    steps = [r for r in rows if r["case"] == "per-example step"]
    assert all(r["xent_share_tfxent"] > 0 and r["xent_share_tf_nn"] > 0 for r in steps)


def test_per_example_step_is_loop_free_with_tfxent(tiny):
    features, _, labels = dp_sgd_bench._inputs("sparse")
    weights = tf.Variable(tf.zeros([3, 7]))
    bias = tf.Variable(tf.zeros([7]))
    step = dp_sgd_bench.per_example_step(dp_sgd_bench.FUNCTIONS["sparse"][0], weights, bias)
    step(features, labels)
    types = op_types(step.get_concrete_function(features, labels))
    assert "TfxentSparseSoftmaxXentGrad" in types
    assert not types & {"While", "StatelessWhile"}
