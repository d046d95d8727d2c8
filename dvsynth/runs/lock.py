"""One writer per run: an exclusive OS advisory lock on `<run>/.dvsynth.lock`.

Two processes writing one run would pay every call twice and race each other's commits,
so every command that writes a run (generate, validate, batch status / cancel / import,
run RECIPE) holds this lock for its whole life; readers (stats, export, view) take none.
The kernel drops the lock when its process dies, so a SIGKILL never leaves a stale lock,
and the file's content (the holder's PID) is only a hint for the refusal message.

Within one process the lock is counted: stores that open the same run share it. A CLI
command pins every lock it takes (`command_scope`) until it ends, so nothing can slip in
between two stages of one command (generate --validate, run RECIPE).
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dvsynth.errors import UserError

LOCK_FILE = ".dvsynth.lock"

try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class RunLocked(UserError):
    """Another process writes this run."""


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[str, _Held] = {}
_scopes: list[set[str]] = []
_guard = threading.Lock()


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        pid = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "another process"


def _open_lock_file(path: Path) -> int:
    """The lock file, opened without following a link and checked to be a plain file: a
    run folder copied from elsewhere must not make the lock truncate another file (its
    PID is written into it) or block on a FIFO."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        reason = "is a link" if os.path.islink(path) else exc.strerror
        raise UserError(
            f"{path}: cannot open the run's lock ({reason}); remove it and rerun"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path}: the run's lock is not a plain file; remove it and rerun")
    return fd


def acquire(run_dir: Path) -> None:
    """Take the run's lock (or one more count of it); a RunLocked error if another process
    holds it. `run_dir` must exist."""
    key = _key(run_dir)
    with _guard:
        held = _held.get(key)
        if held is None:
            path = Path(run_dir) / LOCK_FILE
            fd = _open_lock_file(path)
            if not _try_lock(fd):
                holder = _holder(fd)
                os.close(fd)
                raise RunLocked(
                    f"{run_dir}: another dvsynth command ({holder}) is writing this run; "
                    "wait for it to finish or stop it, then rerun"
                )
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode("ascii"))
            held = _held[key] = _Held(fd, 0)
        held.count += 1
        if _scopes and key not in _scopes[-1]:
            _scopes[-1].add(key)  # the command's own count, dropped when it ends
            held.count += 1


def release(run_dir: Path) -> None:
    """Drop one count; the lock goes when no store and no command holds it."""
    _release(_key(run_dir))


def _release(key: str) -> None:
    with _guard:
        held = _held.get(key)
        if held is None:
            return
        held.count -= 1
        if held.count > 0:
            return
        del _held[key]
        try:
            _unlock(held.fd)
        finally:
            os.close(held.fd)


def holds(run_dir: Path) -> bool:
    """Whether this process holds the run's lock."""
    return _key(run_dir) in _held


@contextmanager
def command_scope(written: list[str] | None = None) -> Iterator[None]:
    """Keep every lock taken inside until the scope ends (one CLI command); `written`,
    if given, is filled with the runs locked (what an interrupt's message reports)."""
    with _guard:
        _scopes.append(set())
    try:
        yield
    finally:
        with _guard:
            keys = _scopes.pop()
        if written is not None:
            written.extend(sorted(keys))
        for key in keys:
            _release(key)
