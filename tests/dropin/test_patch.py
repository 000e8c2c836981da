"""tfxent.patch / unpatch / patched: what is replaced, what is restored, and what runs.

Every place TF 2.21 and Keras 3 look the softmax cross-entropy functions up is checked by the
identity of the attribute, and every "runs on tfxent" claim by the op types of a traced graph.
"""

from __future__ import annotations

import inspect
import sys
import threading
import types
import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import tfxent  # noqa: E402
from tfxent import _ops  # noqa: E402
from tfxent.patch import is_patched, patch, patched, unpatch  # noqa: E402

patch_module = sys.modules["tfxent.patch"]

from tensorflow.python.ops import nn as ops_nn  # noqa: E402
from tensorflow.python.ops import nn_ops  # noqa: E402

NN, V1, TOP = tfxent.nn, tfxent.compat.v1.nn, tfxent  # the three surfaces
TF_XENT_OPS = {"SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"}
V2_DENSE = nn_ops.softmax_cross_entropy_with_logits_v2
V2_SPARSE = nn_ops.sparse_softmax_cross_entropy_with_logits_v2
V1_DENSE = nn_ops.softmax_cross_entropy_with_logits
V1_DENSE_V2 = nn_ops.softmax_cross_entropy_with_logits_v2_helper
V1_SPARSE = nn_ops.sparse_softmax_cross_entropy_with_logits
TF_FUNCTIONS = (V2_DENSE, V2_SPARSE, V1_DENSE, V1_DENSE_V2, V1_SPARSE)
TFXENT_FUNCTIONS = (
    tfxent.nn.softmax_cross_entropy_with_logits,
    tfxent.nn.sparse_softmax_cross_entropy_with_logits,
    tfxent.compat.v1.nn.softmax_cross_entropy_with_logits,
    tfxent.compat.v1.nn.softmax_cross_entropy_with_logits_v2,
    tfxent.compat.v1.nn.sparse_softmax_cross_entropy_with_logits,
    tfxent.softmax_cross_entropy_with_logits,
    tfxent.softmax_cross_entropy_with_logits_v2,
    tfxent.sparse_softmax_cross_entropy_with_logits,
)

LABELS = np.array([[0.1, 0.6, 0.3], [1.0, 0.0, 0.0]], np.float32)
LOGITS = np.array([[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]], np.float32)
CLASSES = np.array([1, 2], np.int32)


def _tf_references() -> dict[tuple[str, str], object]:
    """(module, attribute) -> value, for every attribute of a loaded TF/Keras module that holds
    one of TF's functions or one of tfxent's."""
    ours = {id(f) for f in TF_FUNCTIONS + TFXENT_FUNCTIONS}
    found = {}
    for name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType):
            continue
        if name.split(".")[0] not in ("tensorflow", "keras", "tf_keras"):
            continue
        for attribute, value in list(vars(module).items()):
            if id(value) in ours:
                found[(name, attribute)] = value
    return found


@pytest.fixture(autouse=True)
def _always_unpatched():
    assert not is_patched(), "a previous test leaked a patch"
    yield
    unpatch()


def _graph_op_types(function, *args) -> set[str]:
    graph = tf.function(function).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


def test_module_exports_are_sorted():
    assert patch_module.__all__ == sorted(patch_module.__all__)
    assert {"patch", "unpatch", "patched"} <= set(patch_module.__all__)


