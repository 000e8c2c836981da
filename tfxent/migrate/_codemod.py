"""The LibCST codemod: v1 softmax cross-entropy calls -> v2 calls with the same semantics."""

from __future__ import annotations

import re
from collections.abc import Mapping

import libcst as cst
from libcst.codemod import CodemodContext, VisitorBasedCodemodCommand
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor
from libcst.helpers import get_full_name_for_node
from libcst.metadata import PositionProvider, ScopeProvider

from tfxent.migrate._calls import plan_args
from tfxent.migrate._names import (
    DENSE,
    DENSE_V2_HELPER,
    PARTIAL_NAMES,
    SPARSE,
    STOP_GRADIENT_NAMES,
    TF_MODULES,
    Kind,
    Target,
    classify,
    v2_function_name,
)
from tfxent.migrate._options import DEFAULT_OPTIONS, PRAGMA, Options
from tfxent.migrate._report import Finding, Risk

_CALL_CODES = {
    Kind.DENSE_V1: "v1-dense-call",
    Kind.DENSE_V2_HELPER: "v2-helper-call",
    Kind.SPARSE_V1: "sparse-call",
}
_FRESH_NAMES = ("tf", "tensorflow", "tf2", "tf_")


class _TfName:
    """A name bound to a TensorFlow module, and how to spell things through it."""

    def __init__(self, name: str, modules: frozenset[str]) -> None:
        self.name = name
        self.is_v1 = "tensorflow.compat.v1" in modules

    def v2_nn(self, function: str, *, explicit: bool = False) -> str:
        # Under ``import tensorflow.compat.v1 as tf``, tf.nn is still the v1 API; and a call
        # whose labels' gradient must flow is spelled ``compat.v2`` (``explicit``), the one
        # name that means the v2 function in TF 1.x as in TF 2.x, so that the output reads
        # the same to a second run of the codemod (idempotence) and to a TF 1.x reader.
        middle = ".compat.v2.nn." if self.is_v1 or explicit else ".nn."
        return self.name + middle + function

    def v1_nn(self, function: str) -> str:
        return self.name + (".nn." if self.is_v1 else ".compat.v1.nn.") + function

    def stop_gradient(self) -> str:
        return self.name + ".stop_gradient"


