"""`python -m tfxent doctor`: what tfxent would use here, and why."""

from __future__ import annotations

import argparse
import json
import platform
import sys

from tfxent import _env

DESCRIPTION = """\
Show TF, the compiler, the build cache, the op's status and the backend in use

Print the TensorFlow version, the load ladder (the wheel's prebuilt op, the op compiled on
first use, the composite path): which rung was taken and why each higher rung was not; the
compiler and build cache; which implementation each visible device gets; and the
environment switches (tfxent/_env.py) with their values. Exit status 1 when the custom op
cannot be used.
"""


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _devices() -> dict[str, str]:
    """The implementation a call gets with no device scope and under each visible device."""
    import tensorflow as tf

    from tfxent import _backend

    probe = tf.zeros([1, 1])
    table = {}
    for scope in [None, *(d.name for d in tf.config.list_logical_devices())]:
        if scope is None:
            choice = _backend.choose(probe)
        else:
            with tf.device(scope):
                choice = _backend.choose(probe)
        detail = "" if choice.reason == "default" else f" ({choice.reason})"
        table[scope or "(no device scope)"] = choice.backend + detail
    return table


def report() -> dict:
    """Everything `doctor` shows, as data."""
    import tensorflow as tf

    from tfxent import _backend, _build, _build_prebuilt

    info: dict = {
        "tfxent": __import__("tfxent").__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tensorflow_git": tf.__git_version__,
        "prebuilt_for": _build_prebuilt.available(),
        "cache_root": str(_build.cache_root()),
    }
    try:
        library = _backend.op_library()
    except _build.BuildError as err:
        library, info["load_error"] = None, str(err)
    info["op_loaded"] = library is not None
    info["loaded_from"] = _build.loaded_path()
    ladder = _build.ladder()
    if library is None:
        ladder.append({"rung": _backend.COMPOSITE, "taken": True, "why_not": None})
    info["rung"] = next((r["rung"] for r in ladder if r["taken"]), _backend.COMPOSITE)
    info["ladder"] = ladder
    try:
        build = _build.plan()
        info.update(
            compiler=build.compiler_version or build.compiler,
            cpu_features=build.target_features,
            cache_key=build.key,
            library=str(build.library),
            built=_build.cached_library_is_valid(build),
        )
    except _build.BuildError as err:
        info.update(compiler=None, built=False, compiler_error=str(err))
    choice = _backend.choose(tf.zeros([1, 1]))
    info["backend"] = choice.backend
    info["backend_reason"] = choice.reason
    info["devices"] = _devices()
    info["environment"] = {switch.name: _env.value(switch.name) for switch in _env.SWITCHES}
    return info


def _print(info: dict) -> None:
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "ladder":
            print("ladder:")
            for rung in value:
                state = "TAKEN" if rung["taken"] else f"not used: {rung['why_not']}"
                print(f"  {rung['rung']:<10} {state}")
        elif key == "environment":
            print("environment:")
            for switch in _env.SWITCHES:
                val = value[switch.name]
                shown = val if val is not None else "(unset)"
                if val is None and switch.default != "unset":
                    shown = f"(unset: {switch.default})"
                print(f"  {switch.name:<24} {shown:<26} {switch.meaning}")
        elif isinstance(value, dict):
            print(f"{key}:")
            for name, val in value.items():
                print(f"  {name:<24} {val if val is not None else '(unset)'}")
        else:
            print(f"{key:<{width}}  {value}")


def run(args: argparse.Namespace) -> int:
    info = report()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print(info)
    if not info["op_loaded"]:
        print(
            "tfxent: the custom op is not in use; the ladder above says why.",
            file=sys.stderr,
        )
        return 1
    return 0
