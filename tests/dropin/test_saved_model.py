"""SavedModels that use tfxent: export, reload in a fresh process, same loss and gradients.

A `tf.Module` calling `tfxent.nn` directly and a Keras model whose loss runs on tfxent through
`tfxent.patch()` are exported twice each: with tfxent's custom op (`tfxent.saved_model.save`,
or Keras's `ExportArchive` plus `add_import_hint`) and portably (TF primitives only). Fresh
interpreters reload them: with `import tfxent` the custom-op models give the loss and
gradients (computed inside the saved function, and by a tape around the loaded function) of
the exporting process and of TF itself; with TensorFlow alone they fail with a message that
says to import tfxent, while the portable models load and give the same values.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import tfxent  # noqa: E402
from tfxent import _backend, _op_names, saved_model  # noqa: E402
from tfxent.patch import patched  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "dropin_programs"
RELOAD, RELOAD_TF1 = PROGRAMS / "reload_saved_model.py", PROGRAMS / "reload_tf1_saved_model.py"
TF_XENT_OPS = {"SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"}
RTOL = 1e-5  # same arithmetic; the composite and TF's kernel differ by a few ulps


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        TFXENT_REQUIRE_OP="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    env.pop("TFXENT_FORCE_COMPOSITE", None)
    return env


def _inputs():
    rng = np.random.RandomState(0)
    return rng.uniform(-1, 1, (32, 64)).astype(np.float32), rng.randint(0, 10, 32).astype(np.int32)


class SoftLabelRegression(tf.Module):
    """Softmax regression against smoothed one-hot labels, on `tfxent.nn` explicitly."""

    def __init__(self):
        super().__init__()
        rng = np.random.RandomState(1)
        self.w = tf.Variable(rng.normal(0, 0.3, (64, 10)).astype(np.float32), name="w")
        self.b = tf.Variable(np.zeros(10, np.float32), name="b")
        self.gradient_variables = [self.w, self.b]  # what the reloading process differentiates

    def _loss(self, x, y, xent):
        labels = tf.one_hot(y, 10) * 0.9 + 0.01
        return tf.reduce_mean(xent(labels=labels, logits=tf.matmul(x, self.w) + self.b))

    @tf.function(input_signature=[tf.TensorSpec([None, 64]), tf.TensorSpec([None], tf.int32)])
    def loss(self, x, y):
        return self._loss(x, y, tfxent.nn.softmax_cross_entropy_with_logits)

    @tf.function(input_signature=[tf.TensorSpec([None, 64]), tf.TensorSpec([None], tf.int32)])
    def loss_and_gradients(self, x, y):
        with tf.GradientTape() as tape:
            loss = self._loss(x, y, tfxent.nn.softmax_cross_entropy_with_logits)
        gradients = tape.gradient(loss, [self.w, self.b])
        return {"loss": loss, **{f"gradient_{i}": g for i, g in enumerate(gradients)}}

    def tf_reference(self, x, y):
        with tf.GradientTape() as tape:
            loss = self._loss(x, y, tf.nn.softmax_cross_entropy_with_logits)
        return float(loss), [g.numpy() for g in tape.gradient(loss, [self.w, self.b])]


def _module_export(export_dir: Path, portable: bool) -> SoftLabelRegression:
    module = SoftLabelRegression()
    saved_model.save(module, str(export_dir), portable=portable)
    return module


def _keras_export(export_dir: Path, portable: bool):
    import keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(10)]
    )
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    spec = [tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int32)]

    def loss(x, y):
        return loss_fn(y, model(x))

    def loss_and_gradients(x, y):
        with tf.GradientTape() as tape:
            value = loss_fn(y, model(x))
        gradients = tape.gradient(value, model.trainable_variables)
        return {"loss": value, **{f"gradient_{i}": g for i, g in enumerate(gradients)}}

    def tf_reference(x, y):  # the same model, loss computed by TF alone
        with tf.GradientTape() as tape:
            value = loss_fn(y, model(x))
        return float(value), [g.numpy() for g in tape.gradient(value, model.trainable_variables)]

    if int(keras.__version__.split(".")[0]) >= 3:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("loss", loss, input_signature=spec)
        archive.add_endpoint("loss_and_gradients", loss_and_gradients, input_signature=spec)
        # Keras traces the endpoints when it writes them: the patch must be active then.
        with patched():
            if portable:
                with saved_model.portable_export(str(export_dir)):
                    archive.write_out(str(export_dir), verbose=False)
            else:
                archive.write_out(str(export_dir), verbose=False)
                saved_model.add_import_hint(str(export_dir))
    else:
        # Keras 2 (TF ≤ 2.15) has no ExportArchive: a tf.Module carries the model and the two
        # endpoints, traced under the patch as Keras 3's archive traces them.
        module = tf.Module()
        module.model = model
        module.gradient_variables = model.trainable_variables  # what the reload differentiates
        module.loss = tf.function(loss, input_signature=spec)
        module.loss_and_gradients = tf.function(loss_and_gradients, input_signature=spec)
        with patched():
            saved_model.save(module, str(export_dir), portable=portable)
    model.tf_reference = tf_reference
    return model


def _tf1_export(export_dir: Path, inputs) -> float:
    """A TF 1.x program's export: a Session graph built under tfxent.patch(), written by
    `simple_save`, then hinted. Returns TF's own loss for `inputs` (unpatched graph)."""
    x_value, y_value = inputs
    losses = []
    for use_tfxent in (False, True):
        with tf.Graph().as_default(), tf.compat.v1.Session() as session:
            with patched() if use_tfxent else _nothing():
                x = tf.compat.v1.placeholder(tf.float32, [None, 64])
                y = tf.compat.v1.placeholder(tf.int32, [None])
                w = tf.Variable(np.random.RandomState(3).normal(0, 0.3, (64, 10)), dtype=tf.float32)
                logits = tf.matmul(x, w)
                loss = tf.reduce_mean(
                    tf.compat.v1.nn.sparse_softmax_cross_entropy_with_logits(
                        labels=y, logits=logits
                    )
                )
            session.run(tf.compat.v1.global_variables_initializer())
            losses.append(float(session.run(loss, {x: x_value, y: y_value})))
            if use_tfxent:
                tf.compat.v1.saved_model.simple_save(
                    session, str(export_dir), {"x": x, "y": y}, {"loss": loss}
                )
    assert saved_model.add_import_hint(str(export_dir)) is True
    return losses[0]


