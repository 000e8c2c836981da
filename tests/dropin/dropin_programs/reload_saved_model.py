"""Reload SavedModels in a fresh process and report their loss and gradients, one JSON line each.

    python reload_saved_model.py {tfxent,bare} INPUTS.npz EXPORT_DIR...

`tfxent`: `import tfxent`, then `tf.saved_model.load` (the documented way); `registered_by_import`
says whether that load found tfxent's ops. `bare`: TensorFlow alone. A failure is reported with
its message. Each model has `loss(x, y)`, `loss_and_gradients(x, y)` (a dict
with "loss" and "gradient_<i>") and its variables in `gradient_variables` or
`trainable_variables`.
"""

import json
import sys

import numpy as np
import tensorflow as tf

mode, inputs, *export_dirs = sys.argv[1:]
data = np.load(inputs)
x, y = tf.constant(data["x"]), tf.constant(data["y"])
if mode == "tfxent":
    import tfxent  # noqa: F401

for export_dir in export_dirs:
    report = {"export_dir": export_dir}
    registered_by_import = None
    try:
        loaded = tf.saved_model.load(export_dir)
        if mode == "tfxent":
            registered_by_import = True
    except Exception as err:  # noqa: BLE001  (reported)
        if mode == "tfxent" and "Op type not registered 'Tfxent" in str(err):
            registered_by_import = False
        report.update(
            error=f"{type(err).__name__}: {err}", registered_by_import=registered_by_import
        )
        report["tfxent_imported"] = "tfxent" in sys.modules
        print(json.dumps(report))
        continue
    inside = loaded.loss_and_gradients(x, y)
    # What this process runs: the op types of the restored functions and the ones they call.
    op_types = set()
    for function in (loaded.loss, loaded.loss_and_gradients):
        for concrete in function._list_all_concrete_functions_for_serialization():  # noqa: SLF001
            graph_def = concrete.graph.as_graph_def()
            op_types |= {node.op for node in graph_def.node}
            op_types |= {n.op for f in graph_def.library.function for n in f.node_def}
    variables = list(getattr(loaded, "gradient_variables", None) or loaded.trainable_variables)
    with tf.GradientTape() as tape:
        loss = loaded.loss(x, y)
    outside = tape.gradient(loss, variables)
    report.update(
        error=None,
        registered_by_import=registered_by_import,
        tfxent_imported="tfxent" in sys.modules,
        loss=float(inside["loss"]),
        gradients=[inside[f"gradient_{i}"].numpy().tolist() for i in range(len(variables))],
        outer_loss=float(loss),
        outer_gradients=[g.numpy().tolist() for g in outside],
        op_types=sorted(op_types),
    )
    print(json.dumps(report))
