"""The parity catalogue: calls that tfxent and the installed TF must answer identically.

One catalogue serves the test suite (tests/parity/test_parity_*.py), `python -m tfxent
check` and the version matrix. Each case names a surface pair, inputs and keyword arguments;
the runner (runner.py) calls both sides in every execution mode and compares everything
observable. Inputs are built from fixed seeds, so a case is the same on every run and every
TF. Where tfxent knowingly differs, differences.py says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

# Surface pairs: tfxent's function and the TF function it mirrors, by dotted name.
APIS = {
    "nn.dense": "nn.softmax_cross_entropy_with_logits",
    "nn.sparse": "nn.sparse_softmax_cross_entropy_with_logits",
    "v1.dense": "compat.v1.nn.softmax_cross_entropy_with_logits",
    "v1.dense_v2": "compat.v1.nn.softmax_cross_entropy_with_logits_v2",
    "v1.sparse": "compat.v1.nn.sparse_softmax_cross_entropy_with_logits",
}
MODES = ("eager", "function", "session", "xla")

_BF16 = tf.bfloat16.as_numpy_dtype


@dataclass(frozen=True)
class Case:
    """One call: `api(labels=labels, logits=logits, **kwargs)`."""

    name: str
    api: str
    labels: object
    logits: object
    kwargs: dict = field(default_factory=dict)
    gradients: bool = True

    @property
    def sparse(self) -> bool:
        return self.api.endswith("sparse")

    @property
    def id(self) -> str:
        return f"{self.api}:{self.name}"


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def logits_of(shape: tuple[int, ...], dtype=np.float32, seed: int = 0, scale: float = 3.0):
    return (_rng(seed).standard_normal(shape) * scale).astype(dtype)


def soft_labels(shape: tuple[int, ...], dtype=np.float32, seed: int = 1, axis: int = -1):
    """Rows that sum to 1 along `axis` (a softmax of random values)."""
    raw = np.exp(_rng(seed).standard_normal(shape))
    return (raw / raw.sum(axis=axis, keepdims=True)).astype(dtype)


def one_hot(shape: tuple[int, ...], dtype=np.float32, seed: int = 2):
    classes = shape[-1]
    index = _rng(seed).integers(0, classes, size=shape[:-1])
    return np.eye(classes, dtype=np.float64)[index].astype(dtype)


def class_indices(shape: tuple[int, ...], classes: int, dtype=np.int32, seed: int = 3):
    return _rng(seed).integers(0, classes, size=shape).astype(dtype)


def _dense_value_cases(api: str) -> list[Case]:
    inf, nan = np.inf, np.nan
    f32 = np.float32
    return [
        Case("f32_soft", api, soft_labels((4, 5)), logits_of((4, 5))),
        Case("f32_one_hot", api, one_hot((6, 7)), logits_of((6, 7), seed=4)),
        Case("f64_soft", api, soft_labels((3, 6), np.float64), logits_of((3, 6), np.float64)),
        Case("f16", api, soft_labels((3, 5), np.float16), logits_of((3, 5), np.float16)),
        Case("bf16", api, soft_labels((3, 5), _BF16), logits_of((3, 5), _BF16)),
        Case(
            "f16_logits_f64_labels",
            api,
            soft_labels((2, 4), np.float64),
            logits_of((2, 4), np.float16),
        ),
        Case("f64_logits_f32_labels", api, soft_labels((2, 4)), logits_of((2, 4), np.float64)),
        Case("f32_logits_f16_labels", api, soft_labels((2, 4), np.float16), logits_of((2, 4))),
        Case("int32_labels", api, one_hot((3, 4), np.int32), logits_of((3, 4))),
        Case("bool_labels", api, one_hot((3, 4), np.bool_), logits_of((3, 4))),
        Case(
            "python_lists",
            api,
            [[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]],
            [[4.0, 2.0, 1.0], [0.0, 5.0, 1.0]],
        ),
        Case(
            "labels_sum_3",
            api,
            np.array([[2.0, 1.0, 0.0], [0.0, 0.5, 0.1]], f32),
            logits_of((2, 3)),
        ),
        Case("negative_labels", api, np.array([[-0.5, 1.5, 0.0]], f32), logits_of((1, 3))),
        Case("all_zero_labels", api, np.zeros((2, 3), f32), logits_of((2, 3))),
        Case("rank1", api, soft_labels((5,)), logits_of((5,))),
        Case("rank3_last", api, soft_labels((2, 3, 4)), logits_of((2, 3, 4))),
        Case("rank4", api, soft_labels((2, 2, 3, 4)), logits_of((2, 2, 3, 4))),
        Case("empty_batch", api, np.zeros((0, 3), f32), np.zeros((0, 3), f32)),
        Case("empty_rank3", api, np.zeros((2, 0, 3), f32), np.zeros((2, 0, 3), f32)),
        Case("zero_classes", api, np.zeros((2, 0), f32), np.zeros((2, 0), f32)),
        Case("rank1_zero_classes", api, np.zeros((0,), f32), np.zeros((0,), f32)),
        Case("zero_by_zero", api, np.zeros((0, 0), f32), np.zeros((0, 0), f32)),
        Case("rank0", api, np.float32(1.0), np.float32(2.0), gradients=False),
        Case(
            "inf_logits",
            api,
            np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]], f32),
            np.array([[inf, 0, 0], [inf, 1, 0], [-inf, 0, 0]], f32),
        ),
        Case("all_neg_inf_row", api, np.array([[0, 1, 0]], f32), np.full((1, 3), -inf, f32)),
        Case("neg_inf_zero_label", api, np.array([[0, 1, 0]], f32), np.array([[-inf, 0, 0]], f32)),
        Case("nan_logit", api, np.array([[0, 1, 0]], f32), np.array([[nan, 0, 0]], f32)),
        Case("huge_logits", api, np.array([[0, 1]], f32), np.array([[1e30, -1e30]], f32)),
        Case("large_offset", api, soft_labels((3, 9)), logits_of((3, 9)) + np.float32(1000.0)),
        Case("f64_dominant", api, np.array([[1.0, 0.0]]), np.array([[0.0, -40.0]])),
        Case("wide_f32", api, soft_labels((8, 1000)), logits_of((8, 1000), seed=5)),
        # Longer than one class chunk (32768): exercises the exact merge of row statistics.
        Case("chunked_row_f32", api, soft_labels((3, 70001)), logits_of((3, 70001), seed=6)),
        Case(
            "chunked_row_f16",
            api,
            soft_labels((2, 33000), np.float16),
            logits_of((2, 33000), np.float16),
        ),
    ]


def _dense_axis_and_broadcast_cases(api: str) -> list[Case]:
    f32 = np.float32
    x3 = logits_of((2, 3, 4))
    return [
        Case("axis0", api, soft_labels((2, 3, 4), axis=0), x3, {"axis": 0}),
        Case("axis1", api, soft_labels((2, 3, 4), axis=1), x3, {"axis": 1}),
        Case("axis2", api, soft_labels((2, 3, 4)), x3, {"axis": 2}),
        Case("axis_minus2", api, soft_labels((2, 3, 4)), x3, {"axis": -2}),
        Case("axis3_rank3", api, soft_labels((2, 3, 4)), x3, {"axis": 3}),
        Case("axis_minus2_rank2", api, soft_labels((2, 4)), logits_of((2, 4)), {"axis": -2}),
        Case("axis0_empty_batch", api, np.zeros((0, 3), f32), np.zeros((0, 3), f32), {"axis": 0}),
        Case("labels_1xC", api, soft_labels((1, 3)), logits_of((4, 3))),
        Case("labels_C", api, soft_labels((3,)), logits_of((4, 3))),
        Case("labels_Nx1", api, np.array([[1.0], [0.0], [0.5], [2.0]], f32), logits_of((4, 3))),
        Case("labels_1x4_rank3", api, soft_labels((1, 4)), x3),
        Case("labels_1x1x4_rank3", api, soft_labels((1, 1, 4)), x3),
        Case("labels_2x3x1_rank3", api, np.ones((2, 3, 1), f32), x3),
        Case("labels_6x4_rank3", api, soft_labels((6, 4)), x3),
        Case("labels_3x4_rank3", api, soft_labels((3, 4)), x3),
        Case("labels_2x1x4_rank3", api, soft_labels((2, 1, 4)), x3),
        Case("labels_4_axis0", api, soft_labels((4,)), x3, {"axis": 0}),
        Case("logits_1xC_labels_NxC", api, soft_labels((4, 3)), logits_of((1, 3))),
        Case("logits_Nx1_labels_NxC", api, soft_labels((2, 3)), logits_of((2, 1))),
        Case("scalar_labels", api, np.float32(1.0), logits_of((4, 3)), gradients=False),
        Case("class_mismatch", api, soft_labels((2, 3)), logits_of((2, 4))),
        Case("batch_mismatch", api, soft_labels((2, 4)), logits_of((3, 4))),
        Case("int_logits", api, [[0.0, 1.0]], [[1, 2]], gradients=False),
        Case("int64_logits", api, soft_labels((2, 3)), np.ones((2, 3), np.int64), gradients=False),
        Case(
            "complex_logits",
            api,
            soft_labels((1, 2)),
            np.ones((1, 2), np.complex64),
            gradients=False,
        ),
        Case("string_labels", api, np.array([["a", "b"]]), logits_of((1, 2)), gradients=False),
    ]


def _dense_argument_cases() -> list[Case]:
    lb, lg = soft_labels((2, 3)), logits_of((2, 3))
    return [
        Case("v1_axis_with_default_dim", "v1.dense", lb, lg, {"axis": -1}),
        Case("v1_axis1_dim_none", "v1.dense", lb, lg, {"axis": 1, "dim": None}),
        Case("v1_dim0", "v1.dense", soft_labels((2, 3), axis=0), lg, {"dim": 0}),
        Case("v1_dim_none_axis_none", "v1.dense", lb, lg, {"dim": None}),
        Case("v1_labels_missing", "v1.dense", None, lg, gradients=False),
        Case("v1_logits_missing", "v1.dense", lb, None, gradients=False),
        Case("v1v2_dim1", "v1.dense_v2", lb, lg, {"dim": 1}),
        Case("v1v2_dim_and_axis", "v1.dense_v2", lb, lg, {"dim": -1, "axis": -1}),
        Case("v1v2_labels_none", "v1.dense_v2", None, lg, gradients=False),
        Case("v2_labels_none", "nn.dense", None, lg, gradients=False),
        Case("v2_axis_none", "nn.dense", lb, lg, {"axis": None}),
    ]


def _sparse_cases(api: str) -> list[Case]:
    f32 = np.float32
    inf, nan = np.inf, np.nan
    return [
        Case("f32_int32", api, class_indices((5,), 4), logits_of((5, 4))),
        Case("f32_int64", api, class_indices((5,), 4, np.int64), logits_of((5, 4))),
        Case("f64", api, class_indices((3,), 6), logits_of((3, 6), np.float64)),
        Case("f16", api, class_indices((3,), 5), logits_of((3, 5), np.float16)),
        Case("bf16", api, class_indices((3,), 5), logits_of((3, 5), _BF16)),
        Case("bf16_wide", api, class_indices((4,), 1000), logits_of((4, 1000), _BF16, seed=7)),
        Case("python_lists", api, [0, 2], [[4.0, 2.0, 1.0], [0.0, 5.0, 1.0]]),
        Case("rank1_scalar_label", api, np.int32(2), logits_of((4,))),
        Case("rank3", api, class_indices((2, 3), 4), logits_of((2, 3, 4))),
        Case("empty_batch", api, np.zeros((0,), np.int32), np.zeros((0, 4), f32)),
        Case("empty_rank3", api, np.zeros((2, 0), np.int32), np.zeros((2, 0, 4), f32)),
        Case("label_too_big", api, np.array([0, 4, 1], np.int32), logits_of((3, 4))),
        Case("label_negative", api, np.array([0, -1, 1], np.int32), logits_of((3, 4))),
        Case("labels_both_bad", api, np.array([9, -3, 1], np.int32), logits_of((3, 4))),
        Case("label_2_pow_40", api, np.array([0, 2**40, 1], np.int64), logits_of((3, 4))),
        Case("many_labels_bad", api, np.arange(30, dtype=np.int32), logits_of((30, 29))),
        Case("zero_classes", api, np.zeros((2,), np.int32), np.zeros((2, 0), f32)),
        Case("zero_by_zero", api, np.zeros((0,), np.int32), np.zeros((0, 0), f32)),
        Case("zero_classes_rank3", api, np.zeros((1, 2), np.int32), np.zeros((1, 2, 0), f32)),
        Case("labels_rank_mismatch", api, np.zeros((3, 1), np.int32), logits_of((3, 4))),
        Case("scalar_logits", api, np.int32(0), np.float32(1.0), gradients=False),
        Case("batch_mismatch", api, np.zeros((2,), np.int32), logits_of((3, 4))),
        Case("float_labels", api, np.zeros((2,), f32), logits_of((2, 4)), gradients=False),
        Case("uint8_labels", api, np.zeros((2,), np.uint8), logits_of((2, 4)), gradients=False),
        Case("int_logits", api, [0], [[1, 2]], gradients=False),
        Case("nan_logit", api, np.array([1], np.int32), np.array([[nan, 0, 0]], f32)),
        Case("inf_at_label", api, np.array([0], np.int32), np.array([[inf, 0, 0]], f32)),
        Case("all_neg_inf", api, np.array([0], np.int32), np.full((1, 3), -inf, f32)),
        Case("neg_inf_elsewhere", api, np.array([1], np.int32), np.array([[-inf, 0, 0]], f32)),
        Case("large_offset", api, class_indices((3,), 9), logits_of((3, 9)) + f32(1000.0)),
        Case("wide_f32", api, class_indices((8,), 1000), logits_of((8, 1000), seed=8)),
        Case("chunked_row", api, class_indices((3,), 70001), logits_of((3, 70001), seed=9)),
    ]


def catalogue() -> list[Case]:
    """Every case, dense and sparse, on every TF-mirroring surface."""
    cases: list[Case] = []
    for api in ("nn.dense", "v1.dense_v2"):
        cases += _dense_value_cases(api)
        cases += _dense_axis_and_broadcast_cases(api)
    # v1 dense differs only in the stopped labels' gradient and its arguments.
    cases += [c for c in _dense_value_cases("v1.dense")[:12]]
    cases += [c for c in _dense_axis_and_broadcast_cases("v1.dense") if "labels" in c.name]
    cases += _dense_argument_cases()
    for api in ("nn.sparse", "v1.sparse"):
        cases += _sparse_cases(api)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate parity case ids"
    return cases
