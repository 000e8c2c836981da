"""Values and gradients of the fused head against the unfused TF reference, over
hypothesis-drawn shapes and options (a fast profile here; the long one behind `long`)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from fused_helpers import (
    assert_close,
    eager_runner_op_types,
    reference,
    tolerance,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfxent.fused import linear_sparse_softmax_cross_entropy

FAST = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
IGNORE = -100


@st.composite
def cases(draw):
    n = draw(st.sampled_from([1, 2, 7, 33]) | st.integers(1, 70))
    d = draw(st.integers(1, 24))
    v = draw(st.integers(2, 300))
    chunk = draw(st.none() | st.integers(1, max(1, n + 3)))
    ignore = draw(st.sampled_from(["nowhere", "everywhere", "some"]))
    return {
        "n": n,
        "d": d,
        "v": v,
        "chunk": chunk,
        "ignore": ignore,
        "bias": draw(st.booleans()),
        "label_smoothing": draw(st.sampled_from([0.0, 0.0, 0.1, 0.5])),
        "z_loss": draw(st.sampled_from([0.0, 0.0, 1e-4, 0.1])),
        "logit_soft_cap": draw(st.sampled_from([None, None, 2.0, 30.0])),
        "label_dtype": draw(st.sampled_from([tf.int32, tf.int64])),
        "upstream": draw(st.sampled_from(["mean", "weighted"])),
        "gradient": draw(st.sampled_from(["auto", "recompute"])),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def _check(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    n, d, v = case["n"], case["d"], case["v"]
    hidden = tf.constant(rng.normal(size=(n, d)), tf.float32)
    kernel = tf.constant(rng.normal(size=(d, v)) / np.sqrt(d) * 3, tf.float32)
    bias = tf.constant(rng.normal(size=v), tf.float32) if case["bias"] else None
    labels = rng.integers(0, v, size=n)
    if case["ignore"] == "everywhere":
        labels[:] = IGNORE
    elif case["ignore"] == "some":
        labels[rng.random(n) < 0.3] = IGNORE
    labels = tf.constant(labels, case["label_dtype"])
    options = {k: case[k] for k in ("label_smoothing", "z_loss", "logit_soft_cap")} | {
        "ignore_index": IGNORE
    }
    upstream = (
        tf.fill([n], 1.0 / n)
        if case["upstream"] == "mean"
        else tf.constant(rng.normal(size=n), tf.float32)
    )
    params = [hidden, kernel] + ([bias] if bias is not None else [])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(params)
        fused = linear_sparse_softmax_cross_entropy(
            hidden,
            kernel,
            labels,
            bias,
            chunk_size=case["chunk"],
            gradient=case["gradient"],
            **options,
        )
        expected = reference(hidden, kernel, labels, bias, **options)
        fused_total = tf.reduce_sum(fused * upstream)
        expected_total = tf.reduce_sum(expected * upstream)
    rtol = tolerance(tf.float32, d, v)
    assert fused.shape == expected.shape and fused.dtype == expected.dtype
    assert_close(fused, expected, rtol, "loss")
    for name, got, want in zip(
        ["hidden", "kernel", "bias"],
        tape.gradient(fused_total, params),
        tape.gradient(expected_total, params),
        strict=False,
    ):
        assert_close(got, want, rtol, f"gradient w.r.t. {name}")
    ran = eager_runner_op_types()
    assert "TfxentSparseSoftmaxXent" in ran[case["gradient"] == "auto"]
    assert {"TfxentFusedLogitGradient", "TfxentFusedAddColumns"} <= ran[True]


@FAST
@given(cases())
def test_parity_fast(case):
    _check(case)


@pytest.mark.long
@LONG
@given(cases())
def test_parity_long(case):
    _check(case)
