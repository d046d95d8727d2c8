"""The folder an export goes to: dvsynth replaces only what an export wrote there.

An export lists its own files in its marker (`.dvsynth-export`). A later export may
replace a folder that holds nothing but those files (or a new or empty folder); a folder
that holds anything else, above all a run directory, is refused with one line and left
as it was, and so is an `--out` that is, holds or sits inside a run being exported.

The export is built in a new folder beside the target and swapped in only when complete,
so a failed or killed export leaves the previous one as it was; the previous export's
listed files are then removed. An `--out` that is a symlink is written through: its
target is replaced and the link kept. Folders are made by plain `mkdir`, so they get the
user's umask like any other folder they make.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from dvsynth.errors import UserError
from dvsynth.runs.store import DATABASE, MANIFEST

MARKER = ".dvsynth-export"
#: The files an export of an older dvsynth wrote (its marker did not list them yet).
_LEGACY = re.compile(r"^(README\.md|recipe\.yaml|[a-z_]+/[a-z_]+-\d{5}\.parquet)$")


def target_of(out: Path) -> Path:
    """The folder `out` names, symlinks followed: the one an export replaces."""
    return Path(os.path.realpath(out))


def _is_run(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and (folder / DATABASE).is_file()


def _written(folder: Path) -> Callable[[str], bool] | None:
    """Whether a path (relative, with /) is one the export in `folder` wrote, by its
    marker; None when `folder` holds no marker (no export wrote it)."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    try:
        listed = set(json.loads(marker.read_text(encoding="utf-8"))["files"])
    except (ValueError, KeyError, TypeError):  # an older dvsynth's marker: its own names
        return lambda rel: bool(_LEGACY.match(rel))
    return listed.__contains__


def _stray(folder: Path, written: Callable[[str], bool]) -> tuple[str | None, str | None]:
    """(first run directory, first other path) under `folder` that no export wrote."""
    stray = None
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if here != folder and _is_run(here):
            return str(here), None
        rel_root = here.relative_to(folder).as_posix()
        for name in sorted(files) + sorted(d for d in dirs if (here / d).is_symlink()):
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            if stray is None and rel != MARKER and not written(rel):
                stray = rel
    return None, stray


def check_out(out: Path, runs: Sequence[Path] = ()) -> None:
    """Refuse (one line) an `--out` that an export must not replace: a run being
    exported, or a folder around or inside one; a file; a folder holding anything that
    no export wrote, a run directory above all. Nothing is changed."""
    target = target_of(out)
    for run in runs:
        place = target_of(run)
        if target == place or place in target.parents or target in place.parents:
            where = "is" if target == place else "holds" if target in place.parents else "is inside"
            raise UserError(
                f"--out {out}: {where} the run {run} being exported, which an export there "
                "would delete or mix into the dataset; choose a folder outside every run"
            )
    if not target.exists():
        return
    if not target.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    written = _written(target)
    if _is_run(target):
        raise UserError(f"--out {out}: is a run directory; choose another --out")
    if written is None:
        runs_in = [p for p in sorted(target.iterdir()) if p.is_dir() and _is_run(p)]
        if runs_in:
            raise _holds_run(out, runs_in[0])
        if any(target.iterdir()):
            raise UserError(
                f"--out {out}: folder holds files that are not a dvsynth export "
                f"(no {MARKER}); choose another --out"
            )
        return
    run, stray = _stray(target, written)
    if run is not None:
        raise _holds_run(out, run)
    if stray is not None:
        raise UserError(
            f"--out {out}: holds {stray}, which no dvsynth export wrote; an export replaces "
            "only its own files: move it, or choose another --out"
        )


def _holds_run(out: Path, run: Path | str) -> UserError:
    return UserError(
        f"--out {out}: holds the run directory {run} ({MANIFEST}, {DATABASE}), which an "
        "export there would delete; move it, or choose another --out"
    )


def _new_name(parent: Path, name: str, suffix: str) -> Path:
    return parent / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.{suffix}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clear_leftovers(parent: Path, name: str) -> list[Path]:
    """Remove what a killed export of `name` left beside it: its half-built folder
    (`.NAME.PID.x.tmp`, only ever export output) and a previous export moved aside for
    the swap (`.NAME.PID.x.old`, its listed files only), once that PID is gone."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(\d+)\.[0-9a-f]{{8}}\.(tmp|old)$")
    removed = []
    for path in sorted(parent.iterdir()) if parent.is_dir() else []:
        found = pattern.match(path.name)
        if not found or not path.is_dir() or path.is_symlink() or _alive(int(found[1])):
            continue
        if found[2] == "tmp":
            shutil.rmtree(path)
        elif _written(path) is not None:
            try:
                _remove_written(path, path)
            except UserError:
                continue  # it holds files no export wrote: left as it is
        else:
            continue
        removed.append(path)
    return removed


def _new_folder(parent: Path, name: str) -> Path:
    """A new, empty folder beside the target, made with the umask (unlike mkdtemp)."""
    while True:
        path = _new_name(parent, name, "tmp")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _list_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != MARKER
    )


def _remove_written(old: Path, out: Path) -> None:
    """Delete the files the previous export listed, then its folders; a path that no
    export wrote (one that appeared while this export ran) is kept, and said."""
    written = _written(old) or (lambda rel: False)
    for rel in _list_files(old):
        if written(rel):
            (old / rel).unlink()
    (old / MARKER).unlink(missing_ok=True)
    for folder in sorted((p for p in old.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if any(old.iterdir()):
        raise UserError(
            f"--out {out}: the export is in place; files that appeared in the previous "
            f"one while it ran were kept in {old}"
        )
    old.rmdir()


@contextmanager
def staged_folder(out: Path, runs: Sequence[Path] = ()) -> Iterator[Path]:
    """A new folder to build the export in; once the body is done, its files are listed
    in its marker and it replaces `out`'s target (`check_out` first, against `runs`)."""
    check_out(out, runs)
    target = target_of(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(target.parent, target.name)
    staging = _new_folder(target.parent, target.name)
    try:
        yield staging
        marker = {"written_by": "dvsynth export", "files": _list_files(staging)}
        (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        if not target.exists():
            os.replace(staging, target)
            return
        old = _new_name(target.parent, target.name, "old")
        os.replace(target, old)
        os.replace(staging, target)
        _remove_written(old, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