@contextlib.contextmanager
def _nothing():
    yield


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export the four models, then reload them in two fresh processes started together."""
    root = tmp_path_factory.mktemp("saved_models")
    x, y = _inputs()
    np.savez(root / "inputs.npz", x=x, y=y)
    models = {}
    for name, export in (("module", _module_export), ("keras", _keras_export)):
        for portable in (False, True):
            key = f"{name}-portable" if portable else name
            export_dir = root / key
            models[key] = (export_dir, export(export_dir, portable))
    tf1_expected = _tf1_export(root / "tf1", (x, y))
    processes = {}
    for mode in ("tfxent", "bare"):
        command = [
            sys.executable,
            str(RELOAD_TF1),
            mode,
            str(root / "inputs.npz"),
            str(root / "tf1"),
        ]
        processes[f"tf1-{mode}"] = (
            ["tf1"],
            subprocess.Popen(
                command,
                cwd=REPO,
                env=_child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    for mode, keys in (("tfxent", ["module", "keras"]), ("bare", list(models))):
        command = [sys.executable, str(RELOAD), mode, str(root / "inputs.npz")]
        command += [str(models[key][0]) for key in keys]
        processes[mode] = (
            keys,
            subprocess.Popen(
                command,
                cwd=REPO,
                env=_child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    reports = {}
    for mode, (keys, process) in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"reload ({mode}) failed:\n{stderr[-4000:]}"
        lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        assert len(lines) == len(keys), stdout
        reports[mode] = dict(zip(keys, lines, strict=True))
    models["tf1"] = (root / "tf1", tf1_expected)
    return {"inputs": (x, y), "models": models, "reports": reports}


def _saved_op_types(export_dir: Path) -> set[str]:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((export_dir / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    types = {node.op for node in graph.node}
    for function in graph.library.function:
        types |= {node.op for node in function.node_def}
    return types


def _assert_same(report: dict, expected_loss: float, expected_gradients: list) -> None:
    np.testing.assert_allclose(report["loss"], expected_loss, rtol=RTOL)
    np.testing.assert_allclose(report["outer_loss"], expected_loss, rtol=RTOL)
    assert len(report["gradients"]) == len(expected_gradients)
    for inside, outside, want in zip(
        report["gradients"], report["outer_gradients"], expected_gradients, strict=True
    ):
        atol = RTOL * float(np.max(np.abs(want)))
        np.testing.assert_allclose(np.array(inside), want, rtol=RTOL, atol=atol)
        np.testing.assert_allclose(np.array(outside), want, rtol=RTOL, atol=atol)


@pytest.mark.parametrize("name", ["module", "keras"])
def test_custom_op_export_reloads_with_tfxent_with_the_same_loss_and_gradients(exported, name):
    export_dir, model = exported["models"][name]
    op = _op_names.DENSE if name == "module" else _op_names.SPARSE
    types = _saved_op_types(export_dir)
    assert {op, op + "Grad"} <= types, "the saved functions compute with tfxent's custom op"
    assert not TF_XENT_OPS & types
    assert saved_model.custom_ops(str(export_dir)) == {op, op + "Grad"}

    report = exported["reports"]["tfxent"][name]
    assert report["error"] is None and report["tfxent_imported"]
    assert {op, op + "Grad"} <= set(report["op_types"]), "the reloaded functions run the op"
    assert not TF_XENT_OPS & set(report["op_types"])
    expected_loss, expected_gradients = model.tf_reference(*exported["inputs"])
    _assert_same(report, expected_loss, expected_gradients)


@pytest.mark.parametrize("name", ["module-portable", "keras-portable"])
def test_portable_export_loads_without_tfxent_with_the_same_loss_and_gradients(exported, name):
    export_dir, model = exported["models"][name]
    types = _saved_op_types(export_dir)
    assert not any(t.startswith(_op_names.PREFIX) for t in types), "only TF primitives"
    assert not TF_XENT_OPS & types, "the composite path, not TF's xent ops"
    assert saved_model.custom_ops(str(export_dir)) == set()

    report = exported["reports"]["bare"][name]
    assert report["error"] is None, report["error"]
    assert not report["tfxent_imported"]
    assert not TF_XENT_OPS & set(report["op_types"])
    expected_loss, expected_gradients = model.tf_reference(*exported["inputs"])
    _assert_same(report, expected_loss, expected_gradients)


@pytest.mark.parametrize("name", ["module", "keras"])
def test_loading_without_tfxent_says_import_tfxent_first(exported, name):
    report = exported["reports"]["bare"][name]
    assert not report["tfxent_imported"]
    assert report["error"] is not None, "a custom-op SavedModel cannot load without tfxent"
    assert f"Op type not registered '{saved_model.IMPORT_HINT_OP}'" in report["error"]


def test_tf1_session_export_reloads_with_tfxent_and_says_import_tfxent_without(exported):
    """A legacy program's simple_save of a graph built under patch(), hinted afterwards."""
    export_dir, expected_loss = exported["models"]["tf1"]
    assert saved_model.custom_ops(str(export_dir)) == {_op_names.SPARSE}
    assert not TF_XENT_OPS & _saved_op_types(export_dir)
    with_tfxent = exported["reports"]["tf1-tfxent"]["tf1"]
    assert with_tfxent["error"] is None, with_tfxent["error"]
    np.testing.assert_allclose(with_tfxent["loss"], expected_loss, rtol=RTOL)
    bare = exported["reports"]["tf1-bare"]["tf1"]
    assert not bare["tfxent_imported"]
    assert f"Op type not registered '{saved_model.IMPORT_HINT_OP}'" in bare["error"]


