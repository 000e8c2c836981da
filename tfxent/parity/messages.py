"""Compare TF's exception with tfxent's: the class, and TF's message fragment
(docs/tf_behaviour.md#errors).

TF's messages carry op and node names, call sites and generated function names that
tfxent's messages name differently; the fragment that remains after removing them is what
users match on, and it must appear in tfxent's message.
"""

from __future__ import annotations

import re

# Parts of error messages that name TF's own ops or nodes.
_NOISE = (
    re.compile(r"\{\{function_node [^}]*\}\}\s*"),
    re.compile(r"\s*\[Op:[^\]]*\].*$", re.S),
    re.compile(r" for '\{\{node .*$", re.S),
    re.compile(r"\n\s*\[\[\{\{node.*$", re.S),
    re.compile(r"; NodeDef: .*$", re.S),
    re.compile(r"\n\t$"),
)

# Generated function names differ between two traces of the same function.
_FUNCTION_IDS = re.compile(r"__inference_[A-Za-z0-9_<>]+?_\d+(\[[^\]]*\])?")

# An op's dtype check: which attr it names when several inputs have disallowed dtypes
# varies between TF processes (its attr validation walks a hash map; measured on 2.21 with
# sparse float labels and int logits), so any such message stands for any other.
_ATTR_NOT_ALLOWED = re.compile(r"Value for attr '\w+' of \w+ is not in the list of allowed values")

# "No OpKernel was registered ... with these attrs: [...]" lists a node's attrs in hash-map
# order too, which differs between processes (TF 2.12, GatherV2 with int16 indices).
_ATTR_LIST = re.compile(r"(with these attrs: \[)([^\]]*)(\])")


def normalized(text: str) -> str:
    return _FUNCTION_IDS.sub("__inference_<fn>", text)


def message_fragment(error: BaseException) -> str:
    """The user-facing part of a TF error message, without op/node names and call sites.

    Graph-mode errors wrap the message in "Graph execution error:", a "Detected at node"
    trace of indented `File` lines (or "<stack traces unavailable>" for a node that Grappler
    rewrote) and a "Node:" line; the message is the first line that is none of those.
    """
    text = str(error)
    if text.startswith("Graph execution error"):
        skipped = (
            "Graph execution error",
            "Detected at node",
            "<stack traces unavailable>",
            "Node: ",
            " ",
            "\t",
        )
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.strip() and not line.startswith(skipped):
                text = "\n".join(lines[i:])
                break
    for pattern in _NOISE:
        text = pattern.sub("", text)
    return normalized(text.strip().split("\n")[0])


def _sorted_attrs(text: str) -> str:
    return _ATTR_LIST.sub(lambda m: m[1] + ", ".join(sorted(m[2].split(", "))) + m[3], text)


def _same_message(fragment: str, ours: str) -> bool:
    if _ATTR_NOT_ALLOWED.match(fragment):
        return _ATTR_NOT_ALLOWED.search(ours) is not None
    return _sorted_attrs(fragment) in _sorted_attrs(ours)


def compare_errors(
    label: str, ours: BaseException | None, theirs: BaseException | None
) -> list[str]:
    """Problems with tfxent's exception against TF's (none when both are None)."""
    if ours is None and theirs is None:
        return []
    if ours is None or theirs is None:
        return [f"{label}: tfxent raised {ours!r} but TF raised {theirs!r}"]
    problems = []
    if type(ours) is not type(theirs):
        problems.append(
            f"{label}: tfxent raised {type(ours).__name__}, TF raised {type(theirs).__name__}"
            f" ({message_fragment(theirs)[:200]})"
        )
    fragment = message_fragment(theirs)
    if fragment and not _same_message(fragment, normalized(str(ours))):
        problems.append(f"{label}: message {fragment[:300]!r} not in tfxent's {str(ours)[:300]!r}")
    return problems
