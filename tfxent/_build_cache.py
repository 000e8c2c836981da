"""The build cache: where compiled ops live, and whether anyone else could have written them.

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

An unsafe root is an error when `TFXENT_CACHE_DIR` names it (the user chose that place;
building elsewhere would hide the problem); the default root is replaced, with a warning, by
the private fallback `<tempdir>/tfxent-<uid>`. Processes that build together take a file lock,
so they compile once.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path

import filelock

_LOCK_NOTICE_S = 5.0
_LOCK_TIMEOUT_S = 600.0
MISSING = "not built yet"


class BuildError(RuntimeError):
    """The custom op could not be compiled or loaded."""


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


def entry_problem(path: Path, directory: bool, root_may_own: bool = False) -> str | None:
    """Why a cache entry could have been written by someone else, or None if it is private.
    `root_may_own`: root's files are trusted too (a package installed by root)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return MISSING
    except OSError as err:
        return f"{path} cannot be inspected ({err.strerror})"
    kind = "directory" if directory else "regular file"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if not (stat.S_ISDIR if directory else stat.S_ISREG)(info.st_mode):
        return f"{path} is not a {kind}"
    if info.st_uid != os.geteuid() and not (root_may_own and info.st_uid == 0):
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
    problem = entry_problem(root, directory=True)
    if problem not in (None, MISSING):
        return problem
    return _ancestor_problem(root)


_noticed: set[str] = set()


def notice_once(message: str) -> None:
    if message not in _noticed:
        _noticed.add(message)
        print(message, file=sys.stderr, flush=True)


def usable_root() -> Path:
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
    notice_once(
        f"tfxent: refusing the build cache {root}: {problem}. Using {fallback} instead; make "
        "the cache private (chown, chmod 700) or set TFXENT_CACHE_DIR to a private directory."
    )
    return fallback


def private_root(root: Path) -> None:
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


# --- files ----------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def discard(path: Path) -> None:
    """Move an untrusted cache entry out of the way (atomically), then delete it."""
    aside = path.with_name(f"{path.name}.refused-{os.getpid()}-{time.time_ns()}")
    os.rename(path, aside)
    if os.path.isdir(aside) and not os.path.islink(aside):
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write a file readable only by the user, atomically (mode 0600 whatever the umask)."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def acquire(lock: filelock.FileLock, owner_file: Path) -> None:
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
    write_private(owner_file, str(os.getpid()))
