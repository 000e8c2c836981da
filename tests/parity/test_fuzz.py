"""Fuzzing: for any input, tfxent and the installed tf.nn return the same or raise the same.

Hypothesis draws whole calls (tfxent.parity.cases.Case): the surface (v2, compat.v1, v1 _v2,
both sparse), shapes of rank 0-5 with zero-size dimensions and rows longer than a class
chunk, logits dtypes including wrong ones (ints, complex, bool), axes valid and invalid,
values with NaN, ±inf, huge, tiny and subnormal numbers, dense label dtypes and broadcast or
mismatched label shapes, and sparse labels out of range, negative or at the int32/int64
extremes. Each call runs through tfxent.parity.runner.compare in eager mode and in
tf.function (and, in the long profile, in a v1 Session and under XLA), with op determinism
off or on: values and first/second-order gradients equal within
tfxent.parity.tolerance.tolerance, the same dtypes and static shapes, or the same exception
class with TF's message fragment.

Profiles:

* fast (default, CI): a fixed, derandomised sample of 120 draws per strategy, about a minute.
* long: 1500 fresh draws per strategy, also in a v1 Session and under XLA (one command):

      TFXENT_REQUIRE_OP=1 python -m pytest tests/parity/test_fuzz.py -m long

  HYPOTHESIS_PROFILE=long gives the default tests the long profile too. A failure prints
  a `@reproduce_failure` blob. Known differences are those of tfxent/parity/differences.py,
  which the runner accepts: the fuzz records them as events (`--hypothesis-show-statistics`)
  and keeps exploring, and tests/parity/test_differences.py pins each on its minimal
  example. Bugs the fuzz found and that are fixed are in FIXED_ISSUES, kept at parity by
  test_fixed_issue_stays_fixed.

The AddressSanitizer run (`test_fast_profile_under_address_sanitizer`, long) repeats the fast
profile in a child process with TFXENT_SANITIZE=address and the ASan runtime preloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest_helpers import (
    REPO,
    child_env,
    long_only_when_selected,  # noqa: F401 - autouse fixture
)
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfxent import _backend, _build
from tfxent.parity import crashes, runner
from tfxent.parity.cases import Case

BF16 = tf.bfloat16.as_numpy_dtype
FLOAT_DTYPES = (np.float16, BF16, np.float32, np.float64)
WRONG_LOGITS_DTYPES = (np.int32, np.int64, np.uint8, np.complex64, np.bool_)
DENSE_LABEL_DTYPES = (np.float16, BF16, np.float32, np.float64, np.int32, np.int64, np.bool_)
SPARSE_LABEL_DTYPES = (np.int32, np.int64)
WRONG_SPARSE_LABEL_DTYPES = (np.float32, np.uint8, np.int16, np.int8)
DENSE_APIS = ("nn.dense", "v1.dense_v2", "v1.dense")
SPARSE_APIS = ("nn.sparse", "v1.sparse")
SMALL_DIMS = (0, 1, 1, 2, 2, 3, 3, 4, 5, 7)
# Class counts around vector widths and the kernels' 32768-class chunk.
CLASS_COUNTS = (0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 1000)
LONG_CLASS_COUNTS = (32767, 32768, 32769, 65537, 70001)
MAX_ELEMENTS = 150_000

_COMMON = dict(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
    print_blob=True,
)
settings.register_profile(
    "tfxent-fuzz-fast", max_examples=120, derandomize=True, database=None, **_COMMON
)
settings.register_profile("tfxent-fuzz-long", max_examples=1500, **_COMMON)
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
FAST_SETTINGS = settings.get_profile("tfxent-fuzz-long" if LONG else "tfxent-fuzz-fast")
LONG_SETTINGS = settings.get_profile("tfxent-fuzz-long")
FAST_MODES = ("eager", "function")
LONG_MODES = ("eager", "function", "session", "xla")


@pytest.fixture(scope="module", autouse=True)
def _the_op_runs():
    """No fuzz test may pass on the composite fallback."""
    assert _backend.op_library() is not None
    assert _backend.choose(tf.zeros([1, 1])).backend == _backend.OP


# --- values --------------------------------------------------------------------------------


def _specials(dtype) -> list[float]:
    info = np.finfo(np.float32 if dtype == BF16 else dtype)
    if dtype == BF16:
        big, tiny, sub = 3.0e38, 1.2e-38, 9.2e-41
    else:
        big, tiny, sub = float(info.max), float(info.tiny), float(info.smallest_subnormal)
    return [np.nan, np.inf, -np.inf, big, -big, tiny, -tiny, sub, -sub, 0.0, -0.0, 1e4, -1e4]


@st.composite
def float_values(draw, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Finite noise at a drawn scale and offset, sometimes sprinkled with special values."""
    size = int(np.prod(shape, dtype=np.int64))
    specials = _specials(dtype)
    if 0 < size <= 24 and draw(st.booleans()):
        elements = st.one_of(
            st.sampled_from(specials),
            st.floats(-100, 100, allow_nan=False, width=32),
        )
        values = draw(hnp.arrays(np.float64, shape, elements=elements))
        return values.astype(dtype)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-3, 1.0, 4.0, 30.0, 1e4, 1e30]))
    offset = draw(st.sampled_from([0.0, 0.0, 1000.0, -1e5, 3e38]))
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.asarray(rng.standard_normal(shape) * scale + offset)
        fraction = draw(st.sampled_from([0.0, 0.0, 0.01, 0.2, 1.0]))
        if fraction and size:
            mask = rng.random(shape) < fraction
            values[mask] = rng.choice(specials, size=int(mask.sum()))
        return values.astype(dtype)


