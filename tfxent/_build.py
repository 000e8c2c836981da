"""Compile tfxent's custom ops against the installed TensorFlow, cache them, load them once.

TF's C++ ABI changes with every minor release, so the sources ship in the package and are
compiled on first use with TF's own flags (docs/design.md, "Build and load"). The cache is keyed
by everything that changes the binary, guarded by a file lock so that processes starting
together compile once, and published by an atomic rename so nobody loads a half-written file.

Whoever can write the cached library can run code in every process that loads it, so the
cache is trusted only while nobody else can write it:

* the cache root and each key directory are real directories (no symlinks) owned by the
  user and not writable by group or others; tfxent creates them with mode 0700;
* every existing directory above the root is owned by the user or root and writable by
  nobody else, unless it is sticky (/tmp) or its group is the user's private group, so that
  nobody can swap the cache for their own;
* the library and its manifest are regular files owned by the user and not writable by
  group or others, and the library's SHA-256 matches the one its builder recorded (a
  truncated or corrupted file is rebuilt, never loaded).

A key directory or file that fails a check is refused with a message on stderr, removed and
rebuilt under the (private) root. An unsafe root is an error when `TFXENT_CACHE_DIR` names
it (the user chose that place; building elsewhere would hide the problem); the default root
is replaced, with a warning, by the private fallback `<tempdir>/tfxent-<uid>`.

`TFXENT_SANITIZE=address` builds an AddressSanitizer variant under its own cache key; it
loads only into a process started with the ASan runtime preloaded (see `sanitizer_preload`).
"""

from __future__ import annotations

