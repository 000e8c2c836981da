"""`python -m tfxent doctor`: what tfxent would use here, and why."""

from __future__ import annotations

import argparse
import json
import platform
import sys

from tfxent import _env

DESCRIPTION = """\
Show TF, the compiler, the build cache, the op's status and the backend in use

Print the TensorFlow version, the compiler, the build cache and its key, whether the
custom op is built and loads, the backend a call would use now, and the environment
switches (tfxent/_env.py) with their values. Exit status 1 when the op cannot be used.
"""


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def report() -> dict:
    """Everything `doctor` shows, as data."""
    import tensorflow as tf

    from tfxent import _backend, _build

    info: dict = {
        "tfxent": __import__("tfxent").__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tensorflow_git": tf.__git_version__,
        "cache_root": str(_build.cache_root()),
    }
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
        info.update(compiler=None, built=False, build_error=str(err))
    try:
        library = _backend.op_library()
    except _build.BuildError as err:
        library, info["build_error"] = None, str(err)
    info["op_loaded"] = library is not None
    info["loaded_from"] = _build.loaded_path()
    choice = _backend.choose(tf.zeros([1, 1]))
    info["backend"] = choice.backend
    info["backend_reason"] = choice.reason
    info["environment"] = {switch.name: _env.value(switch.name) for switch in _env.SWITCHES}
    return info


def run(args: argparse.Namespace) -> int:
    info = report()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            if key == "environment":
                print("environment:")
                for switch in _env.SWITCHES:
                    val = value[switch.name]
                    shown = val if val is not None else "(unset)"
                    if val is None and switch.default != "unset":
                        shown = f"(unset: {switch.default})"
                    print(f"  {switch.name:<24} {shown:<26} {switch.meaning}")
            else:
                print(f"{key:<{width}}  {value}")
    if not info["op_loaded"]:
        print(
            "tfxent: the custom op is not in use; run `python -m tfxent build` to see why.",
            file=sys.stderr,
        )
        return 1
    return 0
