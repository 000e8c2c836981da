"""Reload a TF 1.x SavedModel (SavedModelBuilder / simple_save) into a Session; one JSON line.

    python reload_tf1_saved_model.py {tfxent,bare} INPUTS.npz EXPORT_DIR

Runs the "serving_default" signature's "loss" output on INPUTS' x and y. `tfxent`: import
tfxent first (registering its ops, or with `tfxent.saved_model.register_ops()` if importing
does not); `bare`: TensorFlow alone, a failure is reported with its message.
"""

import json
import sys

import numpy as np
import tensorflow.compat.v1 as tf
from tensorflow.python.framework import op_def_registry

tf.disable_eager_execution()
mode, inputs, export_dir = sys.argv[1:]
report = {"registered_by_import": None}
if mode == "tfxent":
    import tfxent  # noqa: F401

    report["registered_by_import"] = op_def_registry.get("TfxentSoftmaxXent") is not None
    import tfxent.saved_model

    tfxent.saved_model.register_ops()
data = np.load(inputs)
try:
    with tf.Session() as session:
        meta_graph = tf.saved_model.loader.load(session, ["serve"], export_dir)
        signature = meta_graph.signature_def["serving_default"]
        feed = {signature.inputs[k].name: data[k] for k in ("x", "y")}
        report["loss"] = float(session.run(signature.outputs["loss"].name, feed))
        report["error"] = None
except Exception as err:  # noqa: BLE001  (reported)
    report["error"] = f"{type(err).__name__}: {err}"
report["tfxent_imported"] = "tfxent" in sys.modules
print(json.dumps(report))
