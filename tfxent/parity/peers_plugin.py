"""The pytest plugin that `tfxent.parity.peers` loads into each run of a peer suite.

Set by the environment of the child pytest (peers.py sets it):

* `TFXENT_PEERS_PATCH=1`: `tfxent.patch()` once collection has imported every test module,
  so module-level references that the suite's imports created are replaced too;
* `TFXENT_PEERS_DETERMINISM=1`: `tf.config.experimental.enable_op_determinism()` first;
* `TFXENT_PEERS_SELECT=<json>`: {file name: substring}: in that file, run only the tests
  whose name contains the substring (the part of a large file that reaches the functions);
* `TFXENT_PEERS_REPORT=<path>`: where to write the JSON report: each test's outcome, its
  failure message, its time, and how many of tfxent's ops and of TF's xent ops it created or
  executed.

Ops are counted with TF's op callbacks, which see every op executed eagerly and every op
placed in a graph (v1 graphs and `tf.function` traces alike), so the counts prove which
kernels a test used without trusting any wrapper of ours.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

TF_XENT_OPS = frozenset({"SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits"})
# tfxent._op_names.PREFIX, spelled out: importing tfxent would register its ops in the plain
# runs, which must see TensorFlow alone.
TFXENT_PREFIX = "Tfxent"

_counts: Counter = Counter()
_results: dict[str, dict] = {}


def _count(op_type, inputs, attrs, outputs, op_name=None, graph=None):  # noqa: ARG001
    name = op_type.decode() if isinstance(op_type, bytes) else str(op_type)
    if name in TF_XENT_OPS:
        _counts["tf"] += 1
    elif name.startswith(TFXENT_PREFIX):
        _counts["tfxent"] += 1
    return None  # outputs unchanged


def pytest_configure(config: pytest.Config) -> None:
    import tensorflow as tf
    from tensorflow.python.framework import op_callbacks

    if os.environ.get("TFXENT_PEERS_DETERMINISM") == "1":
        tf.config.experimental.enable_op_determinism()
    op_callbacks.add_op_callback(_count)


def pytest_collection_finish(session: pytest.Session) -> None:
    if os.environ.get("TFXENT_PEERS_PATCH") == "1":
        import tfxent

        tfxent.patch()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list):
    select = json.loads(os.environ.get("TFXENT_PEERS_SELECT") or "{}")
    kept, dropped = [], []
    for item in items:
        fragment = select.get(item.path.name)
        (dropped if fragment and fragment not in item.name else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    before = Counter(_counts)
    yield
    ops = {kind: _counts[kind] - before[kind] for kind in ("tfxent", "tf")}
    entry = _results.setdefault(item.nodeid, {"outcome": "passed"})
    entry.update(ops=ops, file=str(item.path))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _results.setdefault(report.nodeid, {"outcome": "passed"})
    entry["seconds"] = round(entry.get("seconds", 0.0) + report.duration, 3)
    if report.skipped:
        entry["outcome"] = "skipped"
    elif report.failed:
        entry["outcome"] = "failed" if report.when == "call" else "error"
        crash = getattr(report.longrepr, "reprcrash", None)
        entry["message"] = crash.message if crash else str(report.longrepr).splitlines()[-1]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("TFXENT_PEERS_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump({"tests": _results, "exit_status": int(exitstatus)}, out, indent=1)