import ctypes
import grp
import hashlib
import json
import os
import platform
import pwd
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
_SOURCES = ("xent_ops.cc", "xent_kernels.cc", "fused_ops.cc")
_HEADERS = ("xent_rows.h",)
_LIBRARY_NAME = "_tfxent_ops.so"
# Optimisation flags added to TF's own: the op is compiled on the user's machine, so it may
# use that CPU's vector units; -march=native enters the cache key through its expansion.
# No -ffast-math: TF's NaN/inf results (docs/tf_behaviour.md#dense-values-and-broadcasting) depend
# on IEEE semantics.
_EXTRA_FLAGS = ("-O3", "-march=native", "-DNDEBUG", "-fPIC", "-Wno-deprecated-declarations")
# TF's bundled Eigen does not compile with AVX512-FP16 enabled (PacketMathFP16.h declares
# predux_half_dowto4 specialisations g++ 12 rejects), and the kernels widen f16 to f32 anyway,
# so on CPUs that have it (Sapphire Rapids and later) the build turns it off.
_UNUSABLE_FEATURES = ("-mavx512fp16",)
_SANITIZE_FLAGS = {"address": ("-fsanitize=address", "-fno-omit-frame-pointer")}
_LOCK_NOTICE_S = 5.0
_LOCK_TIMEOUT_S = 600.0
_MISSING = "not built yet"


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
    sanitize: str = ""

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
    """`TFXENT_CACHE_DIR`, else `$XDG_CACHE_HOME/tfxent`, else `~/.cache/tfxent`: where the
    cache is configured to be (`plan()` falls back to a private directory if that is unsafe)."""
    override = os.environ.get("TFXENT_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tfxent"


def _fallback_root() -> Path:
    return Path(tempfile.gettempdir()) / f"tfxent-{os.geteuid()}"


# --- who may write a path -------------------------------------------------------------------


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group_is_private(gid: int, uid: int) -> bool:
    """True when the group's only member is the user (a user-private group, as created on
    systems with umask 002): Debian's OpenSSH rule for group-writable paths."""
    try:
        group, me = grp.getgrgid(gid), pwd.getpwuid(uid)
    except KeyError:
        return False
    if any(member != me.pw_name for member in group.gr_mem):
        return False
    primary = [entry.pw_uid for entry in pwd.getpwall() if entry.pw_gid == gid]
    return all(u == uid for u in primary) and bool(primary or group.gr_mem)


def _entry_problem(path: Path, directory: bool) -> str | None:
    """Why a cache entry could have been written by someone else, or None if it is private."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return _MISSING
    except OSError as err:
        return f"{path} cannot be inspected ({err.strerror})"
    kind = "directory" if directory else "regular file"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if not (stat.S_ISDIR if directory else stat.S_ISREG)(info.st_mode):
        return f"{path} is not a {kind}"
    if info.st_uid != os.geteuid():
        return f"{path} is owned by {_user(info.st_uid)}, not by {_user(os.geteuid())}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by group or others (mode {stat.filemode(info.st_mode)})"
    return None


def _ancestor_problem(path: Path) -> str | None:
    """Why someone else could replace `path` through a directory above it, or None."""
    uid = os.geteuid()
    for parent in reversed(path.parents):
        try:
            info = os.stat(parent)
        except FileNotFoundError:
            break
        except OSError as err:
            return f"{parent}, which contains it, cannot be inspected ({err.strerror})"
        if info.st_uid not in (uid, 0):
            return f"{parent}, which contains it, is owned by {_user(info.st_uid)}"
        if info.st_mode & stat.S_ISVTX:
            continue  # sticky (/tmp): others cannot rename or delete our entries
        if info.st_mode & stat.S_IWOTH or (
            info.st_mode & stat.S_IWGRP and not _group_is_private(info.st_gid, uid)
        ):
            return (
                f"{parent}, which contains it, is writable by group or others "
                f"(mode {stat.filemode(info.st_mode)})"
            )
    return None


def _root_problem(root: Path) -> str | None:
    """Why a (resolved) cache root is unsafe, or None; a missing root is fine if it can be
    created safely."""
    problem = _entry_problem(root, directory=True)
    if problem not in (None, _MISSING):
        return problem
    return _ancestor_problem(root)


_noticed: set[str] = set()


def _notice_once(message: str) -> None:
    if message not in _noticed:
        _noticed.add(message)
        print(message, file=sys.stderr, flush=True)


def _usable_root() -> Path:
    """The configured root if it is safe; else the private fallback (default root) or an
    error (`TFXENT_CACHE_DIR`)."""
    configured = cache_root()
    root = Path(os.path.realpath(configured))
    problem = _root_problem(root)
    if problem is None:
        return root
    if os.environ.get("TFXENT_CACHE_DIR"):
        raise BuildError(
            f"tfxent: refusing TFXENT_CACHE_DIR={configured}: {problem}, so someone else could "
            "replace the compiled op that tfxent loads into this process. Point "
            "TFXENT_CACHE_DIR at a directory only you can write (mkdir -m 700 DIR), or unset it."
        )
    fallback = Path(os.path.realpath(_fallback_root()))
    fallback_problem = _root_problem(fallback)
    if fallback_problem is not None:
        raise BuildError(
            f"tfxent: refusing the build cache {root} ({problem}) and the fallback {fallback} "
            f"({fallback_problem}). Set TFXENT_CACHE_DIR to a directory only you can write."
        )
    _notice_once(
        f"tfxent: refusing the build cache {root}: {problem}. Using {fallback} instead; make "
        "the cache private (chown, chmod 700) or set TFXENT_CACHE_DIR to a private directory."
    )
    return fallback


def _private_root(root: Path) -> None:
    """Create the root (and any missing parent) with mode 0700, then check it for real."""
    for path in [*reversed(root.parents), root]:
        if os.path.lexists(path):
            continue
        try:
            path.mkdir(mode=0o700)
            os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        except FileExistsError:
            continue
        except OSError as err:
            raise BuildError(
                f"tfxent: cannot create the build cache {root}: {err}. Point TFXENT_CACHE_DIR "
                "at a directory only you can write (mkdir -m 700 DIR)."
            ) from err
    problem = _root_problem(root)
    if problem is not None:
        raise BuildError(
            f"tfxent: refusing the build cache {root}: {problem}. Point TFXENT_CACHE_DIR at a "
            "directory only you can write (mkdir -m 700 DIR)."
        )


# --- the plan -------------------------------------------------------------------------------


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
    lines = (done.stdout or done.stderr).splitlines() if done.returncode == 0 else []
    return lines[0].strip() if lines else ""


def target_features(compiler: str) -> str:
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


def optimisation_flags(features: str) -> tuple[str, ...]:
    """The flags added to TF's own for a CPU with these `-march=native` features, less the
    features TF's headers cannot be compiled with."""
    enabled = set(features.split())
    disabled = tuple("-mno-" + flag[2:] for flag in _UNUSABLE_FEATURES if flag in enabled)
    return _EXTRA_FLAGS + disabled


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
    flags = _SANITIZE_FLAGS.get(sanitize, ())
    if flags and "clang" in compiler_version.lower():
        flags += ("-shared-libasan",)  # clang links its runtime statically by default
    return flags


def sanitizer_preload() -> str | None:
    """The LD_PRELOAD value an AddressSanitizer build needs: the compiler's ASan runtime, then
    its C++ runtime (without it, ASan cannot find the real `__cxa_throw` when it starts in a
    Python process and aborts on TF's first C++ exception). None if the runtime is missing."""
    compiler = _compiler()
    is_clang = "clang" in _first_line([compiler, "--version"]).lower()
    names = [f"libclang_rt.asan-{platform.machine()}.so" if is_clang else "libasan.so"]
    names.append("libstdc++.so")
    found = [_first_line([compiler, f"-print-file-name={name}"]) for name in names]
    if not (os.path.isabs(found[0]) and os.path.exists(found[0])):
        return None
    return " ".join(path for path in found if os.path.isabs(path) and os.path.exists(path))


def plan() -> BuildPlan:
    """Work out the compile command and the cache key for this TF, compiler and CPU."""
    compiler = _compiler()
    version = _first_line([compiler, "--version"])
    features = target_features(compiler)
    sanitize = sanitizer()
    extra_flags = optimisation_flags(features) + _sanitize_flags(sanitize, version)
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
        *extra_flags,
        compiler,
        version,
        features,
    ):
        digest.update(part.encode() + b"\0")
    key = f"tf{tf.__version__}-{digest.hexdigest()[:20]}" + (f"-{sanitize}" if sanitize else "")
    directory = _usable_root() / key
    output = directory / _LIBRARY_NAME
    command = (
        compiler,
        "-shared",
        *extra_flags,
        *compile_flags,
        f"-I{_CC_DIR}",
        *sources,
        "-o",
        str(output),
        *link_flags,
    )
    return BuildPlan(compiler, version, command, features, key, directory, sanitize)