def test_import_tfxent_registers_the_ops_before_tf_saved_model_load(exported):
    for report in exported["reports"]["tfxent"].values():
        assert report["error"] is None, report["error"]
        assert report["registered_by_import"] is True


def test_portable_save_refuses_concrete_functions_traced_with_the_custom_op(tmp_path):
    module = SoftLabelRegression()
    module.loss(*_inputs())  # a tf.function traced before is traced again by the export...
    saved_model.save(module, str(tmp_path / "retraced"), portable=True)
    assert saved_model.custom_ops(str(tmp_path / "retraced")) == set()
    signature = module.loss.get_concrete_function()  # ...a concrete function is not
    with pytest.raises(ValueError, match=f"not portable: it uses .*{_op_names.DENSE}"):
        saved_model.save(module, str(tmp_path / "kept"), signatures=signature, portable=True)


def test_portable_export_block_refuses_an_export_traced_before(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    spec = [tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int32)]
    if int(keras.__version__.split(".")[0]) >= 3:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("loss", lambda x, y: loss_fn(y, model(x)), input_signature=spec)

        def write(path):
            archive.write_out(str(path), verbose=False)
    else:  # Keras 2: a tf.Module around the model, as in _keras_export
        module = tf.Module()
        module.model = model
        module.loss = tf.function(lambda x, y: loss_fn(y, model(x)), input_signature=spec)

        def write(path):
            tf.saved_model.save(module, str(path))

    with patched():
        write(tmp_path / "first")  # traced now, custom op
        with pytest.raises(ValueError, match=f"not portable: it uses .*{_op_names.SPARSE}"):
            with saved_model.portable_export(str(tmp_path / "second")):
                write(tmp_path / "second")
    assert _backend.choose(tf.zeros([1, 1])).backend == _backend.OP  # the block ended


