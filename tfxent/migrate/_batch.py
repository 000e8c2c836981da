"""Migrating a tree: finding the files, the text check that skips most of them before any
parse, worker processes for large trees, and where the time went (``--stats``)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import time
from pathlib import Path

from tfxent.migrate._files import may_need_migration, migrate_file
from tfxent.migrate._options import Options
from tfxent.migrate._report import MigrationResult

_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
# Below this many files to parse, starting worker processes costs more than it saves.
PARALLEL_MIN_FILES = 16


def _excluded(path: Path, excluded: frozenset[Path]) -> bool:
    return path in excluded or any(parent in excluded for parent in path.parents)


def collect(paths: list[str], exclude: list[str] = ()) -> list[tuple[Path, str]]:
    """Files to migrate, with the name to show for each; raises FileNotFoundError for a
    path that does not exist. ``exclude``: files or directories to leave out."""
    excluded = frozenset(Path(p).resolve() for p in exclude)
    found: dict[Path, str] = {}
    for given in paths:
        path = Path(given)
        if path.is_file():
            if not _excluded(path.resolve(), excluded):
                found.setdefault(path.resolve(), given)
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.startswith(".")
                    and d not in _SKIP_DIRS
                    and Path(root, d).resolve() not in excluded
                )
                if _excluded(Path(root).resolve(), excluded):
                    continue
                for name in sorted(files):
                    file = Path(root, name)
                    if name.endswith((".py", ".ipynb")) and file.resolve() not in excluded:
                        found.setdefault(file.resolve(), file.as_posix())
        else:
            raise FileNotFoundError(given)
    return list(found.items())


@dataclasses.dataclass
class Stats:
    """What ``--stats`` prints: file counts, and seconds per phase."""

    read: int = 0
    skipped: int = 0
    parsed: int = 0
    rewritten: int = 0
    failed: int = 0
    processes: int = 1
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def lap(self, phase: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - start
        return now

    def to_text(self) -> str:
        s = self.seconds
        return (
            f"tfxent migrate: {self.read} file(s) read, {self.skipped} skipped by the text "
            f"check, {self.parsed} parsed, {self.rewritten} with changes, {self.failed} failed; "
            f"{self.processes} process(es)\n"
            f"  find files  {s.get('find', 0.0):8.3f} s\n"
            f"  text check  {s.get('check', 0.0):8.3f} s\n"
            f"  migrate     {s.get('migrate', 0.0):8.3f} s wall "
            f"(parse {s.get('parse', 0.0):.3f} s, rewrite {s.get('rewrite', 0.0):.3f} s, "
            "summed over files)\n"
            f"  output      {s.get('output', 0.0):8.3f} s\n"
        )


def _migrate_one(
    item: tuple[Path, str, Options],
) -> tuple[MigrationResult, dict[str, float]]:
    path, display, options = item
    timings: dict[str, float] = {}
    result = migrate_file(
        path, display, pin_v1=options.pin_v1, tf0_order=options.tf0_order, timings=timings
    )
    return result, timings


def migrate_files(
    files: list[tuple[Path, str]], options: Options, jobs: int, stats: Stats
) -> list[MigrationResult]:
    """Migrate ``files`` in memory, in order; ``jobs`` > 1 allows worker processes."""
    start = time.perf_counter()
    results: dict[int, MigrationResult] = {}
    todo: list[tuple[int, tuple[Path, str, Options]]] = []
    for number, (path, display) in enumerate(files):
        try:
            raw = path.read_bytes()
        except OSError:
            raw = b"cross_entropy"  # let migrate_file report the read error
        stats.read += 1
        if may_need_migration(raw):
            todo.append((number, (path, display, options)))
        else:
            results[number] = MigrationResult(display, "", "", [], skipped=True)
            stats.skipped += 1
    start = stats.lap("check", start)

    items = [item for _, item in todo]
    if jobs > 1 and len(items) >= PARALLEL_MIN_FILES:
        stats.processes = min(jobs, len(items))
        # Spawned workers import only what migrating needs (never TensorFlow, even when
        # this process has it loaded, which would make forking unsafe).
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(stats.processes, mp_context=context) as pool:
            chunk = max(1, len(items) // (4 * stats.processes))
            outcomes = list(pool.map(_migrate_one, items, chunksize=chunk))
    else:
        outcomes = [_migrate_one(item) for item in items]
    for (number, _), (result, timings) in zip(todo, outcomes, strict=True):
        results[number] = result
        stats.parsed += 1
        for phase, seconds in timings.items():
            stats.seconds[phase] = stats.seconds.get(phase, 0.0) + seconds
    stats.lap("migrate", start)
    ordered = [results[number] for number in range(len(files))]
    stats.rewritten = sum(r.changed for r in ordered)
    stats.failed = sum(r.failed for r in ordered)
    return ordered
