"""Seed sources: any file, folder or Hub id in, a stream of raw rows with their location.

Sources stream row by row (JSONL, Parquet batches, CSV, TSV, a local Hugging Face dataset
folder, or a Hub id in streaming mode) so that a million-row file never sits in memory;
text files are read by `seeds.text`. The manifest records each source's fingerprint
(`describe_source`), so that a resumed run can tell that its source changed.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError
from dvsynth.seeds.raw import RawRow
from dvsynth.seeds.text import is_json_array, iter_csv, iter_json, iter_tsv

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
BUNDLED_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample_seeds.jsonl"
#: Seconds a Hub seed source's revision lookup may take before the run goes on without it.
HUB_TIMEOUT_S = 5.0


def describe_source(spec: str, content: bool = True) -> dict[str, Any]:
    """A fingerprint of the seed source for the manifest: what it is and its state now.

    A file by size, mtime and content hash, a folder by its data files' count, size,
    latest mtime and combined hash, a Hub dataset by the commit its main branch points at
    (`source_changes` compares two). The hash catches an edit that keeps size and mtime
    (`cp -p`, `touch -r`); it reads the source (about 1 s per GB here), so `content=False`
    leaves it out where only the source's name is wanted.
    """
    path = Path(spec)
    if path.is_file():
        stat = path.stat()
        return {
            "kind": "file",
            "path": str(path.resolve()),
            "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": _digest([("", path)]) if content else None,
        }
    if path.is_dir():
        files = [f for f in sorted(path.rglob("*")) if f.is_file() and _is_data(f)]
        stats = [f.stat() for f in files]
        return {
            "kind": "folder",
            "path": str(path.resolve()),
            "files": len(stats),
            "bytes": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
            "sha256": _digest([(f.relative_to(path).as_posix(), f) for f in files])
            if content
            else None,
        }
    if not HUB_ID.match(spec):
        return {"kind": "hub", "id": spec}  # not a source at all: reading it fails clearly
    revision, error = _hub_revision(spec)
    found: dict[str, Any] = {"kind": "hub", "id": spec, "revision": revision}
    if error:
        found["revision_error"] = error
    return found


def _digest(files: list[tuple[str, Path]]) -> str | None:
    """sha256 over the files' bytes, each after its name within the folder ("" for a
    lone file); None if one cannot be read now (reading the seeds then says why)."""
    digest = hashlib.sha256()
    try:
        for name, path in files:
            digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def source_changes(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """How the source differs from its fingerprint in a run's manifest ([] when it does
    not, or when either side does not know: a Hub revision not resolved, an older
    manifest without the field)."""
    changes = []
    for key, what in (("files", "data files"), ("bytes", "bytes"), ("revision", "revision")):
        old, new = recorded.get(key), now.get(key)
        if old is not None and new is not None and old != new:
            changes.append(f"{what} {old} -> {new}")
    old, new = recorded.get("mtime_ns"), now.get("mtime_ns")
    if old is not None and new is not None and old != new:
        changes.append(f"modified {_when(old)} -> {_when(new)}")
    old, new = recorded.get("sha256"), now.get("sha256")
    if not changes and old is not None and new is not None and old != new:
        changes.append(f"content sha256 {old[:12]} -> {new[:12]} (same size and time)")
    return changes


def _when(mtime_ns: int) -> str:
    moment = datetime.fromtimestamp(mtime_ns / 1e9, timezone.utc)
    return moment.isoformat(sep=" ", timespec="seconds")


@functools.lru_cache(maxsize=16)
def _hub_revision(repo_id: str) -> tuple[str | None, str | None]:
    """(commit sha of the dataset's main branch, None) or (None, why it is unknown).

    The sha says which data a run read, as a file's size and mtime do. An unreachable
    Hub must not stop or stall the run (the reader may still hit a local cache), so the
    lookup runs in a daemon thread that is given HUB_TIMEOUT_S, and is done once per id.
    """
    result: dict[str, Any] = {}

    def resolve() -> None:
        try:
            from huggingface_hub import HfApi

            info = HfApi().dataset_info(repo_id, revision=None, timeout=HUB_TIMEOUT_S)
            result["sha"] = info.sha
        except Exception as exc:  # offline, unknown repo, no permission: all say "unknown"
            result["error"] = type(exc).__name__

    thread = threading.Thread(target=resolve, name="dvsynth-hub-revision", daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S)
    if result.get("sha"):
        return str(result["sha"]), None
    reason = result.get("error") or f"no answer within {HUB_TIMEOUT_S:g}s"
    return None, f"revision not resolved ({reason})"


def estimate_total(spec: str) -> int | None:
    """Row count for the progress bar when it is cheap to know; None when it is not."""
    path = Path(spec)
    if not path.is_file():
        return None
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if is_json_array(path):
        return None  # one line holds many rows
    if name.endswith((".jsonl", ".json", ".csv", ".tsv")) and path.stat().st_size < 2**30:
        with path.open("rb") as handle:
            count = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        return count - 1 if name.endswith((".csv", ".tsv")) else count
    return None


def iter_raw_rows(spec: str, split: str = "train") -> Iterator[RawRow]:
    """Stream the rows of any supported source; a unreadable source is a UserError.

    One rule for every kind: a row that cannot be read is a bad row at its location and
    reading goes on. A folder of data files is read file by file with the readers of
    those files (the files `load_dataset` would take for the split); only a Hub stream,
    which cannot be resumed past an unreadable row, stops there with a UserError.
    """
    path = Path(spec)
    if path.is_file():
        yield from _iter_file(path)
    elif path.is_dir():
        yield from _iter_folder(path, split)
    elif HUB_ID.match(spec):
        yield from _iter_hf(spec, split, local=False)
    else:
        raise UserError(f"{spec}: no such seed file or folder")


_READERS: tuple[tuple[tuple[str, ...], Callable[[Path], Iterator[RawRow]]], ...] = (
    ((".jsonl", ".json", ".jsonl.gz", ".json.gz"), iter_json),
    ((".parquet",), lambda path: _iter_parquet(path)),
    ((".csv", ".csv.gz"), iter_csv),
    ((".tsv", ".tsv.gz"), iter_tsv),
)
DATA_SUFFIXES = tuple(suffix for suffixes, _ in _READERS for suffix in suffixes)


def _is_data(path: Path) -> bool:
    return path.name.lower().endswith(DATA_SUFFIXES)


def _iter_file(path: Path) -> Iterator[RawRow]:
    name = path.name.lower()
    for suffixes, reader in _READERS:
        if name.endswith(suffixes):
            return reader(path)
    raise UserError(
        f"{path}: unsupported seed file type "
        "(use .jsonl, .json, .parquet, .csv, .tsv; .gz for the text formats)"
    )


def _iter_folder(folder: Path, split: str) -> Iterator[RawRow]:
    """A `save_to_disk` folder, or the data files of `split` read with the file readers."""
    if (folder / "dataset_dict.json").exists() or (folder / "state.json").exists():
        yield from _iter_hf(str(folder), split, local=True)
        return
    files = _split_files(folder, split)
    if not all(_is_data(file) for file in files):  # types only `datasets` reads
        yield from _iter_hf(str(folder), split, local=True)
        return
    for file in files:
        yield from _iter_file(file)


def _split_files(folder: Path, split: str) -> list[Path]:
    """The files `load_dataset(folder, split=split)` reads: its own split patterns, or the
    README's `configs`, so a folder means here what it means to `datasets`."""
    import datasets

    try:
        found = datasets.load_dataset_builder(str(folder)).config.data_files or {}
    except Exception as exc:  # no data files, an unreadable README: the folder's problem
        raise UserError(f"{folder}: cannot open folder ({type(exc).__name__}: {exc})") from None
    files = {str(name): [Path(file) for file in paths] for name, paths in found.items()}
    if split not in files:
        raise UserError(f"{folder}: no split '{split}' (splits: {', '.join(files) or 'none'})")
    return files[split]


def _iter_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for data in batch.to_pylist():
            number += 1
            yield RawRow(f"{path}:row {number}", data)


def _iter_hf(spec: str, split: str, local: bool) -> Iterator[RawRow]:
    """A `save_to_disk` folder, a folder of files only `datasets` reads, or a Hub id."""
    import datasets

    try:
        folder = Path(spec)
        saved = (folder / "dataset_dict.json").exists() or (folder / "state.json").exists()
        if local and saved:
            loaded = datasets.load_from_disk(spec)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise UserError(f"{spec}: no split '{split}' (splits: {', '.join(loaded)})")
                loaded = loaded[split]
            rows = iter(loaded)
        else:
            # The commit the manifest records (None when unknown: then the Hub's main).
            revision = None if local else _hub_revision(spec)[0]
            rows = iter(datasets.load_dataset(spec, split=split, streaming=True, revision=revision))
    except UserError:
        raise
    except Exception as exc:
        where = "folder" if local else "Hugging Face Hub dataset"
        raise UserError(f"{spec}: cannot open {where} ({type(exc).__name__}: {exc})") from None
    number = 0
    while True:
        try:
            data = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # a stream cannot be read past it; a folder's files can
            raise UserError(
                f"{spec}: reading failed after row {number} ({exc}); download the "
                "dataset's files and pass their folder as --seeds to skip bad rows"
            ) from None
        number += 1
        yield RawRow(f"{spec}[{split}]:row {number}", data)
