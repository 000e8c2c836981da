"""Keras 3 `model.fit` with tfxent patched in gives the history it gives on TensorFlow alone.

Keras's TF backend reaches the losses through `tf.nn` at call time, so `tfxent.patch()` is
all it takes. Each case fits the same model from the same weights twice, without and with
the patch, and compares the loss history and the final weights. The traced training step
shows which backend computed the loss: tfxent's custom op (and its gradient op) without
XLA; with `jit_compile=True`, tfxent's composite path, since the custom op cannot run
inside XLA. TF's own xent ops never appear in the patched step.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
datasets = pytest.importorskip("sklearn.datasets")
if int(keras.__version__.split(".")[0]) < 3:
    pytest.skip("Keras 3 (TF 2.16+)", allow_module_level=True)

from tfxent import _backend  # noqa: E402
from tfxent.patch import is_patched, patched  # noqa: E402

TF_XENT_OPS = {"SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"}
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int32)


@pytest.fixture
def backend_calls(monkeypatch):
    """Every backend decision tfxent makes, with the graph it was made in."""
    calls = []
    choose = _backend.choose

    def spy(logits):
        choice = choose(logits)
        calls.append((choice, tf.compat.v1.get_default_graph()))
        return choice

    monkeypatch.setattr(_backend, "choose", spy)
    return calls


def _model():
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )


def _fit(initial, images, targets, loss, jit_compile):
    model = _model()
    model.set_weights(initial)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=loss,
        metrics=["accuracy"]
        if isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
        else [],
        jit_compile=jit_compile,
    )
    history = model.fit(
        images, targets, batch_size=128, epochs=3, shuffle=False, verbose=0, validation_split=0.2
    )
    return history.history, model.get_weights()


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_keras_fit_history_is_tfs(digits, backend_calls, kind, jit_compile):
    images, classes = digits
    keras.utils.set_random_seed(0)
    initial = _model().get_weights()
    if kind == "dense":
        targets, op = np.eye(10, dtype=np.float32)[classes], "TfxentSoftmaxXent"
        make_loss = lambda: keras.losses.CategoricalCrossentropy(from_logits=True)  # noqa: E731
    else:
        targets, op = classes, "TfxentSparseSoftmaxXent"
        make_loss = lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # noqa: E731

    expected_history, expected_weights = _fit(initial, images, targets, make_loss(), jit_compile)
    assert not backend_calls, "the reference run must not touch tfxent"
    with patched():
        history, weights = _fit(initial, images, targets, make_loss(), jit_compile)
    assert not is_patched()

    # Which backend computed the loss, seen in the traced training (and validation) steps.
    assert backend_calls
    for choice, graph in backend_calls:
        op_types = {operation.type for operation in graph.get_operations()}
        assert not TF_XENT_OPS & op_types
        if jit_compile:
            assert (choice.backend, choice.xla) == (_backend.COMPOSITE, True)
            assert not any(t.startswith("Tfxent") for t in op_types)
        else:
            assert choice.backend == _backend.OP
            assert op in op_types
    if not jit_compile:
        training_graphs = [
            g for _, g in backend_calls if op + "Grad" in {o.type for o in g.get_operations()}
        ]
        assert training_graphs, "the gradient of the training step must be tfxent's op"

    assert history.keys() == expected_history.keys()
    for name, values in expected_history.items():
        np.testing.assert_allclose(history[name], values, rtol=64 * EPS32, err_msg=name)
    for got, want in zip(weights, expected_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=64 * EPS32, atol=64 * EPS32)
