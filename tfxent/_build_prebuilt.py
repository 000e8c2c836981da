"""The wheel's prebuilt op libraries: one per TF minor, used only where it matches exactly.

A platform wheel carries `tfxent/_prebuilt/tf<major>.<minor>/` with the library and a
manifest: the TF version and git hash it was compiled against, the instruction set, the digest
of the C++ sources, and the library's SHA-256. `find()` accepts a library only if all of these
match the installed TF and this package, and the file is one nobody but its owner (the user or
root) can have written, with the recorded checksum. Anything else is a reason, which `doctor`
prints; the caller then compiles on first use (docs/install.md, "The load ladder").

`stage()` is the other half: run under each TF of the wheel build (`./dev wheel`), it
compiles the library with the same command and flags as the build cache would.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from tfxent import _build_cache as cache
from tfxent import _build_compile as compile_
from tfxent import _build_flags as flags
from tfxent._build_cache import BuildError

ROOT = Path(__file__).parent / "_prebuilt"
MANIFEST = "manifest.json"
_ISA = "tf"  # the wheel ships the exact build only (docs/install.md, "Instruction sets")


@dataclass(frozen=True)
class Prebuilt:
    """The outcome of looking for a prebuilt library: its path if usable, else why not.

    `refused` is True when a library was there but failed a check (tampered, corrupted,
    writable by others, built from other sources): that is worth a message on stderr, where
    "this wheel has no library for your TF" is not.
    """

    library: Path | None
    problem: str | None
    refused: bool = False


def directory(version: str | None = None) -> Path:
    """Where the library for a TF version (default: the installed one) lives."""
    major, minor = (version or tf.__version__).split(".")[:2]
    return ROOT / f"tf{major}.{minor}"


def available() -> list[str]:
    """The TF minors this installation has prebuilt libraries for, e.g. ["2.12", "2.21"]."""
    if not ROOT.is_dir():
        return []
    found = [p.name[2:] for p in ROOT.iterdir() if p.name.startswith("tf") and p.is_dir()]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def _opted_out() -> str | None:
    if os.environ.get("TFXENT_FROM_SOURCE", "") == "1":
        return "TFXENT_FROM_SOURCE=1 asks for a local build"
    if compile_.sanitizer():
        return "TFXENT_SANITIZE asks for a sanitizer build, which is never prebuilt"
    if flags.isa() != _ISA:
        return f"TFXENT_ISA={flags.isa()} asks for a build for this CPU, which is never prebuilt"
    return None


def _other_tf(manifest: dict) -> str | None:
    """Why the library is for another TF (another release, or another build of this one)."""
    built_for = (manifest.get("tensorflow"), manifest.get("tensorflow_git"))
    installed = (tf.__version__, tf.__git_version__)
    if built_for == installed:
        return None
    return (
        f"it was built for TF {built_for[0]} ({built_for[1]}), and the installed TF is "
        f"{installed[0]} ({installed[1]})"
    )


def find() -> Prebuilt:
    """The prebuilt library for the installed TF if it may be loaded, else the reason."""
    opted_out = _opted_out()
    if opted_out:
        return Prebuilt(None, opted_out)
    have = available()
    if not have:
        return Prebuilt(None, "this installation has no prebuilt ops (installed from source)")
    folder = directory()
    if not folder.is_dir():
        return Prebuilt(
            None,
            f"the wheel has no prebuilt op for TF {tf.__version__} (it has TF {', '.join(have)})",
        )
    library, manifest_path = folder / compile_.LIBRARY_NAME, folder / MANIFEST
    for path, is_dir in ((folder, True), (library, False), (manifest_path, False)):
        problem = cache.entry_problem(path, is_dir, root_may_own=True)
        if problem is not None:
            return Prebuilt(None, problem, refused=True)
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded = manifest["sha256"]
    except (OSError, ValueError, TypeError, KeyError) as err:
        return Prebuilt(None, f"its manifest {manifest_path} is unreadable ({err})", refused=True)
    other_tf = _other_tf(manifest)
    if other_tf:
        return Prebuilt(None, other_tf)
    if manifest.get("isa") != _ISA or manifest.get("sources") != compile_.sources_digest():
        # The wheel's own files disagree: a modified installation.
        return Prebuilt(None, "it was built from other sources or flags than this package's", True)
    if cache.sha256(library) != recorded:
        return Prebuilt(
            None,
            f"{library} does not match the SHA-256 recorded in the wheel: tampered or corrupted",
            refused=True,
        )
    return Prebuilt(library, None)


def stage(destination: Path, compiler: str = "c++") -> Path:
    """Compile the library for the installed TF into `destination/tf<minor>/` with its
    manifest, as the wheel build does for each TF minor. Returns the library's path."""
    found = compile_.resolve_compiler(compiler)
    version = compile_.first_line([found, "--version"])
    isa_flags = flags.isa_flags(_ISA)
    extra = flags.optimisation_flags(flags.target_features(found, isa_flags), isa_flags)
    folder = destination / directory().name
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / compile_.LIBRARY_NAME
    command = compile_.command(found, extra, library)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"tfxent: staging the op for TF {tf.__version__} failed:\n{done.stderr}")
    library.chmod(0o755)
    record(library, extra, version)
    return library


def record(library: Path, extra_flags: tuple[str, ...], compiler_version: str) -> None:
    """Write the manifest `find()` checks, beside a library just compiled for this TF."""
    manifest = {
        "tensorflow": tf.__version__,
        "tensorflow_git": tf.__git_version__,
        "isa": _ISA,
        "flags": list(extra_flags),
        "sources": compile_.sources_digest(),
        "compiler": compiler_version,
        "sha256": cache.sha256(library),
        "size": library.stat().st_size,
    }
    (library.parent / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
