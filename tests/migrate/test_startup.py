"""What imports TensorFlow, and when tfxent's ops are registered.

`import tfxent` and `import tfxent.migrate` leave TensorFlow alone (the codemod and the
command line do not need it); the ops are registered as soon as TensorFlow is imported
too, in either order, so a SavedModel that uses them loads after `import tfxent`. Each
check runs in a fresh interpreter: this one has TensorFlow loaded already.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[2]


def run_python(code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TFXENT_FORCE_COMPOSITE", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_tfxent_migrate_does_not_import_tensorflow():
    out = run_python("""
        import sys
        import tfxent.migrate
        from tfxent.migrate import migrate_source
        migrate_source("import tensorflow as tf\\n")
        print(sorted(m for m in ("tensorflow", "numpy") if m in sys.modules))
    """)
    assert out == "[]\n"


def test_migrate_help_imports_neither_tensorflow_nor_libcst():
    out = run_python("""
        import contextlib, io, sys
        from tfxent.__main__ import main
        with contextlib.redirect_stdout(io.StringIO()) as text, contextlib.suppress(SystemExit):
            main(["migrate", "--help"])
        assert "exit status" in text.getvalue()
        print(sorted(m for m in ("tensorflow", "libcst") if m in sys.modules))
    """)
    assert out == "[]\n"


def test_import_tfxent_exposes_the_surfaces_without_importing_tensorflow():
    out = run_python("""
        import sys
        import tfxent
        print("tensorflow" in sys.modules, callable(tfxent.patch), sorted(tfxent.__all__))
        nn = tfxent.nn
        print("tensorflow" in sys.modules, nn.__name__, tfxent.compat.v1.nn.__name__)
        # tfxent.audit is the audit function itself, tfxent.saved_model a module.
        print(callable(tfxent.audit), tfxent.audit.__name__, tfxent.saved_model.__name__)
    """)
    lines = out.splitlines()
    assert lines[0].startswith("False True ['audit', 'compat', 'fused', 'nn', 'patch', 'patched'")
    assert lines[1:] == ["True tfxent.nn tfxent.compat.v1.nn", "True audit tfxent.saved_model"]


REGISTERED = """
    from tensorflow.python.framework import op_def_registry
    print(op_def_registry.get("TfxentSoftmaxXent") is not None)
"""


@pytest.mark.parametrize(
    "imports",
    [
        "import tfxent\nimport tensorflow",  # the hook registers after TF's import
        "import tensorflow\nimport tfxent",  # TF loaded: registered at once
        "import tfxent.migrate\nimport tensorflow",
        "import tfxent.nn",  # tfxent's own import of TF
    ],
)
def test_ops_are_registered_once_both_are_imported(imports):
    assert run_python(imports + "\n" + textwrap.dedent(REGISTERED)) == "True\n"


def test_tensorflow_alone_does_not_register_the_ops():
    assert run_python("import tensorflow\n" + textwrap.dedent(REGISTERED)) == "False\n"


@pytest.mark.slow
def test_saved_model_loads_after_import_tfxent_then_import_tensorflow(tmp_path):
    import tensorflow as tf

    import tfxent
    from tfxent import saved_model

    class Loss(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 5]), tf.TensorSpec([None, 5])])
        def __call__(self, labels, logits):
            return tfxent.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    saved_model.save(Loss(), str(tmp_path))
    rng = np.random.RandomState(0)
    logits = rng.normal(size=(3, 5)).astype(np.float32)
    labels = rng.dirichlet(np.ones(5), 3).astype(np.float32)
    np.save(tmp_path / "in.npy", np.stack([labels, logits]))
    out = run_python(
        """
        import sys
        import tfxent
        import tensorflow as tf
        import numpy as np
        labels, logits = (tf.constant(a) for a in np.load(sys.argv[1] + "/in.npy"))
        loaded = tf.saved_model.load(sys.argv[1])
        graph = loaded.__call__.get_concrete_function(labels, logits).graph.as_graph_def()
        ops = {n.op for n in graph.node}
        ops.update(n.op for f in graph.library.function for n in f.node_def)
        print("TfxentSoftmaxXent" in ops)
        with tf.GradientTape() as tape:  # the ops' gradients are registered too
            tape.watch([labels, logits])
            loss = loaded(labels, logits)
        gradients = tape.gradient(loss, [labels, logits])
        for value in (loss, *gradients):
            print(" ".join(repr(float(v)) for v in value.numpy().ravel()))
        """,
        str(tmp_path),
    )
    used_op, *values = out.splitlines()
    assert used_op == "True"
    labels, logits = tf.constant(labels), tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch([labels, logits])
        loss = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    expected = [loss, *tape.gradient(loss, [labels, logits])]
    assert len(values) == 3
    for got, want in zip(values, expected, strict=True):
        np.testing.assert_allclose(
            [float(v) for v in got.split()], want.numpy().ravel(), rtol=1e-5, atol=1e-7
        )


def test_after_import_hook_runs_after_the_module_body_and_never_fails_its_import(
    tmp_path, monkeypatch
):
    from tfxent import _after_import

    (tmp_path / "tfxent_hook_probe_a.py").write_text("DONE = True\n")
    (tmp_path / "tfxent_hook_probe_b.py").write_text("DONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    _after_import.when_imported("tfxent_hook_probe_a", lambda m: seen.append(m.DONE))
    _after_import.when_imported("tfxent_hook_probe_b", lambda m: 1 / 0)
    import tfxent_hook_probe_a  # noqa: F401

    assert seen == [True]
    with pytest.warns(UserWarning, match="tfxent_hook_probe_b imported, but ZeroDivisionError"):
        import tfxent_hook_probe_b
    assert tfxent_hook_probe_b.DONE
    assert tfxent_hook_probe_b.__loader__.__class__.__name__ == "SourceFileLoader"