def _wrong_values(shape: tuple[int, ...], dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.integers(-3, 4, size=shape)
    if dtype == np.complex64:
        return (values + 1j * values).astype(dtype)
    return values.astype(dtype)


# --- shapes ----------------------------------------------------------------------------------


@st.composite
def logits_shapes(draw, min_rank: int = 0) -> tuple[int, ...]:
    rank = draw(st.integers(min_rank, 5))
    if rank == 0:
        return ()
    classes = draw(
        st.one_of(st.sampled_from(CLASS_COUNTS), st.sampled_from(LONG_CLASS_COUNTS))
        if draw(st.integers(0, 9)) == 0
        else st.sampled_from(CLASS_COUNTS)
    )
    outer = [draw(st.sampled_from(SMALL_DIMS)) for _ in range(rank - 1)]
    shape = (*outer, classes)
    assume(int(np.prod(shape, dtype=np.int64)) <= MAX_ELEMENTS)
    return shape


@st.composite
def dense_label_shapes(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The logits' shape, or one TF's kernel broadcasts ([C], [1, C], [N, 1], scalar, a
    flattenable [outer, C]), or one that does not fit."""
    kind = draw(st.sampled_from(["same"] * 6 + ["ones", "suffix", "scalar", "flat", "bad"]))
    if kind == "same" or not shape:
        return shape
    if kind == "ones":
        return tuple(1 if draw(st.booleans()) else d for d in shape)
    if kind == "suffix":
        return shape[draw(st.integers(1, len(shape))) :]
    if kind == "scalar":
        return ()
    if kind == "flat":
        return (int(np.prod(shape[:-1], dtype=np.int64)), shape[-1])
    index = draw(st.integers(0, len(shape) - 1))
    return tuple(d + draw(st.integers(1, 2)) if i == index else d for i, d in enumerate(shape))


# --- dense labels ------------------------------------------------------------------------------


@st.composite
def dense_labels(draw, shape: tuple[int, ...], axis: int) -> np.ndarray:
    dtype = draw(st.sampled_from(DENSE_LABEL_DTYPES))
    if draw(st.integers(0, 40)) == 0:
        return np.full(shape, "a", dtype=np.str_)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["soft", "one_hot", "uniform", "noise", "zeros"]))
    if kind == "noise" and np.issubdtype(dtype, np.floating) or dtype == BF16 and kind == "noise":
        return draw(float_values(shape, dtype))
    class_axis = axis if (shape and -1 <= axis < len(shape)) else -1
    with np.errstate(all="ignore"):
        if kind == "soft" and shape:
            raw = np.exp(rng.standard_normal(shape))
            values = raw / raw.sum(axis=class_axis, keepdims=True)
        elif kind == "one_hot" and shape and shape[class_axis] > 0:
            index = rng.integers(0, shape[class_axis], size=shape)
            values = (index == 0).astype(np.float64)
        elif kind == "uniform":
            values = rng.uniform(-1.0, 2.0, size=shape)
        else:
            values = np.zeros(shape)
    if np.issubdtype(dtype, np.integer):
        values = np.round(values * 2)
    return np.asarray(values).astype(dtype)


def _axis_choices(rank: int) -> list[int]:
    return [-1, *range(rank), -2, -(rank + 1), rank, rank + 1]


@st.composite
def dense_kwargs(draw, api: str, rank: int) -> dict:
    axis = draw(st.sampled_from(_axis_choices(rank)))
    if api == "nn.dense":
        options = [{}, {"axis": axis}, {"axis": None}]
    elif api == "v1.dense_v2":
        options = [{}, {"axis": axis}, {"dim": axis}, {"axis": axis, "dim": axis}]
    else:  # v1: dim defaults to -1, so an axis needs dim=None
        options = [{}, {"dim": axis}, {"axis": axis, "dim": None}, {"axis": axis}]
    return draw(st.sampled_from(options))


@st.composite
def dense_cases(draw) -> Case:
    api = draw(st.sampled_from(DENSE_APIS))
    shape = draw(logits_shapes())
    seed = draw(st.integers(0, 2**32 - 1))
    if draw(st.integers(0, 12)) == 0:
        dtype = draw(st.sampled_from(WRONG_LOGITS_DTYPES))
        logits = _wrong_values(shape, dtype, seed)
    else:
        dtype = draw(st.sampled_from(FLOAT_DTYPES))
        logits = draw(float_values(shape, dtype))
    kwargs = draw(dense_kwargs(api, len(shape)))
    axis = kwargs.get("axis", kwargs.get("dim", -1))
    axis = -1 if axis is None else axis
    label_shape = draw(dense_label_shapes(shape))
    assume(int(np.prod(label_shape, dtype=np.int64)) <= MAX_ELEMENTS)
    labels = draw(dense_labels(label_shape, axis))
    name = f"fuzz_{np.dtype(logits.dtype).name}{list(shape)}_{np.dtype(labels.dtype).name}"
    return Case(name + str(list(label_shape)), api, labels, logits, kwargs)


# --- sparse labels -----------------------------------------------------------------------------


def _extremes(dtype, classes: int) -> list[int]:
    info = np.iinfo(dtype)
    values = [classes, classes + 1, -1, -classes - 1, int(info.max), int(info.min), 2**31 - 1]
    if info.bits == 64:
        values += [2**31, 2**40, -(2**31) - 1]
    return [v for v in values if info.min <= v <= info.max]


@st.composite
def sparse_cases(draw) -> Case:
    api = draw(st.sampled_from(SPARSE_APIS))
    shape = draw(logits_shapes())
    seed = draw(st.integers(0, 2**32 - 1))
    if draw(st.integers(0, 12)) == 0:
        dtype = draw(st.sampled_from(WRONG_LOGITS_DTYPES))
        logits = _wrong_values(shape, dtype, seed)
    else:
        dtype = draw(st.sampled_from(FLOAT_DTYPES))
        logits = draw(float_values(shape, dtype))
    label_shape = shape[:-1]
    kind = draw(st.sampled_from(["same"] * 8 + ["extra", "fewer", "bad"]))
    if kind == "extra":
        label_shape = (*label_shape, 1)
    elif kind == "fewer" and label_shape:
        label_shape = label_shape[1:]
    elif kind == "bad" and label_shape:
        label_shape = (label_shape[0] + 1, *label_shape[1:])
    classes = shape[-1] if shape else 1
    rng = np.random.default_rng(seed + 1)
    if draw(st.integers(0, 12)) == 0:
        label_dtype = draw(st.sampled_from(WRONG_SPARSE_LABEL_DTYPES))
        labels = rng.integers(0, max(classes, 1), size=label_shape).astype(label_dtype)
    else:
        label_dtype = draw(st.sampled_from(SPARSE_LABEL_DTYPES))
        labels = rng.integers(0, max(classes, 1), size=label_shape).astype(label_dtype)
        size = labels.size
        if size and draw(st.integers(0, 3)) == 0:
            bad = draw(st.lists(st.sampled_from(_extremes(label_dtype, classes)), min_size=1))
            where = rng.integers(0, size, size=len(bad))
            labels.reshape(-1)[where] = np.array(bad, dtype=label_dtype)
    name = f"fuzz_{np.dtype(logits.dtype).name}{list(shape)}_{np.dtype(labels.dtype).name}"
    return Case(name + str(list(label_shape)), api, labels, logits)


# --- bugs the fuzz found ----------------------------------------------------------------------


F32 = np.float32
_RNG = np.random.default_rng(1)
F64_LABELS = _RNG.random(33)  # an f64 label row against f32 logits
F64_LABELS /= F64_LABELS.sum()
F32_SMALL_LOGITS = (_RNG.standard_normal(33) * 1e-3).astype(F32)

# Differences the fuzz found in tfxent and that are fixed, each on its minimal example, with
# where the fix lives: test_fixed_issue_stays_fixed keeps them at parity.
FIXED_ISSUES = (
    pytest.param(
        Case("half_0x0", "nn.dense", np.zeros((0, 0), np.float16), np.zeros((0, 0), np.float16)),
        "session",
        False,
        id="session-half-final-reshape (_xent.py: f16/bf16 cast to f32 as TF, so Grappler "
        "treats both graphs alike)",
    ),
    pytest.param(
        Case(
            "max_labels",
            "nn.dense",
            np.array([[1.7e308, -1.7e308, -1e4]]),
            np.array([[1e-4, -1e-4, 2e-4]]),
        ),
        "eager",
        False,
        id="overflowing-label-terms (xent_exact.h: the loss summed term by term, as TF's kernel)",
    ),
    pytest.param(
        Case(
            "max_labels",
            "nn.dense",
            np.array([[1.7e308, -1.7e308, -1e4]]),
            np.array([[1e-4, -1e-4, 2e-4]]),
        ),
        "eager",
        True,
        id="overflowing-label-terms-determinism (xent_exact.h: TF's Mul and Sum, term by term)",
    ),
    pytest.param(
        Case("string_labels_int_logits", "nn.dense", np.array([["a", "b"]]), np.array([[1, 2]])),
        "eager",
        False,
        id="string-labels-integer-logits-message (_xent.py: cast string labels as TF does)",
    ),
    pytest.param(
        Case("huge_labels", "nn.dense", np.array([[2e38, 2e38]], F32), np.array([[0.0, 0.0]], F32)),
        "eager",
        False,
        id="dense-loss-overflow-with-huge-labels (xent_rows.h: DenseLossByTerms)",
    ),
    pytest.param(
        Case(
            "one_class_negative_label",
            "nn.dense",
            np.array([[-0.5], [0.5]], F32),
            np.array([[2.0], [3.0]], F32),
        ),
        "eager",
        True,
        id="determinism-signed-zero-loss (xent_kernels.cc: DenseRowLoss)",
    ),
    pytest.param(
        Case("one_class", "nn.dense", np.array([[1.0], [0.0], [-0.0]], F32), np.ones((3, 1), F32)),
        "xla",
        False,
        id="xla-signed-zero-loss (_composite.py: _loss_terms)",
    ),
    pytest.param(
        Case(
            "int_logits_float_labels",
            "nn.sparse",
            np.zeros((2,), F32),
            np.ones((2, 3), np.int64),
            gradients=False,
        ),
        "eager",
        False,
        id="sparse-both-dtypes-wrong-message (runner.py: TF names either attr)",
    ),
    pytest.param(
        Case(
            "empty_rank5_zero_classes",
            "nn.sparse",
            np.zeros((0, 4, 1, 2), np.int64),
            np.ones((0, 4, 1, 2, 0)),
        ),
        "xla",
        False,
        id="xla-sparse-empty-batch-zero-classes-message (_xent.py: _flattened_rows)",
    ),
    pytest.param(
        Case("inf_label", "nn.dense", np.array([[0.5, np.inf, 0.5]], F32), np.ones((1, 3), F32)),
        "eager",
        False,
        id="hvp-nan-at-infinite-labels (_ops.py: the zero loss-gradient term)",
    ),
    pytest.param(
        Case("inf_label", "nn.dense", np.array([[0.5, np.inf, 0.5]], F32), np.ones((1, 3), F32)),
        "function",
        True,
        id="determinism-hvp-nan-row-at-infinite-labels (_ops.py: LogSoftmax gradient order)",
    ),
    pytest.param(
        Case(
            "empty_rank3",
            "nn.dense",
            np.zeros((0, 0, 0), np.float16),
            np.zeros((0, 0, 0), np.float16),
        ),
        "function",
        False,
        id="graph-error-without-stack-traces (runner.py: message_fragment)",
    ),
    pytest.param(
        Case("f64_labels_f32_logits", "nn.dense", F64_LABELS, F32_SMALL_LOGITS),
        "eager",
        True,
        id="wider-labels-compared-at-the-logits-precision (tolerance.py: coarser)",
    ),
    pytest.param(
        Case(
            "huge_mixed_sign_labels",
            "nn.dense",
            np.array([[1e4, -1e4, 0.5, 6.5e4, -6.5e4], [0.2, 0.3, 0.5, 0, 0]], np.float16),
            np.random.default_rng(3).standard_normal((2, 5)).astype(F32),
        ),
        "eager",
        True,
        id="cancelling-labels-compared-at-their-terms-size (runner.py: dense_term_scales)",
    ),
    pytest.param(
        Case("rank1_bf16", "nn.dense", np.array([0.0, 1.0], BF16), np.array([1.0, 2.0], BF16)),
        "eager",
        False,
        id="runner-rank0-bfloat16-results (runner.py: _as_numpy)",
    ),
)

# --- the property ------------------------------------------------------------------------------


def _has_strings(case: Case) -> bool:
    return any(np.asarray(v).dtype.kind in "US" for v in (case.labels, case.logits))


def _check(case: Case, deterministic: bool, modes: tuple[str, ...]) -> None:
    for mode in modes:
        if mode == "xla" and _has_strings(case):
            # TF aborts the process (tensor.cc "Check failed: DataTypeCanUseMemcpy") on the
            # second jit_compile call with a string argument, tf.nn as much as tfxent: hashing
            # the XLA cache key reads the string tensor's bytes. Nothing tfxent can change.
            event("xla skipped: string input")
            continue
        if crashes.tf_would_crash(case, mode, deterministic) and not crashes.substitute_known(case):
            # TF 2.16.2 segfaults on labels that broadcast the classes to 0; with no other
            # version's answer in-process, this draw cannot be compared there.
            event("skipped: the installed TF crashes on this input")
            continue
        result = runner.compare(case, mode, deterministic=deterministic)
        if result.known is not None:
            event(f"known difference: {result.known.key}")
        if result.ok:
            continue
        raise AssertionError(
            f"{case.id} kwargs={case.kwargs} mode={mode} deterministic={deterministic}: "
            f"{result.problems}\nlabels={case.labels!r}\nlogits={case.logits!r}"
        )


@FAST_SETTINGS
@given(case=dense_cases(), deterministic=st.booleans())
def test_fuzz_dense_matches_tf(case, deterministic):
    _check(case, deterministic, LONG_MODES if LONG else FAST_MODES)


@FAST_SETTINGS
@given(case=sparse_cases(), deterministic=st.booleans())
def test_fuzz_sparse_matches_tf(case, deterministic):
    _check(case, deterministic, LONG_MODES if LONG else FAST_MODES)


@pytest.mark.long
@LONG_SETTINGS
@given(case=dense_cases(), deterministic=st.booleans())
def test_fuzz_dense_matches_tf_long(case, deterministic):
    _check(case, deterministic, LONG_MODES)


@pytest.mark.long
@LONG_SETTINGS
@given(case=sparse_cases(), deterministic=st.booleans())
def test_fuzz_sparse_matches_tf_long(case, deterministic):
    _check(case, deterministic, LONG_MODES)


@pytest.mark.parametrize(("case", "mode", "deterministic"), FIXED_ISSUES)
def test_fixed_issue_stays_fixed(case, mode, deterministic):
    result = runner.compare(case, mode, deterministic=deterministic)
    assert result.ok, result.problems


def test_loaded_library_matches_the_sanitize_switch():
    """Under TFXENT_SANITIZE=address the fuzz runs on the ASan build, else on the normal one."""
    path = Path(_build.loaded_path())
    manifest = json.loads((path.parent / "manifest.json").read_text())
    wanted = _build.sanitizer()
    assert manifest.get("sanitize", "") == wanted
    assert (b"__asan_init" in path.read_bytes()) == (wanted == "address")


_SANITIZED_TESTS = (
    "test_loaded_library_matches_the_sanitize_switch",
    "test_fuzz_dense_matches_tf",
    "test_fuzz_sparse_matches_tf",
)


@pytest.mark.long
def test_fast_profile_under_address_sanitizer():
    """The fast profile again, on an AddressSanitizer build of the op: any out-of-bounds read
    or write, use-after-free or double free in the kernels aborts the child with a report."""
    preload = _build.sanitizer_preload()
    assert preload, "no AddressSanitizer runtime found for the C++ compiler"
    env = child_env(
        TFXENT_SANITIZE="address",
        LD_PRELOAD=preload,
        ASAN_OPTIONS="detect_leaks=0",
        HYPOTHESIS_PROFILE=None,
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + [f"tests/parity/test_fuzz.py::{name}" for name in _SANITIZED_TESTS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "AddressSanitizer" not in output, output[-6000:]
    assert done.returncode == 0, output[-6000:]
    assert f"{len(_SANITIZED_TESTS)} passed" in done.stdout, output[-3000:]