def test_patch_installs_twins_wherever_tf_and_keras_look_them_up():
    from tensorflow.python.ops.losses import losses_impl

    patch()
    # The public API modules (tf.compat.v2.nn is a module object of its own).
    for module in (tf.nn, tf.compat.v2.nn):
        assert (
            module.softmax_cross_entropy_with_logits is tfxent.nn.softmax_cross_entropy_with_logits
        )
        assert (
            module.sparse_softmax_cross_entropy_with_logits
            is tfxent.nn.sparse_softmax_cross_entropy_with_logits
        )
        assert not hasattr(module, "softmax_cross_entropy_with_logits_v2")  # nothing added
    v1 = tfxent.compat.v1.nn
    assert tf.compat.v1.nn.softmax_cross_entropy_with_logits is v1.softmax_cross_entropy_with_logits
    assert (
        tf.compat.v1.nn.softmax_cross_entropy_with_logits_v2
        is v1.softmax_cross_entropy_with_logits_v2
    )
    assert (
        tf.compat.v1.nn.sparse_softmax_cross_entropy_with_logits
        is v1.sparse_softmax_cross_entropy_with_logits
    )
    # TF's internal modules: tf.compat.v1.losses calls through tensorflow.python.ops.nn.
    assert losses_impl.nn is ops_nn
    for module in (ops_nn, nn_ops):
        assert (
            module.softmax_cross_entropy_with_logits_v2
            is tfxent.nn.softmax_cross_entropy_with_logits
        )
        assert (
            module.sparse_softmax_cross_entropy_with_logits_v2
            is tfxent.nn.sparse_softmax_cross_entropy_with_logits
        )
        assert module.softmax_cross_entropy_with_logits is v1.softmax_cross_entropy_with_logits
        assert (
            module.softmax_cross_entropy_with_logits_v2_helper
            is v1.softmax_cross_entropy_with_logits_v2
        )
        assert (
            module.sparse_softmax_cross_entropy_with_logits
            is v1.sparse_softmax_cross_entropy_with_logits
        )
    # No loaded TF/Keras module still holds one of TF's functions.
    leftovers = {key for key, value in _tf_references().items() if value in TF_FUNCTIONS}
    assert not leftovers


def test_keras_backend_looks_the_functions_up_through_tf_nn():
    keras = pytest.importorskip("keras")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip("Keras 3's TF backend")
    try:  # Keras 3.16 moved the TF backend's nn functions into an `ops` package
        from keras.src.backend.tensorflow.ops import nn as keras_tf_nn
    except ImportError:
        from keras.src.backend.tensorflow import nn as keras_tf_nn

    source = inspect.getsource(keras_tf_nn)
    assert "tf.nn.softmax_cross_entropy_with_logits(" in source
    assert "tf.nn.sparse_softmax_cross_entropy_with_logits(" in source
    patch()
    assert keras_tf_nn.tf.nn is tf.nn
    assert (
        keras_tf_nn.tf.nn.softmax_cross_entropy_with_logits
        is tfxent.nn.softmax_cross_entropy_with_logits
    )


def test_unpatch_restores_the_identity_of_every_replaced_attribute():
    before = _tf_references()
    assert before and all(value in TF_FUNCTIONS for value in before.values())
    patch()
    assert _tf_references().keys() == before.keys()
    unpatch()
    after = _tf_references()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key] is value, key
    assert tf.nn.softmax_cross_entropy_with_logits is V2_DENSE
    assert tf.compat.v1.nn.softmax_cross_entropy_with_logits_v2 is V1_DENSE_V2


def test_patch_twice_is_one_patch():
    before = _tf_references()
    patch()
    installed = list(patch_module._installed)
    patch()
    assert patch_module._installed == installed
    unpatch()
    assert _tf_references() == before


def test_unpatch_without_patch_changes_nothing():
    before = _tf_references()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unpatch()
        unpatch()
    assert _tf_references() == before


def test_unpatch_leaves_an_attribute_someone_else_replaced():
    patch()

    def other(*args, **kwargs):  # e.g. another tool's wrapper installed after ours
        return None

    tf.nn.sparse_softmax_cross_entropy_with_logits = other
    try:
        with pytest.warns(RuntimeWarning, match="replaced by someone else"):
            unpatch()
        assert tf.nn.sparse_softmax_cross_entropy_with_logits is other
        assert tf.nn.softmax_cross_entropy_with_logits is V2_DENSE
    finally:
        tf.nn.sparse_softmax_cross_entropy_with_logits = V2_SPARSE


