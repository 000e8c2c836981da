"""Compile tfxent's custom ops against the installed TensorFlow, cache them, load them once.

TF's C++ ABI changes with every minor release, so the sources ship in the package and are
compiled on first use with TF's own flags (DESIGN.md, "Build and load"). The cache is keyed
by everything that changes the binary, guarded by a file lock so that processes starting
together compile once, and published by an atomic rename so nobody loads a half-written file.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import filelock
import tensorflow as tf

_CC_DIR = Path(__file__).parent / "cc"
_SOURCES = ("xent_ops.cc", "xent_kernels.cc")
_HEADERS = ("xent_rows.h",)
_LIBRARY_NAME = "_tfxent_ops.so"
# Optimisation flags added to TF's own: the op is compiled on the user's machine, so it may
# use that CPU's vector units; -march=native enters the cache key through its expansion.
# No -ffast-math: TF's NaN/inf results (spec §3.2) depend on IEEE semantics.
_EXTRA_FLAGS = ("-O3", "-march=native", "-DNDEBUG", "-fPIC", "-Wno-deprecated-declarations")
_LOCK_NOTICE_S = 5.0
_LOCK_TIMEOUT_S = 600.0


class BuildError(RuntimeError):
    """The custom op could not be compiled or loaded."""


@dataclass(frozen=True)
class BuildPlan:
    """Everything that determines the binary, and where it lives."""

    compiler: str
    compiler_version: str
    command: tuple[str, ...]
    target_features: str
    key: str
    directory: Path

    @property
    def library(self) -> Path:
        return self.directory / _LIBRARY_NAME

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def log(self) -> Path:
        return self.directory / "build.log"


def cache_root() -> Path:
    """`TFXENT_CACHE_DIR`, else `$XDG_CACHE_HOME/tfxent`, else `~/.cache/tfxent`."""
    override = os.environ.get("TFXENT_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tfxent"


def _unsafe_reason(path: Path) -> str | None:
    """Why a cache path could be written by someone else, or None when it is private."""
    info = path.stat()
    if info.st_uid != os.getuid():
        return f"{path} is owned by uid {info.st_uid}, not by {getpass.getuser()}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by group or others (mode {stat.filemode(info.st_mode)})"
    return None


def _private_directory(path: Path) -> Path:
    """Create `path` (mode 0700) or check an existing one; a library others can replace
    must never be loaded into the process."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    reason = _unsafe_reason(path)
    if reason:
        raise BuildError(
            f"tfxent: refusing the build cache: {reason}. Point TFXENT_CACHE_DIR at a "
            "directory only you can write, or fix its owner and mode (chmod 700)."
        )
    return path


def _compiler() -> str:
    name = os.environ.get("CXX", "c++")
    found = shutil.which(name)
    if not found:
        raise BuildError(
            f"tfxent: no C++ compiler found (looked for {name!r}). Install g++ or clang++ "
            "(or set CXX), or set TFXENT_FORCE_COMPOSITE=1 to use the slower composite path."
        )
    return found


def _first_line(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].strip() if done.returncode == 0 else ""


def _target_features(compiler: str) -> str:
    """The -m flags `-march=native` expands to: the CPU features this binary may use."""
    done = subprocess.run(
        [compiler, "-march=native", "-E", "-v", "-"],
        input="",
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in done.stderr.splitlines() if "cc1" in ln and "-march=" in ln]
    if not lines:
        return "unknown"
    return " ".join(tok for tok in shlex.split(lines[0]) if tok.startswith(("-m", "--param")))


def plan() -> BuildPlan:
    """Work out the compile command and the cache key for this TF, compiler and CPU."""
    compiler = _compiler()
    version = _first_line([compiler, "--version"])
    features = _target_features(compiler)
    sources = [str(_CC_DIR / name) for name in _SOURCES]
    compile_flags = list(tf.sysconfig.get_compile_flags())
    link_flags = list(tf.sysconfig.get_link_flags())
    digest = hashlib.sha256()
    for name in _SOURCES + _HEADERS:
        digest.update(name.encode() + b"\0" + (_CC_DIR / name).read_bytes())
    for part in (
        tf.__version__,
        tf.__git_version__,
        *compile_flags,
        *link_flags,
        *_EXTRA_FLAGS,
        compiler,
        version,
        features,
    ):
        digest.update(part.encode() + b"\0")
    key = f"tf{tf.__version__}-{digest.hexdigest()[:20]}"
    directory = cache_root() / key
    output = directory / _LIBRARY_NAME
    command = (
        compiler,
        "-shared",
        *_EXTRA_FLAGS,
        *compile_flags,
        f"-I{_CC_DIR}",
        *sources,
        "-o",
        str(output),
        *link_flags,
    )
    return BuildPlan(compiler, version, command, features, key, directory)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached_library_is_valid(build: BuildPlan) -> bool:
    """True when the cached library is the one this process built and recorded: a truncated,
    corrupted or swapped file fails the checksum and is rebuilt, never loaded."""
    if not (build.library.is_file() and build.manifest.is_file()):
        return False
    if _unsafe_reason(build.library) or _unsafe_reason(build.manifest):
        return False
    try:
        recorded = json.loads(build.manifest.read_text())["sha256"]
    except (ValueError, KeyError):
        return False
    return recorded == _sha256(build.library)


