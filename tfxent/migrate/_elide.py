"""Leaving out of the analysis the function and class bodies that cannot hold a site.

Scope analysis and positions cost time in proportion to the whole module, while the sites
sit in a few functions. A top-level function or class (or a method) whose body spells neither
"cross_entropy" nor an alias an import gives one of those names has nothing to rewrite or
report; unless it declares `global` or
`nonlocal`, its names are its own. Its body is replaced, for the analysis only, by one call
that reads each imported name the body mentions (so an import it uses still counts as
used) followed by empty lines, so every later line keeps its number. The original bodies go back
into the rewritten module before its code is produced.
"""

from __future__ import annotations

import keyword
import re

import libcst as cst

_MARK = "__tfxent_elided_"
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_KEEP = r"cross_entropy|\bglobal\b|\bnonlocal\b"
_ALIAS = re.compile(r"\bas\s+(\w+)")
# The rest of each import statement: every name an import binds is an identifier in it.
_IMPORTED = re.compile(r"\bimport\b[ \t]*(\([^)]*\)|[^\n;]*)")


def _placeholder(
    module: cst.Module, body: cst.IndentedBlock, number: int, imported: set[str]
) -> cst.IndentedBlock:
    code = module.code_for_node(body)
    names = sorted(imported.intersection(_IDENTIFIER.findall(code)))
    call = cst.Call(cst.Name(f"{_MARK}{number}"), [cst.Arg(cst.Name(n)) for n in names])
    empty = cst.EmptyLine(indent=False)
    return body.with_changes(
        body=[cst.SimpleStatementLine([cst.Expr(call)])],
        footer=[empty] * (code.count("\n") - 2),
    )


def elide(module: cst.Module) -> tuple[cst.Module, list[cst.IndentedBlock]]:
    """The module with the bodies that cannot hold a site replaced; the originals."""
    originals: list[cst.IndentedBlock] = []
    imports = _IMPORTED.findall(module.code)
    imported = {
        n for rest in imports for n in _IDENTIFIER.findall(rest) if not keyword.iskeyword(n)
    }
    # `from tensorflow.nn import softmax_cross_entropy_with_logits as xent`: xent is a site.
    aliases = {a for rest in imports if "cross_entropy" in rest for a in _ALIAS.findall(rest)}
    keep = re.compile("|".join([_KEEP, *(rf"\b{a}\b" for a in sorted(aliases))]))

    def reduce(statements):
        out = []
        for statement in statements:
            body = getattr(statement, "body", None)
            if isinstance(statement, cst.FunctionDef | cst.ClassDef) and isinstance(
                body, cst.IndentedBlock
            ):
                if not keep.search(module.code_for_node(body)):
                    statement = statement.with_changes(
                        body=_placeholder(module, body, len(originals), imported)
                    )
                    originals.append(body)
                elif isinstance(statement, cst.ClassDef):
                    statement = statement.with_changes(
                        body=body.with_changes(body=reduce(body.body))
                    )
            out.append(statement)
        return out

    return module.with_changes(body=reduce(module.body)), originals


def restore(module: cst.Module, originals: list[cst.IndentedBlock]) -> cst.Module:
    """Put the original bodies back into a module made from :func:`elide`'s output."""
    if not originals:
        return module

    def put_back(statements):
        out = []
        for statement in statements:
            body = getattr(statement, "body", None)
            if isinstance(body, cst.IndentedBlock) and body.body:
                number = _marker(body.body[0])
                if number is not None:
                    statement = statement.with_changes(body=originals[number])
                elif isinstance(statement, cst.ClassDef):
                    statement = statement.with_changes(
                        body=body.with_changes(body=put_back(body.body))
                    )
            out.append(statement)
        return out

    return module.with_changes(body=put_back(module.body))


def _marker(statement: cst.CSTNode) -> int | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        expr = statement.body[0]
        if isinstance(expr, cst.Expr) and isinstance(expr.value, cst.Call):
            func = expr.value.func
            if isinstance(func, cst.Name) and func.value.startswith(_MARK):
                return int(func.value[len(_MARK) :])
    return None