class XentMigrationCommand(VisitorBasedCodemodCommand):
    """Rewrite TF 1.x softmax cross-entropy calls to the TF 2 API, keeping their semantics."""

    DESCRIPTION = (
        "Rewrite TF 1.x softmax cross-entropy calls to the TF 2 API with identical semantics "
        "(labels' gradient stopped as v1 did), and report the sites it cannot rewrite."
    )
    # Qualified names come from the scopes on demand, for the few nodes whose name can be
    # one that matters (QualifiedNameProvider would visit every node of the module again).
    METADATA_DEPENDENCIES = (ScopeProvider, PositionProvider)

    def __init__(
        self,
        context: CodemodContext,
        *,
        path: str = "<string>",
        options: Options = DEFAULT_OPTIONS,
        unparsed_imports: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(context)
        # A name whose import is in text that could not be parsed -> where that text is.
        self.unparsed_imports = unparsed_imports or {}
        self.path = path
        self.pin_v1 = options.pin_v1
        self.tf0_order = options.tf0_order
        self.findings: list[Finding] = []
        self._callees: set[int] = set()  # id() of every Call.func in the original tree
        self._arg_of: dict[int, cst.Call] = {}  # id(argument value) -> the call it is passed to
        self._assigned: set[int] = set()  # id() of right-hand sides of assignments
        self._discarded: set[int] = set()  # id() of expression statements' values
        self._replace: dict[int, cst.BaseExpression] = {}  # pinned references
        self._lines: list[str] = []
        self._names_of_interest: set[str] = set()
        self._used_names: set[str] | None = None
        self._fresh: _TfName | None = None

    # -- helpers -------------------------------------------------------------------------

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        code = tree.code
        self._lines = code.splitlines()
        # An alias (`import ... as x`) may name any of them; other names cannot.
        self._names_of_interest = _NAMES_OF_INTEREST | set(_AS_ALIAS.findall(code))
        return super().transform_module_impl(tree)

    def _code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def _ignored(self, node: cst.CSTNode) -> bool:
        pos = self.get_metadata(PositionProvider, node)
        return any(PRAGMA in line for line in self._lines[pos.start.line - 1 : pos.end.line])

    def _report(
        self, node: cst.CSTNode, risk: Risk, code: str, message: str, rewritten: bool
    ) -> None:
        pos = self.get_metadata(PositionProvider, node).start
        self.findings.append(
            Finding(self.path, pos.line, pos.column + 1, risk, code, message, rewritten)
        )

    def _qualified(self, node: cst.CSTNode) -> set[str]:
        if isinstance(node, cst.Attribute):
            last = node.attr.value
        elif isinstance(node, cst.Name):
            last = node.value
        else:
            return set()
        if last not in self._names_of_interest:
            return set()
        scope = self.get_metadata(ScopeProvider, node, None)
        return {q.name for q in scope.get_qualified_names_for(node)} if scope else set()

    def _target(self, node: cst.CSTNode) -> Target | None:
        targets = [t for t in map(classify, self._qualified(node)) if t is not None]
        if not targets or len({t.kind for t in targets}) > 1:
            return None
        # e.g. ``try: import tensorflow.compat.v1 as tf / except: import tensorflow as tf``
        return Target(
            targets[0].kind,
            " | ".join(sorted(t.qualified_name for t in targets)),
            any(t.changes_on_tf2 for t in targets),
            all(t.via_public_nn for t in targets),
        )

    def _unresolved(self, node: cst.CSTNode) -> bool:
        """``tf.nn.X`` where ``tf`` is bound by nothing this file shows (a star import...)."""
        if self._qualified(node):
            return False
        head, _, tail = (get_full_name_for_node(node) or "").partition(".")
        return (
            head in ("tf", "tensorflow")
            and tail.startswith(("nn.", "compat.v1.nn."))
            and tail.rsplit(".", 1)[-1] in _V1_NAMES.values()
        )

    def _report_unresolved(self, node: cst.CSTNode) -> None:
        code = self._code(node)
        head = code.split(".")[0]
        where = self.unparsed_imports.get(head)
        if where is not None:
            why = f"`{head}` is imported in {where}, which could not be parsed"
        else:
            why = f"no import in this file binds `{head}` (a star import?)"
        message = f"`{code}`: {why}, so which API it is cannot be told; not rewritten"
        self._report(node, Risk.RISK, "unresolved-name", message, rewritten=False)

    def _tf_name(self, node: cst.CSTNode) -> _TfName:
        """A name for TensorFlow visible at ``node``; schedules an import if there is none."""
        scope = self.get_metadata(ScopeProvider, node)
        module_scope = scope.globals if scope is not None else None
        best: list[tuple[bool, bool, str, frozenset[str]]] = []  # min(): tensorflow, then "tf"
        for assignment in module_scope.assignments if module_scope is not None else ():
            name = assignment.name
            modules = frozenset(q.name for q in module_scope.get_qualified_names_for(name))
            if not modules or not modules <= TF_MODULES:
                continue
            here = frozenset(q.name for q in scope.get_qualified_names_for(name))
            if here != modules:
                continue  # shadowed where the call is
            best.append(("tensorflow.compat.v1" in modules, name != "tf", name, modules))
        if best:
            _, _, name, modules = min(best)
            return _TfName(name, modules)
        if self._fresh is None:
            used = self._all_names()
            name = next(n for n in _FRESH_NAMES if n not in used)
            AddImportsVisitor.add_needed_import(
                self.context, "tensorflow", asname=None if name == "tensorflow" else name
            )
            self._fresh = _TfName(name, frozenset({"tensorflow"}))
        return self._fresh

    def _all_names(self) -> set[str]:
        if self._used_names is None:
            scopes = {s for s in self.metadata[ScopeProvider].values() if s is not None}
            self._used_names = set()
            for s in scopes:
                self._used_names.update(a.name for a in s.assignments)
                self._used_names.update(
                    a.node.value for a in s.accesses if isinstance(a.node, cst.Name)
                )
        return self._used_names

    def _is_stopped(self, expr: cst.BaseExpression) -> bool:
        return isinstance(expr, cst.Call) and bool(self._qualified(expr.func) & STOP_GRADIENT_NAMES)

    # -- bookkeeping visits ----------------------------------------------------------------

    def visit_Import(self, node: cst.Import) -> bool:
        return False  # an import is not a use

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def visit_Call(self, node: cst.Call) -> bool:
        self._callees.add(id(node.func))
        for arg in node.args:
            self._arg_of[id(arg.value)] = node
        return True

    def visit_Assign(self, node: cst.Assign) -> bool:
        self._assigned.add(id(node.value))
        return True

    def visit_Expr(self, node: cst.Expr) -> bool:
        self._discarded.add(id(node.value))
        return True

    def visit_AnnAssign(self, node: cst.AnnAssign) -> bool:
        if node.value is not None:
            self._assigned.add(id(node.value))
        return True

    # -- references: anything but a direct call --------------------------------------------

    def visit_Name(self, node: cst.Name) -> bool:
        self._check_reference(node)
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        return not self._check_reference(node)

    def _check_reference(self, node: cst.Name | cst.Attribute) -> bool:
        if id(node) in self._callees:
            return False
        target = self._target(node)
        if target is None and self._unresolved(node) and not self._ignored(node):
            self._report_unresolved(node)
            return True
        if target is None or self._ignored(node):
            return target is not None
        owner = self._arg_of.get(id(node))
        if owner is not None and self._qualified(owner.func) & PARTIAL_NAMES:
            code, how = "partial-reference", "bound with functools.partial"
        elif owner is not None:
            code, how = "passed-reference", f"passed to `{self._code(owner.func)}`"
        elif id(node) in self._assigned:
            code, how = "stored-reference", "stored in a variable"
        elif id(node) in self._discarded:
            text = f"`{self._code(node)}` is evaluated and discarded: nothing to change"
            self._report(node, Risk.INFO, "discarded-reference", text, rewritten=False)
            return True
        else:
            code, how = "reference", "used without being called"
        text = f"`{self._code(node)}` {how}: its calls are not rewritten. "
        if not target.changes_on_tf2:
            self._report(node, Risk.INFO, code, text + _SAME_ON_TF2, rewritten=False)
        elif self.pin_v1:
            spelled = self._tf_name(node).v1_nn(_V1_NAMES[target.kind])
            self._replace[id(node)] = cst.parse_expression(spelled)
            RemoveImportsVisitor.remove_unused_import_by_node(self.context, node)
            msg = f"pinned to `{spelled}`, which keeps the TF 1.x semantics on TF 2"
            self._report(node, Risk.SAFE, code, text + msg, rewritten=True)
        else:
            self._report(node, Risk.RISK, code, text + _changes_message(target), rewritten=False)
        return True

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        return self._replace.get(id(original_node), updated_node)

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        return self._replace.get(id(original_node), updated_node)

    # -- calls ----------------------------------------------------------------------------

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        target = self._target(original_node.func)
        if target is None or self._ignored(original_node):
            if target is None and self._unresolved(original_node.func):
                if not self._ignored(original_node):
                    self._report_unresolved(original_node.func)
            return updated_node
        plan = plan_args(
            target.kind,
            original_node.args,
            updated_node.args,
            is_stopped=self._is_stopped,
            tf0_order=self.tf0_order,
            stop=lambda value: cst.Call(
                func=cst.parse_expression(self._tf_name(original_node).stop_gradient()),
                args=[cst.Arg(value=value)],
            ),
        )
        if plan.args is None:
            return self._not_rewritten(original_node, updated_node, target, plan.problem)
        callee = self._code(original_node.func)
        func = self._new_callee(target, original_node, updated_node)
        changes = list(plan.changes)
        if func is not updated_node.func:
            changes.insert(0, f"`{callee}` -> `{self._code(func)}`")
            RemoveImportsVisitor.remove_unused_import_by_node(self.context, original_node.func)
        if not changes:
            return updated_node  # already in its v2 form
        summary = "; ".join(changes)
        if plan.problem is not None:  # rewritten, on an assumption a human should confirm
            code, note = plan.problem
            self._report(original_node, Risk.RISK, code, f"{note}. Rewritten: {summary}", True)
        else:
            code = _CALL_CODES[target.kind]
            self._report(original_node, Risk.SAFE, code, summary, rewritten=True)
        return updated_node.with_changes(func=func, args=plan.args)

    def _not_rewritten(
        self,
        original: cst.Call,
        updated: cst.Call,
        target: Target,
        problem: tuple[str, str] | None,
    ) -> cst.Call:
        code, message = problem or ("unrewritable", "cannot be rewritten")
        text = f"`{self._code(original.func)}`: {message}."
        if code != "star-args":  # the call raised in TF 1.x or its order is in doubt
            self._report(original, Risk.RISK, code, text, rewritten=False)
        elif not target.changes_on_tf2:
            self._report(original, Risk.INFO, code, f"{text} {_SAME_ON_TF2}", rewritten=False)
        elif self.pin_v1:
            spelled = self._tf_name(original).v1_nn(_V1_NAMES[target.kind])
            RemoveImportsVisitor.remove_unused_import_by_node(self.context, original.func)
            pinned = f"{text} Pinned to `{spelled}`, which keeps the TF 1.x semantics on TF 2"
            self._report(original, Risk.SAFE, code, pinned, rewritten=True)
            return updated.with_changes(func=cst.parse_expression(spelled))
        else:
            message = f"{text} {_changes_message(target)}"
            self._report(original, Risk.RISK, code, message, rewritten=False)
        return updated

    def _new_callee(
        self, target: Target, original: cst.Call, updated: cst.Call
    ) -> cst.BaseExpression:
        if target.via_public_nn and target.kind is not Kind.DENSE_V2_HELPER:
            return updated.func  # ``tensorflow.nn.X`` already names the v2 function on TF 2
        explicit = target.kind is Kind.DENSE_V2_HELPER  # tf.nn.X would read as v1 again
        spelled = self._tf_name(original).v2_nn(v2_function_name(target.kind), explicit=explicit)
        return cst.parse_expression(spelled)


_SAME_ON_TF2 = (
    "This name keeps its TF 1.x semantics on TF 2 (a `_sentinel=` argument passed through it "
    "raises TypeError on TF >= 2.12)"
)


def _changes_message(target: Target) -> str:
    if target.kind is Kind.DENSE_V2_HELPER:
        return (
            "On TF 2 this name does not exist (AttributeError): use "
            "tf.compat.v2.nn.softmax_cross_entropy_with_logits (same semantics, axis= for dim=)"
        )
    return (
        "On TF 2 this name is the v2 function, whose labels' gradient flows (v1 stopped it): "
        "call tf.nn.softmax_cross_entropy_with_logits with labels=tf.stop_gradient(labels), "
        "or keep v1 with tf.compat.v1.nn.softmax_cross_entropy_with_logits (--pin-v1)"
    )


# The last component of every qualified name the codemod asks about.
_NAMES_OF_INTEREST = frozenset(
    {DENSE, DENSE_V2_HELPER, DENSE_V2_HELPER + "_helper", SPARSE}
    | {name.rsplit(".", 1)[1] for name in STOP_GRADIENT_NAMES | PARTIAL_NAMES}
)
_AS_ALIAS = re.compile(r"\bas\s+(\w+)")

# Names in ``tf.compat.v1.nn`` (pinning keeps the v1 function).
_V1_NAMES = {Kind.DENSE_V1: DENSE, Kind.DENSE_V2_HELPER: DENSE_V2_HELPER, Kind.SPARSE_V1: SPARSE}
