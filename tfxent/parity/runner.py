"""Run one parity case on tfxent and on the installed TF, in one execution mode, and compare.

What is compared (docs/tf_behaviour.md#checklist): the loss's value, dtype and static/dynamic
shape; gradients with
respect to logits and labels (or their absence); second order (Hessian-vector products with
respect to logits and labels); and, when a call fails, the exception class and TF's message
fragment. Modes: eager, `tf.function`, a v1 graph run in a Session with fully dynamic
placeholders, and `tf.function(jit_compile=True)`.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config

import tfxent
from tfxent.parity import crashes
from tfxent.parity.cases import APIS, Case, KnownDifference, _rng, known_difference
from tfxent.parity.tolerance import coarser, tolerance


def surfaces(api: str) -> tuple[object, object]:
    """(tfxent function, TF function) for a catalogue api key."""
    ours, theirs = tfxent, tf
    for part in APIS[api].split("."):
        ours, theirs = getattr(ours, part), getattr(theirs, part)
    return ours, theirs


@dataclass
class Outcome:
    """Everything observable about one call (and its gradients) on one side."""

    error: BaseException | None = None
    values: dict[str, np.ndarray | None] = field(default_factory=dict)
    dtypes: dict[str, str | None] = field(default_factory=dict)
    static_shape: str | None = None
    grad_error: BaseException | None = None
    op_types: frozenset[str] = frozenset()  # op types of the traced graphs (not eager)


def _is_float(value: object) -> bool:
    return (
        isinstance(value, np.ndarray | np.generic)
        and value.dtype.kind == "f"
        or (
            isinstance(value, np.ndarray | np.generic) and value.dtype == tf.bfloat16.as_numpy_dtype
        )
    )


def _weights(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return _rng(seed).uniform(0.5, 1.5, size=shape)


def _differentiate(fn, case: Case, labels, logits, loss_shape, order_two: bool):
    """Inside a tape context: first- and second-order gradients of a weighted loss sum."""
    watch_labels = _is_float(case.labels)
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(logits)
        if watch_labels:
            outer.watch(labels)
        with tf.GradientTape(persistent=True) as inner:
            inner.watch(logits)
            if watch_labels:
                inner.watch(labels)
            loss = fn(labels=labels, logits=logits, **case.kwargs)
            weights = tf.constant(_weights(loss_shape, 11), dtype=loss.dtype)
            target = tf.reduce_sum(loss * weights)
        grad_logits = inner.gradient(target, logits)
        grad_labels = inner.gradient(target, labels) if watch_labels else None
        if order_two and grad_logits is not None:
            v = tf.constant(_weights(tuple(logits.shape), 12), dtype=grad_logits.dtype)
            hvp_target = tf.reduce_sum(grad_logits * v)
    out = {"grad_logits": grad_logits, "grad_labels": grad_labels}
    if order_two and grad_logits is not None:
        out["hvp_logits"] = outer.gradient(hvp_target, logits)
        out["hvp_labels"] = outer.gradient(hvp_target, labels) if watch_labels else None
    return out


def _as_numpy(tensors: dict) -> tuple[dict, dict]:
    values, dtypes = {}, {}
    for key, t in tensors.items():
        # t.numpy(), not np.asarray(t): NumPy cannot take a rank-0 bfloat16 EagerTensor
        # through __array__ ("object __array__ method not producing an array").
        values[key] = None if t is None else np.asarray(t.numpy() if hasattr(t, "numpy") else t)
        dtypes[key] = None if t is None else tf.as_dtype(t.dtype).name
    return values, dtypes


def _second_order_supported(case: Case) -> bool:
    """Second order on small float cases only (it multiplies the work by ~4)."""
    size = np.size(case.logits) if isinstance(case.logits, np.ndarray) else 0
    return _is_float(case.logits) and 0 < size <= 4096


def _tensorize(value: object) -> object:
    return tf.constant(value) if isinstance(value, np.ndarray | np.generic) else value


def _op_types(function, *args) -> frozenset[str]:
    """Op types in a traced tf.function, including the functions it calls."""
    graph = function.get_concrete_function(*args).graph
    types = {op.type for op in graph.get_operations()}
    for sub in graph._functions.values():  # noqa: SLF001 - gradient and nested functions
        types |= {node.op for node in sub.definition.node_def}
    return frozenset(types)


def run_eager_or_function(fn, case: Case, mode: str) -> Outcome:
    outcome = Outcome()
    labels, logits = _tensorize(case.labels), _tensorize(case.logits)

    def forward(labels, logits):
        return fn(labels=labels, logits=logits, **case.kwargs)

    if mode != "eager":
        forward = tf.function(forward, jit_compile=(mode == "xla"), autograph=False)
    try:
        loss = forward(labels, logits)
    except Exception as err:  # noqa: BLE001 - the exception itself is what is compared
        outcome.error = err
        return outcome
    outcome.values, outcome.dtypes = _as_numpy({"loss": loss})
    outcome.static_shape = str(loss.shape)
    if mode != "eager":
        outcome.op_types = _op_types(forward, labels, logits)
    if not (case.gradients and _is_float(case.logits)):
        return outcome

    order_two = _second_order_supported(case)

    def grads(labels, logits):
        return _differentiate(fn, case, labels, logits, tuple(loss.shape), order_two)

    if mode != "eager":
        grads = tf.function(grads, jit_compile=(mode == "xla"), autograph=False)
    try:
        values, dtypes = _as_numpy(grads(labels, logits))
    except Exception as err:  # noqa: BLE001
        outcome.grad_error = err
        return outcome
    if mode != "eager":
        outcome.op_types |= _op_types(grads, labels, logits)
    outcome.values.update(values)
    outcome.dtypes.update(dtypes)
    return outcome


def _placeholder(value: object):
    """A fully dynamic placeholder (shapes unknown until run time) for array inputs."""
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        dims = [None] * array.ndim
        return tf.compat.v1.placeholder(tf.as_dtype(array.dtype), dims), array
    return value, None


def run_session(fn, case: Case) -> Outcome:
    outcome = Outcome()
    with tf.Graph().as_default() as graph:
        labels, labels_value = _placeholder(case.labels)
        logits, logits_value = _placeholder(case.logits)
        feeds = {t: v for t, v in ((labels, labels_value), (logits, logits_value)) if v is not None}
        try:
            loss = fn(labels=labels, logits=logits, **case.kwargs)
        except Exception as err:  # noqa: BLE001
            outcome.error = err
            return outcome
        outcome.static_shape = str(loss.shape)
        fetches = {"loss": loss}
        outcome.op_types = frozenset(op.type for op in graph.get_operations())
        grad_error = None
        if case.gradients and _is_float(case.logits):
            try:
                weights = tf.compat.v1.placeholder(loss.dtype, None)
                target = tf.reduce_sum(loss * weights)
                xs = [logits, labels] if _is_float(case.labels) else [logits]
                grads = tf.gradients(target, xs)
                fetches["grad_logits"] = grads[0]
                fetches["grad_labels"] = grads[1] if len(grads) > 1 else None
            except Exception as err:  # noqa: BLE001
                grad_error = err
        with tf.compat.v1.Session(graph=graph) as session:
            try:
                loss_value = session.run(loss, feeds)
            except Exception as err:  # noqa: BLE001
                outcome.error = err
                return outcome
            outcome.values["loss"] = np.asarray(loss_value)
            outcome.dtypes["loss"] = tf.as_dtype(loss.dtype).name
            if grad_error is not None:
                outcome.grad_error = grad_error
                return outcome
            if "grad_logits" in fetches:
                feeds[weights] = _weights(np.shape(loss_value), 11).astype(
                    tf.as_dtype(loss.dtype).as_numpy_dtype
                )
                # One gradient per run: when both fail, a joint run would report whichever
                # failing op the parallel executor reached first.
                for key in ("grad_logits", "grad_labels"):
                    t = fetches[key]
                    try:
                        value = None if t is None else session.run(t, feeds)
                    except Exception as err:  # noqa: BLE001
                        outcome.grad_error = err
                        return outcome
                    outcome.values[key] = None if t is None else np.asarray(value)
                    outcome.dtypes[key] = None if t is None else tf.as_dtype(t.dtype).name
    return outcome


@contextlib.contextmanager
def determinism(enabled: bool):
    """Op determinism on or off for the duration, restoring the previous state."""
    before = config.is_op_determinism_enabled()
    (config.enable_op_determinism if enabled else config.disable_op_determinism)()
    try:
        yield
    finally:
        (config.enable_op_determinism if before else config.disable_op_determinism)()


def run(fn, case: Case, mode: str) -> Outcome:
    if mode == "session":
        return run_session(fn, case)
    return run_eager_or_function(fn, case, mode)


# Parts of error messages that name TF's own ops or nodes, which tfxent's messages name
# differently; the fragment that remains is what users match on (docs/tf_behaviour.md#errors).
_NOISE = (
    re.compile(r"\{\{function_node [^}]*\}\}\s*"),
    re.compile(r"\s*\[Op:[^\]]*\].*$", re.S),
    re.compile(r" for '\{\{node .*$", re.S),
    re.compile(r"\n\s*\[\[\{\{node.*$", re.S),
    re.compile(r"; NodeDef: .*$", re.S),
    re.compile(r"\n\t$"),
)


# Generated function names differ between two traces of the same function.
_FUNCTION_IDS = re.compile(r"__inference_[A-Za-z0-9_<>]+?_\d+(\[[^\]]*\])?")


def normalized(text: str) -> str:
    return _FUNCTION_IDS.sub("__inference_<fn>", text)


def message_fragment(error: BaseException) -> str:
    """The user-facing part of a TF error message, without op/node names and call sites.

    Graph-mode errors wrap the message in "Graph execution error:", a "Detected at node"
    trace of indented `File` lines (or "<stack traces unavailable>" for a node that Grappler
    rewrote) and a "Node:" line; the message is the first line that is none of those.
    """
    text = str(error)
    if text.startswith("Graph execution error"):
        skipped = (
            "Graph execution error",
            "Detected at node",
            "<stack traces unavailable>",
            "Node: ",
            " ",
            "\t",
        )
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.strip() and not line.startswith(skipped):
                text = "\n".join(lines[i:])
                break
    for pattern in _NOISE:
        text = pattern.sub("", text)
    return normalized(text.strip().split("\n")[0])


@dataclass
class Comparison:
    case: Case
    mode: str
    deterministic: bool
    problems: list[str]
    known: KnownDifference | None = None
    raised: bool = False  # tfxent's call raised (as TF's did, when there are no problems)

    @property
    def ok(self) -> bool:
        """Parity, or exactly the documented difference (which must still occur)."""
        if self.known is None:
            return not self.problems
        return bool(self.problems) and all(self.known.problem in p for p in self.problems)

    @property
    def verdict(self) -> str:
        if self.known is None:
            return "parity" if self.ok else "DIFFERENT"
        if self.ok:
            return f"known difference ({self.known.key})"
        if not self.problems:
            return f"STALE known difference ({self.known.key}): now at parity"
        return "DIFFERENT"


# An op's dtype check: which attr it names when several inputs have disallowed dtypes
# varies between TF processes (its attr validation walks a hash map; measured on 2.21 with
# sparse float labels and int logits), so any such message stands for any other.
_ATTR_NOT_ALLOWED = re.compile(r"Value for attr '\w+' of \w+ is not in the list of allowed values")


# "No OpKernel was registered ... with these attrs: [...]" lists a node's attrs in hash-map
# order too, which differs between processes (TF 2.12, GatherV2 with int16 indices).
_ATTR_LIST = re.compile(r"(with these attrs: \[)([^\]]*)(\])")


def _sorted_attrs(text: str) -> str:
    return _ATTR_LIST.sub(lambda m: m[1] + ", ".join(sorted(m[2].split(", "))) + m[3], text)


def _same_message(fragment: str, ours: str) -> bool:
    if _ATTR_NOT_ALLOWED.match(fragment):
        return _ATTR_NOT_ALLOWED.search(ours) is not None
    return _sorted_attrs(fragment) in _sorted_attrs(ours)


def _compare_error(
    label: str, ours: BaseException | None, theirs: BaseException | None
) -> list[str]:
    if ours is None and theirs is None:
        return []
    if ours is None or theirs is None:
        return [f"{label}: tfxent raised {ours!r} but TF raised {theirs!r}"]
    problems = []
    if type(ours) is not type(theirs):
        problems.append(
            f"{label}: tfxent raised {type(ours).__name__}, TF raised {type(theirs).__name__}"
            f" ({message_fragment(theirs)[:200]})"
        )
    fragment = message_fragment(theirs)
    if fragment and not _same_message(fragment, normalized(str(ours))):
        problems.append(f"{label}: message {fragment[:300]!r} not in tfxent's {str(ours)[:300]!r}")
    return problems


def _presence(value: object) -> str:
    return "None" if value is None else "a value"


def dense_term_scales(case: Case) -> dict[str, np.ndarray]:
    """The size of the terms the dense results sum, where labels of mixed sign and large
    size cancel: both sides' rounding is relative to the terms, not to the small sum.

    "loss": per row, Σ_j |y_j·(lse − x_j)|; "grad_logits": per row, Σ_j |y_j| (determinism
    mode's softmax·Σy), over the logits' shape. inf where a term is not finite; nothing where
    the shapes do not line up as NumPy sees them (the comparison then uses `tol` alone)."""
    axis = crashes.class_axis(case)
    try:
        x = np.moveaxis(np.asarray(case.logits, np.float64), axis, -1)
        y = np.moveaxis(np.asarray(case.labels, np.float64), axis, -1)
        x, y = np.broadcast_arrays(x, y)
    except (TypeError, ValueError, IndexError):  # NumPy's AxisError is both of the last two
        return {}
    with np.errstate(all="ignore"):
        top = np.max(x, axis=-1, keepdims=True) if x.shape[-1] else np.zeros_like(x[..., :1])
        lse = top + np.log(np.sum(np.exp(x - top), axis=-1, keepdims=True))
        loss = np.sum(np.abs(y * (lse - x)), axis=-1)
        mass = np.broadcast_to(np.sum(np.abs(y), axis=-1, keepdims=True), x.shape)
    finite = {"loss": loss, "grad_logits": np.moveaxis(mass, -1, axis)}
    return {key: np.where(np.isfinite(v), v, np.inf) for key, v in finite.items()}


def _compare_arrays(
    key: str, ours, theirs, dtype: str | None, sparse: bool, scale: np.ndarray | None = None
) -> list[str]:
    if ours is None or theirs is None:
        if ours is None and theirs is None:
            return []
        return [f"{key}: tfxent gave {_presence(ours)}, TF gave {_presence(theirs)}"]
    if ours.shape != theirs.shape:
        return [f"{key}: shape {ours.shape} vs TF {theirs.shape}"]
    order = 2 if key.startswith("hvp") else 1
    tol = tolerance(tf.as_dtype(dtype), sparse=sparse, order=order)
    a, b = ours.astype(np.float64), theirs.astype(np.float64)
    atol = tol if scale is None or scale.shape != a.shape else tol * np.maximum(1.0, scale)
    # np.isclose, written out: older NumPy cannot take a per-element atol beside inf or NaN.
    with np.errstate(invalid="ignore"):
        near = np.isfinite(a) & np.isfinite(b) & (np.abs(a - b) <= atol + tol * np.abs(b))
    close = near | (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
    if not np.all(close):
        worst = np.nanmax(np.abs(a - b)) if a.size else 0.0
        return [f"{key}: values differ (max abs diff {worst:.3g}, tol {tol:.3g})"]
    if key == "loss":
        zeros = (a == 0) & (b == 0)
        if np.any(np.signbit(a[zeros]) != np.signbit(b[zeros])):
            return [f"{key}: signed zeros differ ({a[zeros]} vs {b[zeros]})"]
    return []


TF_XENT_OPS = frozenset({"SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"})
CUSTOM_OPS = frozenset({"TfxentSoftmaxXent", "TfxentSoftmaxXentGrad", "TfxentSparseSoftmaxXent"})


def expects_custom_op(case: Case, mode: str, deterministic: bool) -> bool:
    """Whether tfxent must have run its custom op here: everywhere but XLA, and but the
    determinism-mode logits broadcast over classes that the core hands to the composite."""
    composite = mode == "xla" or (deterministic and case.name == "logits_Nx1_labels_NxC")
    return not composite


def _backend_problems(case: Case, mode: str, deterministic: bool, ours: Outcome) -> list[str]:
    """A silent fallback must not pass as parity: check the ops in tfxent's traced graphs."""
    if mode == "eager" or ours.error is not None:
        return []
    problems = []
    if ours.op_types & TF_XENT_OPS:
        problems.append(
            f"tfxent's graph contains TF's xent ops {sorted(ours.op_types & TF_XENT_OPS)}"
        )
    used = ours.op_types & CUSTOM_OPS
    if expects_custom_op(case, mode, deterministic) and not used:
        problems.append("tfxent's graph does not contain its custom op (silent fallback?)")
    if not expects_custom_op(case, mode, deterministic) and used:
        problems.append(f"tfxent's graph contains {sorted(used)} where the composite path belongs")
    return problems


def _compare_where_tf_crashes(case: Case, mode: str, ours_fn) -> Comparison:
    with determinism(False):
        ours = run(ours_fn, case, mode)
    if not crashes.substitute_known(case):
        problems = ["not comparable: the installed TF crashes on this input and the other "
                    "versions' answer is not tabulated (tfxent.parity.crashes)"]  # fmt: skip
    else:
        problems = crashes.outcome_problems(ours, crashes.expected_where_tf_crashes(case, mode))
    problems += _backend_problems(case, mode, False, ours)
    return Comparison(case, mode, False, problems, None, ours.error is not None)


def compare(case: Case, mode: str, deterministic: bool = False) -> Comparison:
    """Run the case on both sides and list every difference (empty list: parity).

    Where the installed TF would crash, tfxent is compared with what every other TF version
    answers instead (tfxent.parity.crashes).
    """
    ours_fn, theirs_fn = surfaces(case.api)
    if crashes.tf_would_crash(case, mode, deterministic):
        return _compare_where_tf_crashes(case, mode, ours_fn)
    with determinism(deterministic):
        ours = run(ours_fn, case, mode)
        theirs = run(theirs_fn, case, mode)
    problems = _compare_error("error", ours.error, theirs.error)
    problems += _backend_problems(case, mode, deterministic, ours)
    if not problems and ours.error is None:
        if ours.static_shape != theirs.static_shape:
            problems.append(f"static shape {ours.static_shape} vs TF {theirs.static_shape}")
        problems += _compare_error("gradient error", ours.grad_error, theirs.grad_error)
        keys = sorted(set(ours.values) | set(theirs.values))
        scales = {} if case.sparse or case.labels is None else dense_term_scales(case)
        for key in keys:
            if ours.dtypes.get(key) != theirs.dtypes.get(key):
                problems.append(
                    f"{key}: dtype {ours.dtypes.get(key)} vs TF {theirs.dtypes.get(key)}"
                )
                continue
            problems += _compare_arrays(
                key,
                ours.values.get(key),
                theirs.values.get(key),
                coarser(theirs.dtypes.get(key), theirs.dtypes.get("loss")),
                case.sparse,
                scales.get(key),
            )
    known = known_difference(case, mode, deterministic)
    return Comparison(case, mode, deterministic, problems, known, ours.error is not None)
