"""Parity tolerances, per dtype, in one place.

tfxent and TF compute the same formula with different reduction orders and (for f16/bf16)
round the same f32 result, so values agree to a few units in the last place, not always
bitwise (docs/tf_behaviour.md#numerics: even TF's own kernels differ by 1-2 ulp between
versions, and by up to 63 ulp on 2.16.2). The factors below are multiples of the dtype's
machine epsilon (`tfxent._dtypes.EPSILON`):

* float32/float64 losses and first-order gradients: 64 eps absolute-and-relative. A row sum
  of C terms carries about log2(C) ulp of reduction-order error and exp contributes ~1 ulp;
  64 covers C up to 10^6 with margin while still catching any formula error (those are
  O(1) relative).
* float16/bfloat16 dense: both sides compute in f32 and round once, so results differ by at
  most one rounding step: 2 eps.
* bfloat16 sparse: the loss and first-order gradient are TF's bits, but TF's second order
  computes in bfloat16 arithmetic (docs/tf_behaviour.md#dtypes) while tfxent's computes in
  f32 and rounds once; TF's accumulated rounding is up to ~log2(C) bf16 ulp: 8 eps.
* second order goes through different primitive sequences (matmul vs reduce): x4.
* a result is only as precise as the arithmetic that made it: labels of a wider dtype than
  the logits get gradients computed in the logits' dtype and cast back
  (docs/tf_behaviour.md#dtypes), so they are compared at the coarser of the two dtypes
  (`coarser`).
* TF 2.16's kernels round differently from every other version
  (docs/tf_behaviour.md#version-matrix): the factor comes from the version table
  (`tfxent._versions`, "kernel_rounding_2_16_2"), 1 elsewhere.

Pass/fail uses these tolerances; `tfxent check` also measures how many results are
bit-identical and the largest ulp distance of the others (`ulp_distance`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfxent import _versions
from tfxent._dtypes import EPSILON

_ULPS = {tf.float16: 2.0, tf.bfloat16: 2.0, tf.float32: 64.0, tf.float64: 64.0}
_SPARSE_BF16_ULPS = 8.0
_SECOND_ORDER_FACTOR = 4.0
_INSTALLED_FACTOR = float(_versions.value("kernel_rounding_2_16_2"))


def coarser(a: tf.DType | None, b: tf.DType | None) -> tf.DType | None:
    """Of two float dtypes, the one with the larger epsilon (the other where one is not)."""
    known = [tf.as_dtype(d) for d in (a, b) if d is not None and tf.as_dtype(d) in EPSILON]
    if not known:
        return a
    return max(known, key=lambda d: EPSILON[d])


def tolerance(
    dtype: tf.DType, sparse: bool = False, order: int = 1, tf_version: str | None = None
) -> float:
    """Relative and absolute tolerance for comparing a tfxent result with TF's (the
    installed TF's, or `tf_version`'s)."""
    dtype = tf.as_dtype(dtype)
    version_factor = (
        _INSTALLED_FACTOR
        if tf_version is None
        else float(_versions.value("kernel_rounding_2_16_2", tf_version=tf_version))
    )
    ulps = _SPARSE_BF16_ULPS if (sparse and dtype == tf.bfloat16) else _ULPS.get(dtype, 64.0)
    factor = (_SECOND_ORDER_FACTOR if order > 1 else 1.0) * version_factor
    return EPSILON.get(dtype, EPSILON[tf.float32]) * ulps * factor


# Unsigned integer views of each float width, for counting representable values between two
# floats (bfloat16 has no NumPy bit view of its own: it is 16 bits like uint16).
_BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def _ordered(values: np.ndarray) -> np.ndarray:
    """The floats' bit patterns as integers that order like the floats (−0 and +0 equal)."""
    width = values.dtype.itemsize
    bits = np.ascontiguousarray(values).view(_BITS[width]).astype(np.uint64)
    sign = np.uint64(1) << np.uint64(8 * width - 1)
    magnitude = (bits & (sign - np.uint64(1))).astype(np.int64)
    return np.where(bits & sign, -magnitude, magnitude)


def ulp_distance(ours: np.ndarray, theirs: np.ndarray) -> int | None:
    """The largest distance, in representable values of their dtype, between two float arrays
    of one dtype and shape (0: equal everywhere; two NaNs count as equal); None where the
    arrays are not floats of one dtype and shape."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
        return None
    if ours.dtype.kind != "f" and ours.dtype != tf.bfloat16.as_numpy_dtype:
        return None
    if ours.size == 0:
        return 0
    both_nan = np.isnan(ours.astype(np.float64)) & np.isnan(theirs.astype(np.float64))
    distance = np.abs(_ordered(ours) - _ordered(theirs))
    return int(np.max(np.where(both_nan, 0, distance)))


def bit_identical(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Whether two float arrays have the same bits everywhere (NaNs match any NaN)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
        return False
    width = ours.dtype.itemsize
    same = np.ascontiguousarray(ours).view(_BITS[width]) == np.ascontiguousarray(theirs).view(
        _BITS[width]
    )
    both_nan = np.isnan(ours.astype(np.float64)) & np.isnan(theirs.astype(np.float64))
    return bool(np.all(same | both_nan))
