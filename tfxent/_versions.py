"""Everything that differs between TensorFlow versions, in one table
(docs/tf_behaviour.md#version-differences).

tfxent reproduces the installed TF, so where TF versions differ tfxent follows the installed
version; the one row it does not follow (the 2.16 zero-class segfault) is an intentional
difference, described with the others in tfxent/parity/differences.py. Code and tests ask
this module instead of comparing version strings themselves:

    >>> from tfxent import _versions
    >>> _versions.has("eager_error_name_suffix", tf_version="2.12.1")
    False
    >>> _versions.value("graph_tensor_type_name", tf_version="2.21.0")
    'SymbolicTensor'

Each row says which TF (or NumPy) versions have the behaviour, what the behaviour is, what
tfxent does about it and which test pins it; compat_matrix.md lists the rows verbatim.
Run as doctests by tests/docs/test_doctests.py.
"""

from __future__ import annotations

import importlib
import re
import types
from dataclasses import dataclass

__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "current",
    "dense_zero_classes",
    "has",
    "module",
    "parse",
    "value",
]

Version = tuple[int, int, int]


def parse(version: str) -> Version:
    """`"2.16.2"` → (2, 16, 2); nightlies (`"2.22.0-dev20260905"`) count as their release."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if not match:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part or 0) for part in match.groups())  # type: ignore[return-value]


_CLAUSE = re.compile(r"\s*(<=|>=|==|<|>)\s*([0-9][0-9.]*)\s*$")


def _matches(spec: str | None, version: Version) -> bool:
    """Whether `version` satisfies a spec such as `">=2.13"`, `"==2.16.2"` or `">=2.16,<2.17"`.

    `==2.16` means every 2.16.x; the other operators compare (major, minor, patch) tuples.
    """
    if spec is None:
        return True
    for clause in spec.split(","):
        match = _CLAUSE.match(clause)
        if not match:
            raise ValueError(f"bad version clause {clause!r} in {spec!r}")
        op, text = match.groups()
        bound = parse(text)
        if op == "==":
            width = text.count(".") + 1
            ok = version[:width] == bound[:width]
        else:
            ok = {
                "<": version < bound,
                "<=": version <= bound,
                ">": version > bound,
                ">=": version >= bound,
            }[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Behaviour:
    """One difference between TF versions.

    `tf` / `numpy` are version specs for where the behaviour is present; `present` and
    `absent` are what `value()` returns inside and outside them.
    """

    key: str
    summary: str
    tf: str | None = None
    numpy: str | None = None
    present: object = True
    absent: object = False
    tf_does: str = ""
    tfxent_does: str = ""
    pinned_by: str = ""

    def applies(self, tf_version: Version, numpy_version: Version) -> bool:
        return _matches(self.tf, tf_version) and _matches(self.numpy, numpy_version)

    @property
    def versions(self) -> str:
        """Human-readable scope, for compat_matrix.md."""
        parts = []
        if self.tf:
            parts.append("TF " + self.tf.replace(",", ", "))
        if self.numpy:
            parts.append("NumPy " + self.numpy.replace(",", ", "))
        return "; ".join(parts) or "all"


BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour(
        key="eager_error_name_suffix",
        summary="eager kernel errors end in ` name: ` after `[Op:<Op>]`",
        tf=">=2.13",
        tf_does="2.13+ appends ` name: ` to eager op errors; 2.12 does not (a general eager "
        "runtime change, docs/tf_behaviour.md#errors, docs/tf_behaviour.md#version-matrix).",
        tfxent_does="follows: its eager errors come from the same runtime, so they carry the "
        "suffix exactly where TF's do; the parity runner matches the message fragment before it.",
        pinned_by="tests/core/test_versions.py::test_eager_error_suffix_follows_installed_tf",
    ),
    Behaviour(
        key="kernel_rounding_2_16_2",
        summary="native CPU kernel rounding differs in the last bits",
        tf="==2.16",
        present=4.0,
        absent=1.0,
        tf_does="2.16.2's xent kernels round differently: the deterministic log_softmax path "
        "is only 45% bit-identical to the kernel (max 2 ulp, identical elsewhere) and sparse "
        "vs dense one-hot differs by up to 63 ulp (≤1 elsewhere), docs/tf_behaviour.md#numerics, "
        "docs/tf_behaviour.md#version-matrix.",
        tfxent_does="follows within tolerance: value() is the factor the parity tolerance is "
        "widened by on this version (tfxent/parity/tolerance.py).",
        pinned_by="tests/core/test_versions.py::test_tolerance_widens_only_for_2_16",
    ),
    Behaviour(
        key="dense_kernel_row_loop",
        summary="the dense CPU kernel is a plain loop over each row, not Eigen expressions",
        tf="==2.16",
        tf_does="2.16's SoftmaxCrossEntropyWithLogits CPU kernel takes a running max, adds "
        "exp(x − max) and then y·(log s − z) one element after the other with the C "
        "library's exp and log, and writes exp(z)/s − y; every other version evaluates Eigen "
        "expressions (packet exp, four-accumulator tree sums). Its sums and exps differ from "
        "the other versions' by a few ulp (docs/exactness.md; measured by disassembling "
        "2.16.2's kernel).",
        tfxent_does="follows bit for bit: tfxent/_build_flags.py compiles the op for this "
        "version with XENT_DENSE_ROW_LOOP, which selects the same loop (tfxent/cc/xent_exact.h).",
        pinned_by="tests/build/test_build_cache.py::test_kernel_variants_follow_the_tf_version",
    ),
    Behaviour(
        key="dense_zero_classes_segfault",
        summary="dense logits with 0 classes crash the process (SIGSEGV)",
        tf="==2.16",
        tf_does="2.16.2's native dense kernel segfaults on a class dimension of 0 (`[N,0]`, "
        "`[1,0]`, rank-1 `[0]`, and `[0,0]` too; eager, tf.function, Session, raw op). The XLA "
        "and determinism paths do not crash; every other version returns zeros (a Reshape "
        "error for `[0,0]` in eager/Session), docs/tf_behaviour.md#version-matrix. Measured on "
        "2.16.2; "
        "2.16.0/2.16.1 are treated alike so that the parity check never crashes.",
        tfxent_does="does not follow: the intentional difference `tf216-dense-zero-classes` "
        "(tfxent/parity/differences.py).",
        pinned_by="tests/core/test_versions.py::test_zero_class_substitute_matches_tf",
    ),
    Behaviour(
        key="xla_rounding_pre_2_19",
        summary="XLA (`jit_compile`) rounds differently from the native kernel",
        tf="<2.19",
        tf_does="XLA dense loss `0.40760604` (≤2.18) vs `0.40760595` (2.19+, equal to the "
        "native kernel); XLA sparse bf16 `0.408203` (2.16-2.17) vs `0.40625` "
        "(docs/tf_behaviour.md#xla, docs/tf_behaviour.md#version-matrix).",
        tfxent_does="follows: under XLA tfxent lowers to TF's own XLA ops, so it rounds like "
        "the installed TF's XLA within the parity tolerance.",
        pinned_by="tests/parity/test_parity_dense.py::"
        "test_dense_matches_tf[nn.dense:f32_soft-xla-kernel]",
    ),
    Behaviour(
        key="autograph_bool_message",
        summary="wording of `OperatorNotAllowedInGraphError` for a tensor `axis`",
        tf="<2.14",
        present="pre-2.14 wording",
        absent="2.14+ wording",
        tf_does="generic autograph message text changed in 2.14 "
        "(docs/tf_behaviour.md#version-matrix); both begin "
        "`Using a symbolic \\`tf.Tensor\\` as a Python \\`bool\\``.",
        tfxent_does="follows: the error is raised by TF's own tensor `__bool__`.",
        pinned_by="tests/core/test_versions.py::test_tensor_axis_errors_follow_installed_tf",
    ),
    Behaviour(
        key="graph_tensor_type_name",
        summary="legacy-graph tensor `axis` TypeError names `Tensor` / `SymbolicTensor`",
        tf="<2.14",
        present="Tensor",
        absent="SymbolicTensor",
        tf_does="`… not Tensor` on 2.12-2.13, `… not SymbolicTensor` on 2.14+ (graph tensors "
        "got their own class, docs/tf_behaviour.md#version-matrix).",
        tfxent_does="follows: the TypeError comes from TF's own tensor class.",
        pinned_by="tests/core/test_versions.py::test_tensor_axis_errors_follow_installed_tf",
    ),
    Behaviour(
        key="graph_tensor_axis_indexes",
        summary="a legacy-graph constant tensor `axis` is accepted",
        tf=">=2.22",
        tf_does="2.22 (nightly) graph tensors support `__index__`, so TF's `del shape[axis]` "
        "and `range(axis)` take a constant tensor `axis` and the call succeeds; before, they "
        "raised the TypeError of `graph_tensor_type_name`.",
        tfxent_does="follows: the same Python statements run on TF's own tensor class.",
        pinned_by="tests/core/test_versions.py::test_tensor_axis_errors_follow_installed_tf",
    ),
    Behaviour(
        key="eager_record_module",
        summary="tape-recording helpers (`stop_recording`, `should_record_backprop`) module",
        tf=">=2.13",
        present="tensorflow.python.eager.record",
        absent="tensorflow.python.eager.tape",
        tf_does="2.13 moved the helpers from `tensorflow.python.eager.tape` into a new "
        "`tensorflow.python.eager.record`; 2.12 has only the former.",
        tfxent_does='follows: code that needs them imports `_versions.module("eager_record_'
        'module")`.',
        pinned_by="tests/core/test_versions.py::test_eager_record_module_has_the_helpers",
    ),
    Behaviour(
        key="gather_int16_indices",
        summary="determinism mode, sparse int16 labels: TF's GatherV2 has a CPU kernel for them",
        tf=">=2.13",
        tf_does="the determinism path gathers log_softmax with the labels as indices; 2.12 "
        "registers no CPU GatherV2 kernel for int16 indices (NotFoundError `Could not find "
        "device for node` eagerly, InvalidArgumentError `No OpKernel was registered` in "
        "graphs); 2.13+ computes the loss (measured on 2.12.1 and 2.13.1).",
        tfxent_does="follows: where the kernel is missing, the call takes TF's determinism "
        "formula (the composite path), whose GatherV2 fails exactly as TF's does.",
        pinned_by="tests/core/test_versions.py::test_int16_labels_follow_installed_tf",
    ),
    Behaviour(
        key="fingerprint_takes_proto",
        summary="`fingerprinting_utils.write_fingerprint` takes the serialized SavedModel too",
        tf="==2.13",
        tf_does="2.13's `write_fingerprint(export_dir, saved_model_serialized)`; 2.14+ take "
        "only `export_dir` and read saved_model.pb; 2.12 has no fingerprinting_utils.",
        tfxent_does="follows: `tfxent.saved_model` rewrites fingerprint.pb after adding its "
        "import hint with whichever signature the installed TF has.",
        pinned_by="tests/dropin/test_saved_model.py::test_add_import_hint_is_idempotent",
    ),
    Behaviour(
        key="numpy1_scalar_axis_fails",
        summary="a NumPy scalar axis (`np.int32(0)`) fails",
        numpy="<2",
        tf_does="with NumPy 1.x, `range(dim_index + 1, rank)` promotes `np.int32(0) + 1` by "
        "value and the Range op raises `Tensor conversion requested dtype int32 for Tensor "
        "with dtype int64`; NumPy 2 works (2.12-2.17 wheels pin NumPy 1 here, "
        "docs/tf_behaviour.md#version-matrix).",
        tfxent_does="follows: the axis goes through the same Python arithmetic and Range op.",
        pinned_by="tests/core/test_versions.py::test_numpy_scalar_axis_follows_numpy",
    ),
)

_BY_KEY = {b.key: b for b in BEHAVIOURS}


def _installed() -> tuple[Version, Version]:
    import numpy as np
    import tensorflow as tf

    return parse(tf.__version__), parse(np.__version__)


def _resolve(
    key: str, tf_version: str | Version | None, numpy_version: str | Version | None
) -> tuple[Behaviour, Version, Version]:
    try:
        behaviour = _BY_KEY[key]
    except KeyError:
        raise KeyError(
            f"no version-dependent behaviour {key!r}; known: {sorted(_BY_KEY)}"
        ) from None
    if tf_version is None or numpy_version is None:
        installed_tf, installed_np = _installed()
        tf_version = installed_tf if tf_version is None else tf_version
        numpy_version = installed_np if numpy_version is None else numpy_version
    if isinstance(tf_version, str):
        tf_version = parse(tf_version)
    if isinstance(numpy_version, str):
        numpy_version = parse(numpy_version)
    return behaviour, tf_version, numpy_version


def has(
    key: str, tf_version: str | Version | None = None, numpy_version: str | Version | None = None
) -> bool:
    """Whether the installed (or the given) TF/NumPy has behaviour `key`."""
    behaviour, tfv, npv = _resolve(key, tf_version, numpy_version)
    return behaviour.applies(tfv, npv)


def value(
    key: str, tf_version: str | Version | None = None, numpy_version: str | Version | None = None
) -> object:
    """`present` or `absent` of behaviour `key` for the installed (or the given) versions."""
    behaviour, tfv, npv = _resolve(key, tf_version, numpy_version)
    return behaviour.present if behaviour.applies(tfv, npv) else behaviour.absent


def module(key: str) -> types.ModuleType:
    """The module behaviour `key` names for the installed TF (e.g. "eager_record_module")."""
    return importlib.import_module(str(value(key)))


def current() -> dict[str, object]:
    """Every behaviour's value on the installed TF and NumPy, by key."""
    return {key: value(key) for key in _BY_KEY}


def class_size(shape: tuple[int, ...] | None, axis: object = -1) -> int | None:
    """The size of a dense call's class axis in `shape`, or None where TF fails before its
    kernel (a scalar, or an axis other than −1 outside [0, rank): its Range op rejects it)."""
    if shape is None or len(shape) == 0:
        return None
    if axis is None:
        axis = -1
    if not isinstance(axis, int) or isinstance(axis, bool):
        return None
    if not (axis == -1 or 0 <= axis < len(shape)):
        return None
    return shape[axis]


def dense_zero_classes(logits_shape: tuple[int, ...] | None, axis: object = -1) -> bool:
    """Whether a dense call reaches TF's native kernel with a class dimension of 0.

    That is the input 2.16 crashes on: a valid class axis of size 0, whatever the other
    dimensions (`[N,0]`, `[0]`, and also `[0,0]` and `[3,0,0]`, which other versions
    answer with a Reshape error after the kernel has run).
    """
    return class_size(logits_shape, axis) == 0
