"""Runtime audit: the call sites where a v1 → v2 migration, op determinism or a device change
would silently alter training, recorded while the real program runs (docs/migration.md).

    with tfxent.audit():          # or TFXENT_AUDIT=1 for the whole process (json: =json;
        train()                   # TFXENT_AUDIT_FILE=path writes the report to a file)

The report goes to stderr when the block exits (at process exit for TFXENT_AUDIT), or is
returned on demand by `Audit.report()` (`report()` here: the running audit's).

Each call of a tfxent function is checked at the user's call site (file:line, tfxent's,
TensorFlow's and Keras' frames skipped, autograph's source map applied) for:

* `v1-labels-trainable` (risk): the v1 dense function's labels depend on trainable
  variables, which it keeps out of the gradient and a plain v2 call would train. Graph mode
  (tf.function, v1 graphs) walks the graph from the labels to the variables they are read
  from along differentiable paths and names those (all inputs of function-call and
  control-flow ops are followed, so through them it is a superset). Eager tensors have no
  provenance: a label tensor that an active `tf.GradientTape` records is reported with the
  trainable variables that tape watches (`exact: false`: a superset; trace the step with
  tf.function for exact names).
* `labels-not-normalized`, `labels-zero-rows` (warning): TF's kernel gradient `softmax −
  labels` is the true gradient only for rows that sum to 1, and op determinism changes it.
* `labels-broadcast` (warning): dense labels whose shape differs from the logits' shape.
* `sparse-labels-out-of-range` (risk): an error on CPU (recorded before it is raised), a
  silent NaN on GPU and under XLA.

Values are read in eager mode on every call (one host copy of the labels). In graph mode
only constant labels are checked, since the audit adds nothing to the user's graph by
default; `audit(graph_values=True)` adds a host-side check op to tf.function graphs (not
to XLA-compiled functions or v1 graphs, where it would not compile or not run); it stays in
functions traced during the audit, as a no-op once the audit ends. With no audit running
no observer is registered and a call costs one falsy check.

Modules: _recording.py (the `Audit` that observes calls), _checks.py (what one call is
checked for), _report.py (the findings and the report).
"""

from tfxent._audit._recording import (
    Audit,
    audit,
    from_environment,
    report,
    start_from_environment,
)
from tfxent._audit._report import CODES, Finding

__all__ = [
    "CODES",
    "Audit",
    "Finding",
    "audit",
    "from_environment",
    "report",
    "start_from_environment",
]
