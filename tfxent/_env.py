"""Every environment switch tfxent reads, declared once: name, default and meaning.

`python -m tfxent doctor` prints this list with the values it finds, and the README's table
of switches is checked against it (tests/core/test_env.py). The modules that read a switch
use `value` or `flag` with a name declared here, so an undeclared name is an error. No
TensorFlow here: the command line reads it before anything imports TF.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Switch:
    name: str
    default: str  # what applies when the variable is unset, as the README shows it
    meaning: str


SWITCHES = (
    Switch(
        "TFXENT_REQUIRE_OP",
        "unset",
        "1: a failure to build or load the custom op is an error instead of a warning and a "
        "fallback to the composite path (CI and the tests set it)",
    ),
    Switch(
        "TFXENT_FORCE_COMPOSITE",
        "unset",
        "1: compute every call with the composite path of TF primitives",
    ),
    Switch(
        "TFXENT_FAST_BACKPROP",
        "unset",
        "1: the dense float32/float64 gradient in one pass over each row instead of TF's "
        "three-pass Eigen expression: faster, within a few ulp of TF instead of bit-identical "
        "(docs/exactness.md); read when the gradient is built",
    ),
    Switch(
        "TFXENT_CACHE_DIR",
        "$XDG_CACHE_HOME/tfxent",
        "where compiled ops are cached",
    ),
    Switch(
        "TFXENT_SANITIZE",
        "unset",
        "address: build and load an AddressSanitizer variant of the op, under its own cache "
        "key (the process must preload the ASan runtime)",
    ),
    Switch(
        "TFXENT_AUDIT",
        "unset",
        "1 (or json): record v1 -> v2 migration hazards while the program runs and report "
        "them at exit (tfxent.audit)",
    ),
    Switch(
        "TFXENT_AUDIT_FILE",
        "stderr",
        "write the TFXENT_AUDIT report to this file",
    ),
    Switch(
        "TFXENT_FROM_SOURCE",
        "unset",
        "1: ignore the wheel's prebuilt op and compile on first use",
    ),
    Switch(
        "TFXENT_ISA",
        "tf",
        "tf: TF's own instruction set, as the prebuilt op (bit-identical to TF); native: "
        "-march=native, compiled locally, not bit-identical to TF",
    ),
    Switch("CXX", "c++", "the C++ compiler that builds the op"),
)
_BY_NAME = {switch.name: switch for switch in SWITCHES}

# Variables tfxent sets for its own child processes: the peer-suite runner tells its pytest
# plugin what to do (tfxent/parity/peers_plugin.py). Not user switches, so not in the
# README's table.
INTERNAL = (
    "TFXENT_PEERS_PATCH",
    "TFXENT_PEERS_DETERMINISM",
    "TFXENT_PEERS_SELECT",
    "TFXENT_PEERS_REPORT",
)


def value(name: str) -> str | None:
    """The variable's value, or None when unset; `name` must be declared above."""
    if name not in _BY_NAME:
        raise KeyError(f"tfxent: {name} is not a declared switch (tfxent/_env.py)")
    return os.environ.get(name)


def flag(name: str) -> bool:
    """True when the switch is set to exactly "1"."""
    return value(name) == "1"
