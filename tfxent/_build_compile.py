"""Compile tfxent's custom ops against the installed TensorFlow into the build cache.

TF's C++ ABI changes with every minor release, so the sources ship in the package and are
compiled on first use with TF's own flags plus `_build_flags`' (docs/design.md, "Build and
load"). The cache key covers everything that changes the binary; a file lock makes processes
starting together compile once, and an atomic rename publishes the library so nobody loads a
half-written file (`_build_cache` says which files are trusted).

`TFXENT_SANITIZE=address` builds an AddressSanitizer variant under its own cache key; it
loads only into a process started with the ASan runtime preloaded (see `sanitizer_preload`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import filelock
import tensorflow as tf

from tfxent import _build_cache as cache
from tfxent import _build_flags as flags
from tfxent._build_cache import MISSING, BuildError

CC_DIR = Path(__file__).parent / "cc"
_SOURCES = ("xent_ops.cc", "xent_kernels.cc", "fused_ops.cc")
_HEADERS = ("xent_exact.h", "xent_layout.h", "xent_rows.h")
LIBRARY_NAME = "_tfxent_ops.so"
_SANITIZE_FLAGS = {"address": ("-fsanitize=address", "-fno-omit-frame-pointer")}


@dataclass(frozen=True)
class BuildPlan:
    """Everything that determines the binary, and where it lives."""

    compiler: str
    compiler_version: str
    command: tuple[str, ...]
    target_features: str
    key: str
    directory: Path
    sanitize: str = ""

    @property
    def library(self) -> Path:
        return self.directory / LIBRARY_NAME

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def log(self) -> Path:
        return self.directory / "build.log"


# --- the plan -------------------------------------------------------------------------------


def _compiler() -> str:
    return resolve_compiler(os.environ.get("CXX", "c++"))


def resolve_compiler(name: str) -> str:
    """The full path of the compiler `name`, or a BuildError saying what to do."""
    found = shutil.which(name)
    if not found:
        raise BuildError(
            f"tfxent: no C++ compiler found (looked for {name!r}). Install g++ or clang++ "
            "(or set CXX), or set TFXENT_FORCE_COMPOSITE=1 to use the slower composite path."
        )
    return found


def first_line(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (done.stdout or done.stderr).splitlines() if done.returncode == 0 else []
    return lines[0].strip() if lines else ""


def sanitizer() -> str:
    """`TFXENT_SANITIZE`: "" for the normal build, or "address" for an AddressSanitizer one."""
    value = os.environ.get("TFXENT_SANITIZE", "").strip().lower()
    if value in ("", "0", "none"):
        return ""
    if value not in _SANITIZE_FLAGS:
        raise BuildError(
            f"tfxent: TFXENT_SANITIZE={value!r} is not supported; use 'address' or unset it."
        )
    return value


def _sanitize_flags(sanitize: str, compiler_version: str) -> tuple[str, ...]:
    extra = _SANITIZE_FLAGS.get(sanitize, ())
    if extra and "clang" in compiler_version.lower():
        extra += ("-shared-libasan",)  # clang links its runtime statically by default
    return extra


def sanitizer_preload() -> str | None:
    """The LD_PRELOAD value an AddressSanitizer build needs: the compiler's ASan runtime, then
    its C++ runtime (without it, ASan cannot find the real `__cxa_throw` when it starts in a
    Python process and aborts on TF's first C++ exception). None if the runtime is missing."""
    compiler = _compiler()
    is_clang = "clang" in first_line([compiler, "--version"]).lower()
    names = [f"libclang_rt.asan-{platform.machine()}.so" if is_clang else "libasan.so"]
    names.append("libstdc++.so")
    found = [first_line([compiler, f"-print-file-name={name}"]) for name in names]
    if not (os.path.isabs(found[0]) and os.path.exists(found[0])):
        return None
    return " ".join(path for path in found if os.path.isabs(path) and os.path.exists(path))


def sources_digest() -> str:
    """SHA-256 of the op's C++ sources and headers, as shipped in this package."""
    digest = hashlib.sha256()
    for name in _SOURCES + _HEADERS:
        digest.update(name.encode() + b"\0" + (CC_DIR / name).read_bytes())
    return digest.hexdigest()


def command(compiler: str, extra_flags: tuple[str, ...], output: Path) -> tuple[str, ...]:
    """The compile-and-link command for the installed TF: the one the cache and the wheel's
    prebuilt libraries both use."""
    return (
        compiler,
        "-shared",
        *extra_flags,
        *tf.sysconfig.get_compile_flags(),
        f"-I{CC_DIR}",
        *(str(CC_DIR / name) for name in _SOURCES),
        "-o",
        str(output),
        *tf.sysconfig.get_link_flags(),
    )


def plan() -> BuildPlan:
    """Work out the compile command and the cache key for this TF, compiler and CPU."""
    compiler = _compiler()
    version = first_line([compiler, "--version"])
    features = flags.target_features(compiler)
    sanitize = sanitizer()
    extra_flags = flags.optimisation_flags(features) + _sanitize_flags(sanitize, version)
    digest = hashlib.sha256(sources_digest().encode())
    for part in (
        tf.__version__,
        tf.__git_version__,
        *tf.sysconfig.get_compile_flags(),
        *tf.sysconfig.get_link_flags(),
        *extra_flags,
        compiler,
        version,
        features,
    ):
        digest.update(part.encode() + b"\0")
    key = f"tf{tf.__version__}-{digest.hexdigest()[:20]}" + (f"-{sanitize}" if sanitize else "")
    directory = cache.usable_root() / key
    built = command(compiler, extra_flags, directory / LIBRARY_NAME)
    return BuildPlan(compiler, version, built, features, key, directory, sanitize)


# --- validity -------------------------------------------------------------------------------


def _entries_problem(build: BuildPlan) -> str | None:
    """Why the key directory, library or manifest could have been written by someone else."""
    for path, directory in (
        (build.directory, True),
        (build.library, False),
        (build.manifest, False),
    ):
        problem = cache.entry_problem(path, directory)
        if problem is not None:
            return problem
    return None


def library_problem(build: BuildPlan) -> str | None:
    """Why the cached library must not be loaded (`not built yet` when it is simply absent),
    or None when it may be."""
    problem = _entries_problem(build)
    if problem is not None:
        return problem
    try:
        manifest = json.loads(build.manifest.read_text())
        recorded, key = manifest["sha256"], manifest.get("key", build.key)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return f"its manifest {build.manifest} is unreadable"
    if key != build.key:
        return f"its manifest {build.manifest} belongs to another build ({key})"
    try:
        actual, size = cache.sha256(build.library), build.library.stat().st_size
    except OSError as err:
        return f"{build.library} is unreadable ({err.strerror})"
    if recorded != actual:
        return (
            f"{build.library} ({size} bytes) does not match the SHA-256 in its manifest: "
            "truncated or corrupted"
        )
    return None


def cached_library_is_valid(build: BuildPlan) -> bool:
    """True when the cached library is the one this process built and recorded: a truncated,
    corrupted or swapped file fails the checksum and is rebuilt, never loaded."""
    return library_problem(build) is None


# --- building -------------------------------------------------------------------------------


def _prepare_directory(build: BuildPlan, problem: str | None) -> None:
    """Make the key directory a fresh private one if anything in it is untrusted, and drop
    leftovers of interrupted builds (the caller holds the lock, so none is in progress)."""
    if problem not in (None, MISSING) and _entries_problem(build) is not None:
        if os.path.lexists(build.directory):
            cache.discard(build.directory)
    try:
        build.directory.mkdir(mode=0o700)
        os.chmod(build.directory, 0o700)
    except FileExistsError:
        pass
    for path in (build.library, build.manifest):
        if cache.entry_problem(path, directory=False) not in (None, MISSING):
            cache.discard(path)
    for leftover in build.directory.glob("*.tmp"):
        leftover.unlink(missing_ok=True)


def _compile(build: BuildPlan) -> None:
    """Compile into a temporary file in the cache directory, then publish it atomically."""
    started = time.monotonic()
    flavour = f" ({build.sanitize} sanitizer)" if build.sanitize else ""
    print(
        f"tfxent: compiling the custom op{flavour} for TensorFlow {tf.__version__} with "
        f"{build.compiler_version or build.compiler} (first use; this takes 10-60 s)...",
        file=sys.stderr,
        flush=True,
    )
    handle, tmp_name = tempfile.mkstemp(dir=build.directory, suffix=".so.tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        command = [arg if arg != str(build.library) else tmp_name for arg in build.command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        cache.write_private(build.log, shlex.join(command) + "\n\n" + done.stdout + done.stderr)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.splitlines()[-20:])
            raise BuildError(
                f"tfxent: could not build the custom op for TF {tf.__version__} with "
                f"{build.compiler_version or build.compiler}:\n{tail}\nFull log: {build.log}\n"
                "Install a C++17 compiler that matches TF's ABI, or set "
                "TFXENT_FORCE_COMPOSITE=1."
            )
        os.chmod(tmp, 0o700)  # the linker created it with the umask's mode
        manifest = {
            "sha256": cache.sha256(tmp),
            "size": tmp.stat().st_size,
            "key": build.key,
            "tensorflow": tf.__version__,
            "compiler": build.compiler_version,
            "target_features": build.target_features,
            "sanitize": build.sanitize,
            "seconds": round(time.monotonic() - started, 1),
        }
        # Library first: a reader between the two renames sees a checksum mismatch, not a
        # library that matches a stale manifest.
        os.replace(tmp, build.library)
        cache.write_private(build.manifest, json.dumps(manifest, indent=1))
    finally:
        tmp.unlink(missing_ok=True)
    print(
        f"tfxent: built {build.library} in {manifest['seconds']} s",
        file=sys.stderr,
        flush=True,
    )


def ensure_built(force: bool = False) -> BuildPlan:
    """Return a plan whose library exists and is valid, compiling it if needed."""
    build = plan()
    root = build.directory.parent
    cache.private_root(root)
    if not force and cached_library_is_valid(build):
        return build
    lock = filelock.FileLock(str(root / f"{build.key}.lock"))
    cache.acquire(lock, root / f"{build.key}.owner")
    try:
        # Another process may have finished the build while this one waited.
        problem = None if force else library_problem(build)
        if force or problem is not None:
            if problem not in (None, MISSING):
                print(
                    f"tfxent: refusing the cached op in {build.directory}: {problem}. "
                    "Rebuilding it.",
                    file=sys.stderr,
                    flush=True,
                )
            try:
                _prepare_directory(build, problem)
            except OSError as err:
                raise BuildError(
                    f"tfxent: could not prepare {build.directory} for a build: {err}. Delete "
                    "it, or point TFXENT_CACHE_DIR at a directory only you can write."
                ) from err
            _compile(build)
    finally:
        lock.release()
    return build
