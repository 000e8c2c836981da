"""SavedModels that use tfxent: export with a hint for loaders, or export portably.

A SavedModel traced through tfxent's custom op names the op (`TfxentSoftmaxXent`, …) in its
functions, so it loads only in a process where tfxent's ops are registered: `import tfxent`
before `tf.saved_model.load`, and gradients of the loaded functions use tfxent's registered
gradients. Two exports are offered:

* `save(obj, export_dir)`: `tf.saved_model.save`, then `add_import_hint`. TF's loader checks
  the op types of a function's nodes in order and stops at the first it does not know, and
  that op type is all its error names. The hint puts a node of type `IMPORT_HINT_OP`
  (registered, with a kernel that does nothing, by tfxent's op library) first in every
  function that uses tfxent's ops, so a process without tfxent fails with
  "Op type not registered 'Tfxent>ImportTfxentBeforeLoadingThisSavedModel' …".
* `save(obj, export_dir, portable=True)`: traces with the composite path (TF primitives
  only: `_backend.composite_only` while tracing), so the SavedModel loads and trains
  anywhere, without tfxent. TF traces a `tf.function` again when it saves it, but a concrete
  function obtained before (`get_concrete_function()`, e.g. passed as `signatures`) keeps
  what it traced; `save` refuses to call such a model portable. For Keras's `model.export`
  or `ExportArchive.write_out`, which trace while writing, use
  `with portable_export(export_dir):`, which checks the same.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import node_def_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

from tfxent import _backend, _op_names, _versions

__all__ = [
    "IMPORT_HINT_OP",
    "add_import_hint",
    "custom_ops",
    "load",
    "portable_export",
    "register_ops",
    "save",
]

IMPORT_HINT_OP = "Tfxent>ImportTfxentBeforeLoadingThisSavedModel"
_HINT_NODE = "import_tfxent_before_loading_this_saved_model"
_PROTO = "saved_model.pb"


def register_ops() -> None:
    """Register tfxent's ops with TF (building them on first use), as loading needs."""
    if _backend.op_library() is None:
        raise RuntimeError(
            f"tfxent: cannot load a SavedModel that uses tfxent's ops: {_backend.load_error()}"
        )


def load(export_dir, tags=None, options=None):
    """`tf.saved_model.load` after registering tfxent's ops."""
    register_ops()
    return tf.saved_model.load(export_dir, tags=tags, options=options)


def _read(export_dir) -> saved_model_pb2.SavedModel:
    path = Path(export_dir) / _PROTO
    if not path.is_file():
        raise FileNotFoundError(
            f"tfxent: no {_PROTO} in {export_dir} (not a SavedModel, or one written in a "
            "chunked format tfxent does not edit)"
        )
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(path.read_bytes())
    return proto


def _node_lists(proto: saved_model_pb2.SavedModel):
    """Every list of nodes in the SavedModel: each meta graph's graph and its functions."""
    for meta_graph in proto.meta_graphs:
        yield meta_graph.graph_def.node
        for function in meta_graph.graph_def.library.function:
            yield function.node_def


def custom_ops(export_dir) -> set[str]:
    """The types of tfxent's ops the SavedModel at `export_dir` uses (empty when portable)."""
    return {
        node.op
        for nodes in _node_lists(_read(export_dir))
        for node in nodes
        if node.op.startswith(_op_names.PREFIX) and node.op != IMPORT_HINT_OP
    }


def _hint_registered() -> bool:
    return _backend.op_library() is not None and op_def_registry.get(IMPORT_HINT_OP) is not None


def _rewrite_fingerprint(export_dir, serialized: bytes) -> None:
    """fingerprint.pb hashes saved_model.pb; write it again for the edited proto."""
    if not (Path(export_dir) / "fingerprint.pb").exists():
        return
    try:
        from tensorflow.python.saved_model import fingerprinting_utils
    except ImportError:  # TF 2.12: no fingerprinting_utils
        return
    if _versions.has("fingerprint_takes_proto"):
        fingerprinting_utils.write_fingerprint(str(export_dir), serialized)
    else:
        fingerprinting_utils.write_fingerprint(str(export_dir))


def add_import_hint(export_dir) -> bool:
    """Put a node of type `IMPORT_HINT_OP` first in every graph and function of the SavedModel
    at `export_dir` that uses tfxent's ops, so loading it without tfxent fails with a message
    that says to import tfxent. Idempotent. Returns whether the model has the hint now.
    """
    proto = _read(export_dir)
    targets = [
        nodes
        for nodes in _node_lists(proto)
        if any(node.op.startswith(_op_names.PREFIX) and node.op != IMPORT_HINT_OP for node in nodes)
    ]
    if not targets:
        return False
    if not _hint_registered():
        warnings.warn(
            f"tfxent: this build registers no {IMPORT_HINT_OP} op, so {export_dir} gets no "
            "loading hint; without tfxent imported, TF's error names only the Tfxent op",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    changed = False
    for nodes in targets:
        if nodes and nodes[0].op == IMPORT_HINT_OP:
            continue
        nodes.insert(0, node_def_pb2.NodeDef(name=_HINT_NODE, op=IMPORT_HINT_OP))
        changed = True
    if changed:
        path = Path(export_dir) / _PROTO
        temporary = path.with_name(path.name + ".tfxent-tmp")
        serialized = proto.SerializeToString(deterministic=True)
        temporary.write_bytes(serialized)
        os.replace(temporary, path)
        _rewrite_fingerprint(export_dir, serialized)
    return True


def _ensure_portable(export_dir) -> None:
    used = custom_ops(export_dir)
    if used:
        raise ValueError(
            f"tfxent: {export_dir} is not portable: it uses {sorted(used)} from functions "
            "traced before the export (concrete functions, signatures, an ExportArchive "
            "written before). Trace them inside `with tfxent.saved_model.portable_export():`"
        )


@contextlib.contextmanager
def portable_export(export_dir=None) -> Iterator[None]:
    """Trace with tfxent's composite path (TF primitives only) inside the block.

    Applies to what this thread traces inside the block (`_backend.composite_only`; other
    threads keep the custom op).
    Concrete functions traced before keep what they traced; given the `export_dir` the block
    writes, the block raises ValueError at its end if the SavedModel there still uses
    tfxent's custom op.

    >>> with tfxent.saved_model.portable_export("model"):  # doctest: +SKIP
    ...     model.export("model")
    """
    with _backend.composite_only("tfxent.saved_model.portable_export"):
        yield
    if export_dir is not None:
        _ensure_portable(export_dir)


def save(obj, export_dir, signatures=None, options=None, *, portable: bool = False) -> None:
    """`tf.saved_model.save` for objects whose functions use tfxent.

    Args:
      obj, export_dir, signatures, options: as for `tf.saved_model.save`.
      portable: trace with TF primitives only, so that the SavedModel loads without tfxent.
        Raises ValueError, after writing, if a concrete function traced before the call kept
        tfxent's custom op. Otherwise the model gets the loading hint of `add_import_hint`.
    """
    if not portable:
        tf.saved_model.save(obj, export_dir, signatures=signatures, options=options)
        add_import_hint(export_dir)
        return
    with portable_export(export_dir):
        tf.saved_model.save(obj, export_dir, signatures=signatures, options=options)