def test_strict_installs_the_tf115_contract_into_compat_v1_nn():
    patch(strict=True)
    v1 = tf.compat.v1.nn
    assert v1.softmax_cross_entropy_with_logits is tfxent.softmax_cross_entropy_with_logits
    assert (
        v1.sparse_softmax_cross_entropy_with_logits
        is tfxent.sparse_softmax_cross_entropy_with_logits
    )
    assert v1.softmax_cross_entropy_with_logits_v2 is tfxent.softmax_cross_entropy_with_logits_v2
    assert "_sentinel" in inspect.signature(v1.softmax_cross_entropy_with_logits).parameters
    # A TF 0.x-style positional call is refused instead of silently swapped.
    with pytest.raises(
        ValueError, match="Only call `softmax_cross_entropy_with_logits` with named"
    ):
        v1.softmax_cross_entropy_with_logits(LOGITS, LABELS)
    with pytest.raises(ValueError, match="Only call `sparse_softmax_cross_entropy_with_logits`"):
        v1.sparse_softmax_cross_entropy_with_logits(LOGITS, CLASSES)
    # Keyword calls give TF's values; TF's own modules keep the keyword-tolerant twins.
    np.testing.assert_allclose(
        v1.softmax_cross_entropy_with_logits(labels=LABELS, logits=LOGITS),
        V1_DENSE(labels=LABELS, logits=LOGITS),
        rtol=1e-6,
    )
    assert (
        nn_ops.softmax_cross_entropy_with_logits
        is tfxent.compat.v1.nn.softmax_cross_entropy_with_logits
    )
    assert tf.nn.softmax_cross_entropy_with_logits is tfxent.nn.softmax_cross_entropy_with_logits


def test_plain_patch_keeps_tf_212_positional_calls_working():
    patch()
    loss = tf.compat.v1.nn.softmax_cross_entropy_with_logits(LABELS, LOGITS)
    np.testing.assert_allclose(loss, V1_DENSE(LABELS, LOGITS), rtol=1e-6)


def test_switching_strictness_then_unpatching_restores_tf():
    before = _tf_references()
    patch()
    patch(strict=True)
    assert (
        tf.compat.v1.nn.softmax_cross_entropy_with_logits
        is tfxent.softmax_cross_entropy_with_logits
    )
    patch()
    assert (
        tf.compat.v1.nn.softmax_cross_entropy_with_logits
        is tfxent.compat.v1.nn.softmax_cross_entropy_with_logits
    )
    unpatch()
    assert _tf_references() == before


def test_patched_blocks_nest_and_restore_what_they_found():
    before = _tf_references()
    with patched():
        assert is_patched()
        with patched(strict=True):
            assert (
                tf.compat.v1.nn.softmax_cross_entropy_with_logits
                is tfxent.softmax_cross_entropy_with_logits
            )
        assert (
            tf.compat.v1.nn.softmax_cross_entropy_with_logits
            is tfxent.compat.v1.nn.softmax_cross_entropy_with_logits
        )
        with patched():
            pass
        assert is_patched()
    assert not is_patched()
    assert _tf_references() == before
    with pytest.raises(RuntimeError, match="inside"):
        with patched():
            raise RuntimeError("inside")
    assert _tf_references() == before


def test_patching_from_many_threads_is_safe():
    before = _tf_references()
    barrier = threading.Barrier(8)
    errors = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                patch(strict=index % 3 == 0)
                if index % 2:
                    unpatch()
                with patched():
                    tf.nn.softmax_cross_entropy_with_logits(labels=LABELS, logits=LOGITS)
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # Whatever the interleaving, the state is all-or-nothing and one unpatch restores TF.
    now = _tf_references()
    if is_patched():
        assert not {key for key, value in now.items() if value in TF_FUNCTIONS}
    else:
        assert now == before
    unpatch()
    assert _tf_references() == before
    assert not patch_module._installed


def test_concurrent_patch_calls_install_once():
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        patch()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = [(entry.module.__name__, entry.name) for entry in patch_module._installed]
    assert len(keys) == len(set(keys))