# --- validity -------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries_problem(build: BuildPlan) -> str | None:
    """Why the key directory, library or manifest could have been written by someone else."""
    for path, directory in (
        (build.directory, True),
        (build.library, False),
        (build.manifest, False),
    ):
        problem = _entry_problem(path, directory)
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
        actual, size = _sha256(build.library), build.library.stat().st_size
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


def _discard(path: Path) -> None:
    """Move an untrusted cache entry out of the way (atomically), then delete it."""
    aside = path.with_name(f"{path.name}.refused-{os.getpid()}-{time.time_ns()}")
    os.rename(path, aside)
    if os.path.isdir(aside) and not os.path.islink(aside):
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def _prepare_directory(build: BuildPlan, problem: str | None) -> None:
    """Make the key directory a fresh private one if anything in it is untrusted, and drop
    leftovers of interrupted builds (the caller holds the lock, so none is in progress)."""
    if problem not in (None, _MISSING) and _entries_problem(build) is not None:
        if os.path.lexists(build.directory):
            _discard(build.directory)
    try:
        build.directory.mkdir(mode=0o700)
        os.chmod(build.directory, 0o700)
    except FileExistsError:
        pass
    for path in (build.library, build.manifest):
        if _entry_problem(path, directory=False) not in (None, _MISSING):
            _discard(path)
    for leftover in build.directory.glob("*.tmp"):
        leftover.unlink(missing_ok=True)


def _write_private(path: Path, text: str) -> None:
    """Write a file readable only by the user, atomically (mode 0600 whatever the umask)."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.replace(tmp, path)


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
        _write_private(build.log, shlex.join(command) + "\n\n" + done.stdout + done.stderr)
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
            "sha256": _sha256(tmp),
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
        _write_private(build.manifest, json.dumps(manifest, indent=1))
    finally:
        tmp.unlink(missing_ok=True)
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
        try:
            holder = owner_file.read_text().strip() or "unknown"
        except OSError:
            holder = "unknown"
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
    _write_private(owner_file, str(os.getpid()))


def ensure_built(force: bool = False) -> BuildPlan:
    """Return a plan whose library exists and is valid, compiling it if needed."""
    build = plan()
    root = build.directory.parent
    _private_root(root)
    if not force and cached_library_is_valid(build):
        return build
    lock = filelock.FileLock(str(root / f"{build.key}.lock"))
    _acquire(lock, root / f"{build.key}.owner")
    try:
        # Another process may have finished the build while this one waited.
        problem = None if force else library_problem(build)
        if force or problem is not None:
            if problem not in (None, _MISSING):
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


def _asan_runtime_loaded() -> bool:
    return hasattr(ctypes.CDLL(None), "__asan_init")


_load_lock = threading.Lock()
_loaded: dict[str, object] = {}


def load() -> object:
    """Build if needed and load the op library; one library per process, ever (a second copy
    of the same ops breaks every call)."""
    with _load_lock:
        if "module" not in _loaded:
            build = ensure_built()
            if build.sanitize == "address" and not _asan_runtime_loaded():
                # Loading it anyway would abort the process ("ASan runtime does not come
                # first in initial library list").
                raise BuildError(
                    f"tfxent: TFXENT_SANITIZE=address built {build.library}, but the "
                    "AddressSanitizer runtime is not loaded in this process. Start Python with "
                    f"LD_PRELOAD='{sanitizer_preload() or 'libasan.so libstdc++.so'}' "
                    "ASAN_OPTIONS=detect_leaks=0, or unset TFXENT_SANITIZE."
                )
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
