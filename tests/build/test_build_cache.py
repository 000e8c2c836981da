"""The build cache: private directories, checksums, refusal of anything others could write.

Builds here use a stand-in compiler (conftest_helpers.fake_compiler) that copies a library
the real compiler built, so each test exercises the real cache code in seconds. Ownership by
another user is simulated with os.chown, which needs root (these tests run as root in the
project's containers; elsewhere those cases are skipped).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest_helpers import REPO, child_env, compiles, fake_compiler, good_library

from tfxent import _backend, _build, _build_cache, _build_compile, _build_flags

OTHER_UID = 65534  # nobody


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _chown_other(path: Path) -> None:
    try:
        os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    except PermissionError:
        pytest.skip("simulating another owner needs root (os.chown)")


class Cache:
    def __init__(self, root: Path, log: Path):
        self.root, self.log = root, log

    @property
    def compiles(self) -> int:
        return compiles(self.log)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Cache:
    """An empty cache under tmp_path, built by the stand-in compiler."""
    good_library()  # built in the run's own cache before the environment changes
    assert _backend.op_library() is not None  # this process loads the op from there, too
    script, log = fake_compiler(tmp_path)
    monkeypatch.setenv("CXX", str(script))
    monkeypatch.setenv("TFXENT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TFXENT_SANITIZE", raising=False)
    monkeypatch.delenv("TFXENT_TEST_CXX_FAIL", raising=False)
    return Cache(tmp_path / "cache", log)


def test_first_build_creates_private_directories_and_files_whatever_the_umask(cache):
    before = os.umask(0o002)
    try:
        build = _build.ensure_built()
    finally:
        os.umask(before)
    assert build.directory.parent == cache.root.resolve()
    assert _mode(cache.root) == 0o700
    assert _mode(build.directory) == 0o700
    assert _mode(build.library) & 0o077 == 0
    assert _mode(build.manifest) == 0o600
    assert _sha(build.library) == _sha(good_library())
    manifest = json.loads(build.manifest.read_text())
    assert manifest["key"] == build.key and manifest["sha256"] == _sha(build.library)
    # A group-writable manifest (umask 002) would make every later process rebuild.
    assert _build.ensure_built().library == build.library
    assert cache.compiles == 1


def test_missing_parents_of_the_cache_are_created_0700(cache, tmp_path, monkeypatch):
    root = tmp_path / "a" / "b" / "cache"
    monkeypatch.setenv("TFXENT_CACHE_DIR", str(root))
    _build.ensure_built()
    assert [_mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", root)] == [0o700] * 3


def test_valid_cached_library_is_reused(cache):
    first = _build.ensure_built()
    mtime = first.library.stat().st_mtime_ns
    assert _build.cached_library_is_valid(_build.plan())
    assert _build.ensure_built().library.stat().st_mtime_ns == mtime
    assert cache.compiles == 1


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_truncate, _flip_middle_byte, _empty])
def test_damaged_library_is_detected_and_rebuilt(cache, capfd, damage):
    build = _build.ensure_built()
    damage(build.library)
    assert not _build.cached_library_is_valid(build)
    assert "truncated or corrupted" in _build_compile.library_problem(build)
    _build.ensure_built()
    assert _sha(build.library) == _sha(good_library())
    assert cache.compiles == 2
    err = capfd.readouterr().err
    assert "refusing the cached op" in err and "truncated or corrupted" in err


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"sha256": 3}', "not json", '"x"'])
def test_unreadable_manifest_is_rebuilt(cache, text):
    build = _build.ensure_built()
    build.manifest.write_text(text)
    assert not _build.cached_library_is_valid(build)
    _build.ensure_built()
    assert _build.cached_library_is_valid(build)
    assert cache.compiles == 2


def test_manifest_of_another_build_is_refused(cache):
    build = _build.ensure_built()
    manifest = json.loads(build.manifest.read_text())
    build.manifest.write_text(json.dumps({**manifest, "key": "tf0.0-other"}))
    assert "belongs to another build" in _build_compile.library_problem(build)


def _assert_rebuilt_privately(cache: Cache, build, capfd, reason: str) -> None:
    assert not _build.cached_library_is_valid(build)
    assert reason in _build_compile.library_problem(build)
    _build.ensure_built()
    assert _build.cached_library_is_valid(build)
    for path in (build.directory, build.library, build.manifest):
        info = os.lstat(path)
        assert info.st_uid == os.geteuid() and not stat.S_ISLNK(info.st_mode)
        assert info.st_mode & 0o022 == 0
    assert _mode(build.directory) == 0o700
    assert _sha(build.library) == _sha(good_library())
    assert cache.compiles == 2
    err = capfd.readouterr().err
    assert "refusing the cached op" in err and reason in err


def test_library_owned_by_another_user_is_refused_and_rebuilt(cache, capfd):
    build = _build.ensure_built()
    _chown_other(build.library)
    _assert_rebuilt_privately(cache, build, capfd, f"owned by {_build_cache._user(OTHER_UID)}")


def test_manifest_owned_by_another_user_is_refused_and_rebuilt(cache, capfd):
    build = _build.ensure_built()
    _chown_other(build.manifest)
    _assert_rebuilt_privately(cache, build, capfd, f"owned by {_build_cache._user(OTHER_UID)}")


@pytest.mark.parametrize("mode", [0o720, 0o702, 0o777], ids=oct)
def test_library_writable_by_group_or_others_is_refused_and_rebuilt(cache, capfd, mode):
    build = _build.ensure_built()
    build.library.chmod(mode)
    _assert_rebuilt_privately(cache, build, capfd, "writable by group or others")


def test_key_directory_owned_by_another_user_is_refused_and_replaced(cache, capfd):
    build = _build.ensure_built()
    planted = build.directory / "planted"
    planted.write_text("not ours")
    _chown_other(build.directory)
    _assert_rebuilt_privately(cache, build, capfd, f"owned by {_build_cache._user(OTHER_UID)}")
    assert not planted.exists()
    assert not list(build.directory.parent.glob("*.refused-*"))


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777], ids=oct)
def test_key_directory_writable_by_group_or_others_is_refused_and_replaced(cache, capfd, mode):
    build = _build.ensure_built()
    build.directory.chmod(mode)
    _assert_rebuilt_privately(cache, build, capfd, "writable by group or others")


def test_symlinked_key_directory_is_refused_even_if_its_target_is_valid(cache, tmp_path, capfd):
    build = _build.ensure_built()
    elsewhere = tmp_path / "elsewhere"
    build.directory.rename(elsewhere)
    build.directory.symlink_to(elsewhere, target_is_directory=True)
    _assert_rebuilt_privately(cache, build, capfd, "is a symbolic link")
    assert elsewhere.is_dir(), "the symlink's target must not be touched"


def test_symlinked_library_is_refused(cache, tmp_path, capfd):
    build = _build.ensure_built()
    copy = tmp_path / "copy.so"
    copy.write_bytes(build.library.read_bytes())
    build.library.unlink()
    build.library.symlink_to(copy)
    _assert_rebuilt_privately(cache, build, capfd, "is a symbolic link")


def test_library_that_is_a_directory_is_refused(cache, capfd):
    build = _build.ensure_built()
    build.library.unlink()
    build.library.mkdir()
    _assert_rebuilt_privately(cache, build, capfd, "is not a regular file")


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o707], ids=oct)
def test_cache_dir_writable_by_others_is_an_error(cache, tmp_path, monkeypatch, mode):
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(mode)
    monkeypatch.setenv("TFXENT_CACHE_DIR", str(root))
    with pytest.raises(_build.BuildError) as raised:
        _build.ensure_built()
    message = str(raised.value)
    assert "refusing TFXENT_CACHE_DIR" in message and "writable by group or others" in message
    assert "directory only you can write" in message
    assert list(root.iterdir()) == [] and cache.compiles == 0


def test_cache_dir_owned_by_another_user_is_an_error(cache, tmp_path, monkeypatch):
    root = tmp_path / "theirs"
    root.mkdir(mode=0o700)
    _chown_other(root)
    monkeypatch.setenv("TFXENT_CACHE_DIR", str(root))
    with pytest.raises(_build.BuildError, match="refusing TFXENT_CACHE_DIR.*owned by"):
        _build.ensure_built()
    assert cache.compiles == 0


def test_cache_dir_inside_a_directory_others_can_write_is_an_error(cache, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # not sticky: anyone could rename our cache and plant their own
    monkeypatch.setenv("TFXENT_CACHE_DIR", str(shared / "mine"))
    with pytest.raises(_build.BuildError, match="which contains it, is writable"):
        _build.ensure_built()
    assert not (shared / "mine").exists() and cache.compiles == 0


def test_cache_dir_inside_a_sticky_shared_directory_is_accepted(cache, tmp_path, monkeypatch):
    shared = tmp_path / "tmp-like"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: others cannot rename or delete our entries
    monkeypatch.setenv("TFXENT_CACHE_DIR", str(shared / "mine"))
    assert _build.cached_library_is_valid(_build.ensure_built())


def test_cache_dir_through_a_symlink_is_resolved_then_checked(cache, tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("TFXENT_CACHE_DIR", str(link))
    build = _build.ensure_built()
    assert build.directory.parent == real.resolve()
    real.chmod(0o777)
    with pytest.raises(_build.BuildError, match="writable by group or others"):
        _build.plan()


def test_unsafe_default_cache_falls_back_to_a_private_directory(
    cache, tmp_path, monkeypatch, capfd
):
    xdg = tmp_path / "xdg"
    (xdg / "tfxent").mkdir(parents=True)
    (xdg / "tfxent").chmod(0o777)
    temp = tmp_path / "temp"
    temp.mkdir()
    temp.chmod(0o1777)
    monkeypatch.delenv("TFXENT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    build = _build.ensure_built()
    fallback = temp / f"tfxent-{os.geteuid()}"
    assert build.directory.parent == fallback.resolve()
    assert _mode(fallback) == 0o700 and _build.cached_library_is_valid(build)
    assert list((xdg / "tfxent").iterdir()) == []
    err = capfd.readouterr().err
    assert f"refusing the build cache {(xdg / 'tfxent').resolve()}" in err
    assert f"Using {fallback.resolve()} instead" in err


def test_unsafe_default_cache_and_unsafe_fallback_is_an_error(cache, tmp_path, monkeypatch):
    xdg = tmp_path / "xdg"
    (xdg / "tfxent").mkdir(parents=True)
    (xdg / "tfxent").chmod(0o777)
    temp = tmp_path / "temp"
    (temp / f"tfxent-{os.geteuid()}").mkdir(parents=True)
    (temp / f"tfxent-{os.geteuid()}").chmod(0o777)  # squatted or misconfigured
    monkeypatch.delenv("TFXENT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(_build.BuildError, match="and the fallback"):
        _build.ensure_built()


def test_compile_failure_says_why_and_publishes_nothing(cache, monkeypatch):
    monkeypatch.setenv("TFXENT_TEST_CXX_FAIL", "expected ';' before '}' token")
    with pytest.raises(_build.BuildError) as raised:
        _build.ensure_built()
    message = str(raised.value)
    assert "could not build the custom op" in message
    assert "expected ';' before '}' token" in message
    assert "Full log:" in message and "TFXENT_FORCE_COMPOSITE=1" in message
    build = _build.plan()
    assert not build.library.exists() and not build.manifest.exists()
    assert list(build.directory.glob("*.tmp")) == []
    assert _mode(build.log) == 0o600
    monkeypatch.delenv("TFXENT_TEST_CXX_FAIL")
    assert _build.cached_library_is_valid(_build.ensure_built())


def test_leftovers_of_an_interrupted_build_are_removed(cache):
    build = _build.ensure_built()
    leftover = build.directory / "tmpabc.so.tmp"
    leftover.write_bytes(b"half a library")
    build.library.unlink()
    _build.ensure_built()
    assert not leftover.exists() and _build.cached_library_is_valid(build)


def test_forced_rebuild_compiles_again(cache):
    _build.ensure_built()
    _build.ensure_built(force=True)
    assert cache.compiles == 2


def test_sanitize_switch_changes_the_key_and_adds_the_flags(cache, monkeypatch):
    normal = _build.plan()
    monkeypatch.setenv("TFXENT_SANITIZE", "address")
    sanitized = _build.plan()
    assert sanitized.key != normal.key and sanitized.key.endswith("-address")
    assert sanitized.sanitize == "address"
    assert {"-fsanitize=address", "-fno-omit-frame-pointer"} <= set(sanitized.command)
    assert "-fsanitize=address" not in normal.command
    for build in (normal, sanitized):
        assert "-DNDEBUG" in build.command
        assert not [flag for flag in build.command if flag.startswith("-std=")]
    monkeypatch.setenv("TFXENT_SANITIZE", "thread")
    with pytest.raises(_build.BuildError, match="TFXENT_SANITIZE='thread' is not supported"):
        _build.plan()


def test_features_tf_headers_reject_are_switched_off(monkeypatch):
    # TF's Eigen fails to compile with AVX512-FP16 (seen on a Sapphire Rapids host, g++ 12).
    monkeypatch.setenv("TFXENT_ISA", "native")
    with_fp16 = _build.optimisation_flags("-mavx2 -mavx512f -mavx512fp16 -mno-amx-fp16")
    assert with_fp16[-1] == "-mno-avx512fp16" and "-march=native" in with_fp16
    assert "-mno-avx512fp16" not in _build.optimisation_flags("-mavx2 -mno-avx512fp16")


def test_kernel_variants_follow_the_tf_version(monkeypatch):
    """TF 2.16's dense kernel is a plain loop per row (docs/exactness.md): the op compiled for
    that version, and only for it, selects the same loop; the build passes the installed TF's
    variants to the compiler."""
    assert _build_flags.kernel_variant_flags("2.16.2") == ("-DXENT_DENSE_ROW_LOOP=1",)
    for version in ("2.12.1", "2.15.1", "2.17.1", "2.21.0"):
        assert _build_flags.kernel_variant_flags(version) == ()
    monkeypatch.setattr(_build_flags, "kernel_variant_flags", lambda: ("-DXENT_PROBE=1",))
    assert "-DXENT_PROBE=1" in _build.plan().command


def test_sanitized_library_is_not_loaded_without_the_runtime(cache, monkeypatch):
    """dlopen of an ASan library into a process without the ASan runtime aborts it; tfxent
    refuses first and says how to run it."""
    monkeypatch.setenv("TFXENT_SANITIZE", "address")
    monkeypatch.setattr(_build, "_loaded", {})
    monkeypatch.setattr(_build, "_asan_runtime_loaded", lambda: False)
    with pytest.raises(_build.BuildError, match="LD_PRELOAD=.*asan.*ASAN_OPTIONS=detect_leaks=0"):
        _build.load()
    assert "module" not in _build._loaded and _build.loaded_path() is None


def test_sanitizer_preload_names_the_asan_and_cxx_runtimes():
    preload = _build.sanitizer_preload()
    assert preload is not None
    paths = preload.split()
    assert all(os.path.isfile(path) for path in paths)
    assert "asan" in Path(paths[0]).name and "c++" in Path(paths[-1]).name


def test_waiting_for_the_lock_says_who_holds_it_then_gives_up(cache, monkeypatch, capfd):
    build = _build.plan()
    _build_cache.private_root(build.directory.parent)
    lock_path = build.directory.parent / f"{build.key}.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import filelock, sys, time\n"
            f"lock = filelock.FileLock({str(lock_path)!r})\n"
            "lock.acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        (build.directory.parent / f"{build.key}.owner").write_text(str(holder.pid))
        monkeypatch.setattr(_build_cache, "_LOCK_NOTICE_S", 0.2)
        monkeypatch.setattr(_build_cache, "_LOCK_TIMEOUT_S", 0.5)
        started = time.monotonic()
        with pytest.raises(_build.BuildError) as raised:
            _build.ensure_built()
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()
    assert f"held by PID {holder.pid}" in str(raised.value)
    assert str(lock_path) in str(raised.value)
    assert f"waiting for {lock_path} (held by PID {holder.pid}" in capfd.readouterr().err
    assert cache.compiles == 0
    # The lock dies with its holder: the next build goes ahead.
    assert _build.cached_library_is_valid(_build.ensure_built())


def test_doctor_report_reflects_the_cache(cache):
    from tfxent.cli import doctor

    _build.ensure_built()
    info = doctor.report()
    assert info["built"] is True
    assert info["library"].startswith(str(cache.root.resolve()))
