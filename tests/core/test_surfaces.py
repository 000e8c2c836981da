"""The three API surfaces: signatures, the TF 1.15 contract, keyword errors, log lines,
graph naming and exports (docs/tf_behaviour.md#signatures,
docs/tf_behaviour.md#deprecation-log-lines, docs/tf_behaviour.md#op-names; docs/design.md "Three
API surfaces")."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tfxent
from tfxent import _op_names

MIRRORED = [
    ("nn", "softmax_cross_entropy_with_logits"),
    ("nn", "sparse_softmax_cross_entropy_with_logits"),
    ("compat.v1.nn", "softmax_cross_entropy_with_logits"),
    ("compat.v1.nn", "softmax_cross_entropy_with_logits_v2"),
    ("compat.v1.nn", "sparse_softmax_cross_entropy_with_logits"),
]

# TF 1.15's signatures: TF no longer has them at run time, so they are data here.
TF_1_15_SIGNATURES = {
    "softmax_cross_entropy_with_logits": (
        "(_sentinel=None, labels=None, logits=None, dim=-1, name=None, axis=None)"
    ),
    "softmax_cross_entropy_with_logits_v2": "(labels, logits, axis=None, name=None, dim=None)",
    "sparse_softmax_cross_entropy_with_logits": (
        "(_sentinel=None, labels=None, logits=None, name=None)"
    ),
}


def _resolve(root: object, dotted: str) -> object:
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


@pytest.mark.parametrize(("module", "name"), MIRRORED)
def test_signature_equals_installed_tf(module, name):
    ours = getattr(_resolve(tfxent, module), name)
    theirs = getattr(_resolve(tf, module), name)
    assert inspect.signature(ours) == inspect.signature(theirs)


@pytest.mark.parametrize("name", sorted(TF_1_15_SIGNATURES))
def test_top_level_has_tf_1_15_signature(name):
    assert str(inspect.signature(getattr(tfxent, name))) == TF_1_15_SIGNATURES[name]


def test_v2_name_absent_from_tf_nn_mirror():
    # docs/tf_behaviour.md#signatures: hasattr(tf.nn, "softmax_cross_entropy_with_logits_v2") is
    # False.
    assert hasattr(tfxent.nn, "softmax_cross_entropy_with_logits_v2") == hasattr(
        tf.nn, "softmax_cross_entropy_with_logits_v2"
    )


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (tfxent, ["compat", "nn"] + sorted(TF_1_15_SIGNATURES)),
        (tfxent.nn, [n for m, n in MIRRORED if m == "nn"]),
        (tfxent.compat.v1.nn, [n for m, n in MIRRORED if m == "compat.v1.nn"]),
    ],
    ids=["tfxent", "tfxent.nn", "tfxent.compat.v1.nn"],
)
def test_public_names_are_documented_and_sorted(module, expected):
    public = [n for n in module.__all__ if not n.startswith("_")]
    assert module.__all__ == sorted(module.__all__)
    assert set(expected) <= set(public)


def test_tools_are_plain_functions_and_modules_of_the_package():
    # tfxent.audit is a function returning a context manager, not a module made callable.
    assert inspect.isfunction(tfxent.audit) and "audit" in tfxent.__all__
    assert inspect.ismodule(tfxent.saved_model) and callable(tfxent.saved_model.save)
    for name in ("patch", "patched", "unpatch"):
        assert inspect.isfunction(getattr(tfxent, name)) and name in tfxent.__all__


LABELS = [[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]]
LOGITS = [[4.0, 2.0, 1.0], [0.0, 5.0, 1.0]]


@pytest.mark.parametrize(
    ("function", "call"),
    [
        ("softmax_cross_entropy_with_logits", lambda f: f(LABELS, LOGITS)),
        ("sparse_softmax_cross_entropy_with_logits", lambda f: f([0, 1], LOGITS)),
    ],
)
def test_top_level_rejects_positional_calls(function, call):
    with pytest.raises(ValueError) as err:
        call(getattr(tfxent, function))
    assert str(err.value) == (
        f"Only call `{function}` with named arguments (labels=..., logits=..., ...)"
    )


@pytest.mark.parametrize(
    "function",
    ["softmax_cross_entropy_with_logits", "sparse_softmax_cross_entropy_with_logits"],
)
@pytest.mark.parametrize("missing", ["labels", "logits"])
def test_top_level_missing_argument_message(function, missing):
    kwargs = {"labels": [0] if "sparse" in function else LABELS, "logits": LOGITS}
    del kwargs[missing]
    with pytest.raises(ValueError, match="^Both labels and logits must be provided.$"):
        getattr(tfxent, function)(**kwargs)


def test_top_level_dim_axis_lookup_comes_first():
    # TF 1.15 looked up dim/axis before checking the sentinel and the arguments.
    with pytest.raises(ValueError, match="Cannot specify both 'dim' and 'axis'."):
        tfxent.softmax_cross_entropy_with_logits(LABELS, axis=1)


@pytest.mark.parametrize(
    ("ours", "theirs", "kwargs"),
    [
        (
            tfxent.softmax_cross_entropy_with_logits,
            tf.compat.v1.nn.softmax_cross_entropy_with_logits,
            {"labels": LABELS, "logits": LOGITS, "dim": 0},
        ),
        (
            tfxent.softmax_cross_entropy_with_logits_v2,
            tf.compat.v1.nn.softmax_cross_entropy_with_logits_v2,
            {"labels": LABELS, "logits": LOGITS, "axis": -1},
        ),
        (
            tfxent.sparse_softmax_cross_entropy_with_logits,
            tf.compat.v1.nn.sparse_softmax_cross_entropy_with_logits,
            {"labels": [2, 0], "logits": LOGITS},
        ),
    ],
    ids=["v1", "v1_v2", "sparse"],
)
def test_top_level_keyword_calls_match_tf_values_and_gradients(ours, theirs, kwargs):
    def run(function):
        logits = tf.constant(kwargs["logits"])
        labels = tf.constant(kwargs["labels"])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([logits, labels])
            loss = function(**{**kwargs, "labels": labels, "logits": logits})
        watched = [logits] if labels.dtype.is_integer else [logits, labels]
        return [loss, *tape.gradient(loss, watched)]

    for a, b in zip(run(ours), run(theirs), strict=True):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


UNKNOWN_KEYWORDS = [
    (module, name, keyword)
    for module, name in MIRRORED
    for keyword in ("_sentinel", "dim", "bogus")
    if keyword not in inspect.signature(getattr(_resolve(tf, module), name)).parameters
]


@pytest.mark.parametrize(("module", "name", "keyword"), UNKNOWN_KEYWORDS)
def test_unknown_keywords_raise_tf_type_error(module, name, keyword):
    ours = getattr(_resolve(tfxent, module), name)
    theirs = getattr(_resolve(tf, module), name)

    def error(function):
        with pytest.raises(TypeError) as err:
            function(labels=LABELS, logits=LOGITS, **{keyword: None})
        return str(err.value)

    assert error(ours) == error(theirs)


def _graph_names(function, sparse: bool, name: str | None):
    with tf.Graph().as_default() as graph:
        labels = tf.compat.v1.placeholder(
            tf.int32 if sparse else tf.float32, [None] if sparse else [None, 3]
        )
        logits = tf.compat.v1.placeholder(tf.float32, [None, 3])
        out = function(labels=labels, logits=logits, name=name)
    kernels = sorted(
        op.name
        for op in graph.get_operations()
        if "SoftmaxCrossEntropy" in op.type or op.type.startswith(_op_names.PREFIX)
    )
    return out.name, kernels, out.shape.as_list()


@pytest.mark.parametrize(("module", "name"), MIRRORED)
@pytest.mark.parametrize("scope", [None, "myloss"])
def test_graph_tensor_and_node_names_match_tf(module, name, scope):
    sparse = "sparse" in name
    ours = _graph_names(getattr(_resolve(tfxent, module), name), sparse, scope)
    theirs = _graph_names(getattr(_resolve(tf, module), name), sparse, scope)
    assert ours == theirs


LOG_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    import tensorflow as tf
    tf.get_logger().setLevel("WARNING")
    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())
    tf.get_logger().addHandler(Keep())
    import tfxent
    module = tfxent if sys.argv[1] == "tfxent" else tf
    v1 = module.compat.v1.nn
    lb, lg = [[0.0, 1.0]], [[1.0, 2.0]]
    marks = {}
    v1.softmax_cross_entropy_with_logits(labels=lb, logits=lg)
    v1.softmax_cross_entropy_with_logits(labels=lb, logits=lg)
    marks["v1_eager_twice"] = len(records)
    v1.softmax_cross_entropy_with_logits_v2(lb, lg, dim=-1)
    marks["v2_dim_eager"] = len(records)
    tf.function(lambda: v1.softmax_cross_entropy_with_logits_v2(lb, lg, dim=None))()
    tf.function(lambda: v1.softmax_cross_entropy_with_logits_v2(lb, lg, dim=-1))()
    marks["v2_dim_traced_twice"] = len(records)
    module.nn.sparse_softmax_cross_entropy_with_logits([1], lg)
    module.nn.softmax_cross_entropy_with_logits(lb, lg)
    marks["v2_and_sparse"] = len(records)
    print(json.dumps({"records": records, "marks": marks}))
    """
)