def test_v2_api_under_patch_traces_the_custom_op_and_matches_tf():
    def dense(labels, logits):
        return tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    def sparse(labels, logits):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    expected_dense, expected_sparse = dense(LABELS, LOGITS), sparse(CLASSES, LOGITS)
    assert "SoftmaxCrossEntropyWithLogits" in _graph_op_types(dense, LABELS, LOGITS)
    with patched():
        assert {"TfxentSoftmaxXent"} <= _graph_op_types(dense, LABELS, LOGITS)
        assert not TF_XENT_OPS & _graph_op_types(dense, LABELS, LOGITS)
        assert {"TfxentSparseSoftmaxXent"} <= _graph_op_types(sparse, CLASSES, LOGITS)
        assert not TF_XENT_OPS & _graph_op_types(sparse, CLASSES, LOGITS)
        np.testing.assert_allclose(dense(LABELS, LOGITS), expected_dense, rtol=1e-6)
        np.testing.assert_allclose(sparse(CLASSES, LOGITS), expected_sparse, rtol=1e-6)


def test_eager_calls_under_patch_run_the_custom_op(monkeypatch):
    # Eager calls leave no graph to inspect: count the calls into the op's wrappers instead.
    calls = []
    for name in ("dense_loss", "sparse_loss"):
        original = getattr(_ops, name)
        monkeypatch.setattr(
            _ops, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k)
        )
    expected = tf.nn.softmax_cross_entropy_with_logits(labels=LABELS, logits=LOGITS)
    expected_sparse = tf.nn.sparse_softmax_cross_entropy_with_logits(CLASSES, LOGITS)
    assert calls == []
    with patched():
        loss = tf.nn.softmax_cross_entropy_with_logits(labels=LABELS, logits=LOGITS)
        sparse = tf.nn.sparse_softmax_cross_entropy_with_logits(CLASSES, LOGITS)
    assert calls == ["dense_loss", "sparse_loss"]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(sparse, expected_sparse, rtol=1e-6)


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_compat_v1_losses_under_patch_run_the_custom_op(kind):
    """tf.compat.v1.losses calls nn.softmax_cross_entropy_with_logits_v2 /
    nn.sparse_softmax_cross_entropy_with_logits through tensorflow.python.ops.nn."""
    weights = np.array([1.0, 0.5], np.float32)

    def loss(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            if kind == "dense":
                value = tf.compat.v1.losses.softmax_cross_entropy(
                    labels, logits, weights=weights, label_smoothing=0.1
                )
            else:
                value = tf.compat.v1.losses.sparse_softmax_cross_entropy(
                    labels, logits, weights=weights
                )
        return value, tape.gradient(value, logits)

    labels = LABELS if kind == "dense" else CLASSES
    op = "TfxentSoftmaxXent" if kind == "dense" else "TfxentSparseSoftmaxXent"
    expected = tf.function(loss)(labels, tf.constant(LOGITS))
    assert TF_XENT_OPS & _graph_op_types(loss, labels, tf.constant(LOGITS))
    with patched():
        types_ = _graph_op_types(loss, labels, tf.constant(LOGITS))
        assert {op, op + "Grad"} <= types_
        assert not TF_XENT_OPS & types_
        actual = tf.function(loss)(labels, tf.constant(LOGITS))
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_keras_losses_under_patch_run_the_custom_op(kind):
    keras = pytest.importorskip("keras")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip("Keras 3's TF backend")
    if kind == "dense":
        loss_fn, labels = keras.losses.CategoricalCrossentropy(from_logits=True), LABELS
        op = "TfxentSoftmaxXent"
    else:
        loss_fn, labels = keras.losses.SparseCategoricalCrossentropy(from_logits=True), CLASSES
        op = "TfxentSparseSoftmaxXent"

    def loss(labels, logits):
        return loss_fn(labels, logits)

    expected = loss(labels, LOGITS)
    assert TF_XENT_OPS & _graph_op_types(loss, labels, LOGITS)
    with patched():
        types_ = _graph_op_types(loss, labels, LOGITS)
        assert op in types_ and not TF_XENT_OPS & types_
        np.testing.assert_allclose(loss(labels, LOGITS), expected, rtol=1e-6)


def test_a_function_traced_before_patch_keeps_what_it_traced():
    """The documented limit: patch() does not reach into existing traces."""

    @tf.function
    def dense(labels, logits):
        return tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    concrete = dense.get_concrete_function(LABELS, LOGITS)
    with patched():
        again = dense.get_concrete_function(LABELS, LOGITS)
        assert again is concrete
        assert "SoftmaxCrossEntropyWithLogits" in {op.type for op in again.graph.get_operations()}