def test_portable_export_steers_only_its_own_thread():
    def choice() -> str:
        return _backend.choose(tf.zeros([1, 1])).backend

    with saved_model.portable_export():
        here = choice()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            elsewhere = pool.submit(choice).result()
    assert (here, elsewhere, choice()) == (_backend.COMPOSITE, _backend.OP, _backend.OP)


def test_a_model_without_tfxent_gets_no_hint(tmp_path):
    class Plain(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([None, 3])])
        def loss(self, labels, logits):
            return tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    saved_model.save(Plain(), str(tmp_path / "plain"))
    assert saved_model.custom_ops(str(tmp_path / "plain")) == set()
    assert saved_model.add_import_hint(str(tmp_path / "plain")) is False
    assert saved_model.IMPORT_HINT_OP not in _saved_op_types(tmp_path / "plain")


def test_add_import_hint_is_idempotent(exported, tmp_path):
    source, _ = exported["models"]["module"]
    export_dir = tmp_path / "copy"
    shutil.copytree(source, export_dir)
    assert saved_model.add_import_hint(str(export_dir)) is True
    once = (export_dir / "saved_model.pb").read_bytes()
    assert saved_model.add_import_hint(str(export_dir)) is True
    assert (export_dir / "saved_model.pb").read_bytes() == once
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(once)
    for function in proto.meta_graphs[0].graph_def.library.function:
        ops = [node.op for node in function.node_def]
        uses_tfxent = any(op in _op_names.ALL for op in ops)
        assert ops.count(saved_model.IMPORT_HINT_OP) == (1 if uses_tfxent else 0)
        if uses_tfxent:
            assert ops[0] == saved_model.IMPORT_HINT_OP