def _logged(side: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", LOG_SCRIPT, side], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _normalised(message: str) -> str:
    """TF's log line without the caller location and with the module named generically."""
    message = message.split(": ", 1)[1] if message.startswith("From ") else message
    for module in ("tensorflow.python.ops.nn_ops", "tfxent.compat.v1.nn"):
        message = message.replace(f"(from {module})", "(from <module>)")
    return message.replace("_v2_helper", "_v2")


def test_deprecation_log_lines_match_tf_once_per_process_and_graph_only_for_dim():
    ours, theirs = _logged("tfxent"), _logged("tf")
    assert ours["marks"] == theirs["marks"]
    assert theirs["marks"] == {
        "v1_eager_twice": 1,
        "v2_dim_eager": 1,
        "v2_dim_traced_twice": 2,
        "v2_and_sparse": 2,
    }, "TF's own behaviour changed: update docs/tf_behaviour.md#deprecation-log-lines and this test"
    assert [_normalised(m) for m in ours["records"]] == [_normalised(m) for m in theirs["records"]]
    assert "(from tfxent.compat.v1.nn)" in ours["records"][0]


def test_import_without_tensorflow_names_both_extras():
    script = textwrap.dedent(
        """
        import sys
        class NoTensorFlow:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    raise ImportError("No module named 'tensorflow'")
        sys.meta_path.insert(0, NoTensorFlow())
        import tfxent  # TF-free: the surfaces load TensorFlow on first use
        try:
            tfxent.nn
        except ImportError as err:
            print(err)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "tfxent[tensorflow]" in done.stdout and "tfxent[tensorflow-cpu]" in done.stdout