def _compile(build: BuildPlan) -> None:
    """Compile into a temporary file in the cache directory, then publish it atomically."""
    started = time.monotonic()
    print(
        f"tfxent: compiling the custom op for TensorFlow {tf.__version__} with "
        f"{build.compiler_version or build.compiler} (first use; this takes 10-60 s)...",
        file=sys.stderr,
        flush=True,
    )
    handle, tmp_name = tempfile.mkstemp(dir=build.directory, suffix=".so.tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    command = [arg if arg != str(build.library) else tmp_name for arg in build.command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    build.log.write_text(shlex.join(command) + "\n\n" + done.stdout + done.stderr)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = "\n".join(done.stderr.splitlines()[-20:])
        raise BuildError(
            f"tfxent: could not build the custom op for TF {tf.__version__} with "
            f"{build.compiler_version or build.compiler}:\n{tail}\nFull log: {build.log}\n"
            "Install a C++17 compiler that matches TF's ABI, or set TFXENT_FORCE_COMPOSITE=1."
        )
    tmp.chmod(0o700)
    manifest = {
        "sha256": _sha256(tmp),
        "tensorflow": tf.__version__,
        "compiler": build.compiler_version,
        "target_features": build.target_features,
        "seconds": round(time.monotonic() - started, 1),
    }
    tmp_manifest = build.manifest.with_suffix(".json.tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, build.library)
    os.replace(tmp_manifest, build.manifest)
    print(
        f"tfxent: built {build.library} in {manifest['seconds']} s",
        file=sys.stderr,
        flush=True,
    )


def _acquire(lock: filelock.FileLock, owner_file: Path) -> None:
    """Take the build lock; after a few seconds say who holds it, then keep waiting."""
    try:
        lock.acquire(timeout=_LOCK_NOTICE_S)
    except filelock.Timeout:
        holder = owner_file.read_text().strip() if owner_file.exists() else "unknown"
        print(
            f"tfxent: waiting for {lock.lock_file} (held by PID {holder}, which is "
            "compiling the op)...",
            file=sys.stderr,
            flush=True,
        )
        try:
            lock.acquire(timeout=_LOCK_TIMEOUT_S)
        except filelock.Timeout as err:
            raise BuildError(
                f"tfxent: gave up after {_LOCK_TIMEOUT_S:.0f} s waiting for {lock.lock_file} "
                f"(held by PID {holder}). If that process is gone, delete the lock file."
            ) from err
    owner_file.write_text(str(os.getpid()))


def ensure_built(force: bool = False) -> BuildPlan:
    """Return a plan whose library exists and is valid, compiling it if needed."""
    build = plan()
    _private_directory(build.directory.parent)
    if not force and cached_library_is_valid(build):
        return build
    _private_directory(build.directory)
    lock = filelock.FileLock(str(build.directory.parent / f"{build.key}.lock"))
    owner_file = build.directory.parent / f"{build.key}.owner"
    _acquire(lock, owner_file)
    try:
        # Another process may have finished the build while this one waited.
        if force or not cached_library_is_valid(build):
            _compile(build)
    finally:
        lock.release()
    return build


_load_lock = threading.Lock()
_loaded: dict[str, object] = {}


def load() -> object:
    """Build if needed and load the op library; one library per process, ever (a second copy
    of the same ops breaks every call)."""
    with _load_lock:
        if "module" not in _loaded:
            build = ensure_built()
            try:
                _loaded["module"] = tf.load_op_library(str(build.library))
            except tf.errors.NotFoundError as err:
                raise BuildError(
                    f"tfxent: the compiled op at {build.library} does not load into TF "
                    f"{tf.__version__}: {err}. Delete {build.directory} to rebuild it."
                ) from err
            _loaded["path"] = str(build.library)
        return _loaded["module"]


def loaded_path() -> str | None:
    """Path of the library loaded into this process, if any."""
    return _loaded.get("path")  # type: ignore[return-value]
