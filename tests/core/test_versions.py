"""The version table (tfxent/_versions.py): its mechanics, and that every row it states about
the installed TF (and NumPy) is what TF and tfxent actually do here. Run in every tox
environment, these tests check each row against each version."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

import tfxent
from tfxent import _versions
from tfxent.parity import crashes, runner
from tfxent.parity.cases import Case, catalogue
from tfxent.parity.tolerance import tolerance


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.16.2", (2, 16, 2)),
        ("2.12", (2, 12, 0)),
        ("2.22.0-dev20260905", (2, 22, 0)),
        ("2.22.0.dev20260905", (2, 22, 0)),
        ("1.26.4", (1, 26, 4)),
    ],
)
def test_parse_reads_major_minor_patch(text, expected):
    assert _versions.parse(text) == expected


@pytest.mark.parametrize(
    ("key", "version", "expected"),
    [
        ("eager_error_name_suffix", "2.12.1", False),
        ("eager_error_name_suffix", "2.13.1", True),
        ("eager_error_name_suffix", "2.22.0-dev20260905", True),
        ("dense_zero_classes_segfault", "2.15.1", False),
        ("dense_zero_classes_segfault", "2.16.2", True),
        ("dense_zero_classes_segfault", "2.17.1", False),
        ("xla_rounding_pre_2_19", "2.18.1", True),
        ("xla_rounding_pre_2_19", "2.19.0", False),
        ("graph_tensor_type_name", "2.13.1", True),
        ("graph_tensor_type_name", "2.14.0", False),
    ],
)
def test_has_follows_the_version_ranges(key, version, expected):
    assert _versions.has(key, tf_version=version, numpy_version="2.0.0") is expected


def test_value_gives_present_or_absent():
    assert _versions.value("graph_tensor_type_name", "2.12.0", "1.23.5") == "Tensor"
    assert _versions.value("graph_tensor_type_name", "2.21.0", "2.4.0") == "SymbolicTensor"
    assert _versions.value("kernel_rounding_2_16_2", "2.16.2", "1.26.4") == 4.0
    assert _versions.value("kernel_rounding_2_16_2", "2.21.0", "2.4.0") == 1.0
    assert _versions.has("numpy1_scalar_axis_fails", "2.17.1", "1.26.4")
    assert not _versions.has("numpy1_scalar_axis_fails", "2.17.1", "2.0.2")


def test_eager_record_module_has_the_helpers():
    record = _versions.module("eager_record_module")
    assert callable(record.stop_recording) and callable(record.should_record_backprop)
    assert _versions.value("eager_record_module", "2.12.1", "1.23.5").endswith(".tape")
    assert _versions.value("eager_record_module", "2.13.1", "1.24.3").endswith(".record")


def test_unknown_key_names_the_known_ones():
    with pytest.raises(KeyError, match="eager_error_name_suffix"):
        _versions.has("no_such_behaviour")


def test_every_row_is_documented_and_keys_are_unique():
    keys = [b.key for b in _versions.BEHAVIOURS]
    assert len(keys) == len(set(keys))
    for behaviour in _versions.BEHAVIOURS:
        assert behaviour.summary and behaviour.tf_does and behaviour.tfxent_does, behaviour.key
        assert behaviour.pinned_by, behaviour.key
        assert behaviour.tf or behaviour.numpy, behaviour.key
    assert set(_versions.current()) == set(keys)


@pytest.mark.parametrize(
    ("shape", "axis", "expected"),
    [
        ((2, 0), -1, True),
        ((0,), -1, True),
        ((0, 0), -1, True),
        ((0, 3), 0, True),
        ((0, 3), -1, False),
        ((2, 0, 3), -1, False),
        ((2, 0), -2, False),  # not a valid dense axis: TF fails before its kernel
        ((), -1, False),
    ],
)
def test_dense_zero_classes_predicate(shape, axis, expected):
    assert _versions.dense_zero_classes(shape, axis) is expected


def test_tolerance_widens_only_for_2_16():
    for dtype in (tf.float16, tf.bfloat16, tf.float32, tf.float64):
        base = tolerance(dtype, tf_version="2.21.0")
        assert tolerance(dtype, tf_version="2.16.2") == 4.0 * base
        assert tolerance(dtype, tf_version="2.15.1") == base
    expected = tolerance(tf.float32, tf_version=tf.__version__)
    assert tolerance(tf.float32) == expected


def _eager_error(fn) -> str:
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        fn(labels=np.array([0, 9], np.int32), logits=np.zeros((2, 4), np.float32))
    return str(err.value)


def test_eager_error_suffix_follows_installed_tf():
    has_suffix = _versions.has("eager_error_name_suffix")
    for fn in (
        tf.nn.sparse_softmax_cross_entropy_with_logits,
        tfxent.nn.sparse_softmax_cross_entropy_with_logits,
    ):
        message = _eager_error(fn)
        assert "Received a label value of 9" in message
        suffix = re.search(r"\[Op:\w+\]( name: ?\S*)?\s*$", message)
        assert suffix, message
        assert bool(suffix.group(1)) is has_suffix, message


def _graph_tensor_axis_call(fn):
    labels = np.full((2, 3, 4), 0.25, np.float32)
    logits = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    return fn(labels, logits, axis=tf.constant(0))


def test_tensor_axis_errors_follow_installed_tf():
    fns = (tf.nn.softmax_cross_entropy_with_logits, tfxent.nn.softmax_cross_entropy_with_logits)
    if _versions.has("graph_tensor_axis_indexes"):
        with tf.Graph().as_default(), tf.compat.v1.Session() as session:
            theirs, ours = session.run([_graph_tensor_axis_call(fn) for fn in fns])
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    else:
        name = _versions.value("graph_tensor_type_name")
        for fn in fns:
            with tf.Graph().as_default(), pytest.raises(TypeError) as err:
                _graph_tensor_axis_call(fn)
            assert str(err.value).endswith(f"not {name}"), str(err.value)

    def traced(fn):
        @tf.function(autograph=False)
        def call(axis):
            return fn(np.full((2, 3), 0.5, np.float32), np.zeros((2, 3), np.float32), axis=axis)

        with pytest.raises(tf.errors.OperatorNotAllowedInGraphError) as err:
            call(tf.constant(0))
        return str(err.value)

    ours = traced(tfxent.nn.softmax_cross_entropy_with_logits)
    theirs = traced(tf.nn.softmax_cross_entropy_with_logits)
    assert "Using a symbolic `tf.Tensor` as a Python `bool`" in theirs
    assert ours == theirs


def test_numpy_scalar_axis_follows_numpy():
    labels = np.full((2, 3, 4), 0.5, np.float32)
    logits = np.zeros((2, 3, 4), np.float32)
    fails = _versions.has("numpy1_scalar_axis_fails")
    for fn in (
        tf.nn.softmax_cross_entropy_with_logits,
        tfxent.nn.softmax_cross_entropy_with_logits,
    ):
        if fails:
            with pytest.raises(ValueError, match="Tensor conversion requested dtype int32"):
                fn(labels, logits, axis=np.int32(0))
        else:
            assert fn(labels, logits, axis=np.int32(0)).shape == (3, 4)


@pytest.mark.parametrize("mode", ["eager", "function", "session"])
def test_int16_labels_follow_installed_tf(mode):
    """Determinism on, sparse int16 labels: both sides compute (2.13+) or both fail in
    GatherV2 (2.12), with TF's class and message; the forward is compared, not the
    gradient (see test_fuzz's determinism-int16-labels-gradient)."""
    labels = np.array([1, 0, 2], np.int16)
    for logits_dtype in (np.float16, np.float32):
        case = Case("int16", "nn.sparse", labels, np.ones((3, 4), logits_dtype), gradients=False)
        result = runner.compare(case, mode, deterministic=True)
        assert result.ok, result.problems
        assert result.raised is not _versions.has("gather_int16_indices")


ZERO_CLASS_CASES = [
    pytest.param(c, id=c.id)
    for c in catalogue()
    if not c.sparse
    and c.logits is not None
    and _versions.dense_zero_classes(np.shape(c.logits), crashes.class_axis(c))
] + [  # shapes the fuzz draws: empty outer dimensions of higher rank, half precision
    pytest.param(c, id=c.id)
    for c in (
        Case(
            "empty_rank3",
            "nn.dense",
            np.zeros((0, 0, 0), np.float16),
            np.zeros((0, 0, 0), np.float16),
        ),
        Case(
            "empty_rows_rank3",
            "nn.dense",
            np.zeros((2, 0, 0), np.float32),
            np.zeros((2, 0, 0), np.float32),
        ),
        Case(
            "rows_rank3",
            "nn.dense",
            np.zeros((2, 3, 0), np.float32),
            np.zeros((2, 3, 0), np.float32),
        ),
    )
]


@pytest.mark.parametrize("mode", ["eager", "function", "session"])
@pytest.mark.parametrize("case", ZERO_CLASS_CASES)
def test_zero_class_substitute_matches_tf(case, mode):
    """What `tfxent check` expects where TF 2.16 segfaults is what this TF does (on every
    other version) and what tfxent does (on every version, 2.16 included)."""
    expected = crashes.expected_where_tf_crashes(case, mode)
    ours_fn, theirs_fn = runner.surfaces(case.api)
    with runner.determinism(False):
        assert crashes.outcome_problems(runner.run(ours_fn, case, mode), expected) == []
        if not _versions.has("dense_zero_classes_segfault"):
            theirs = runner.run(theirs_fn, case, mode)
            assert crashes.outcome_problems(theirs, expected, side="TF") == []


def test_zero_class_cases_exist():
    assert {p.values[0].name for p in ZERO_CLASS_CASES} >= {"zero_classes", "rank1_zero_classes"}
