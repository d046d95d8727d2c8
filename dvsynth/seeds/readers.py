"""Seed sources: any file, folder or Hub id in, a stream of raw rows with their location.

Sources stream row by row (JSONL, Parquet batches, CSV, TSV, a local Hugging Face dataset
folder, or a Hub id in streaming mode) so that a million-row file never sits in memory.
Text files are decoded line by line, so a byte that is not UTF-8 is a bad row naming its
line (like a line of invalid JSON), not a crash or a run stopped at row 900,000.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
BUNDLED_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample_seeds.jsonl"
#: Seconds a Hub seed source's revision lookup may take before the run goes on without it.
HUB_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RawRow:
    """A source row before adaptation, with a human-readable location ("f.jsonl:12")."""

    location: str
    data: dict[str, Any] | None
    error: str | None = None


def describe_source(spec: str) -> dict[str, Any]:
    """A fingerprint of the seed source for the manifest: what it is and its state now.

    A file by size and mtime, a Hub dataset by the commit its main branch points at.
    """
    path = Path(spec)
    if path.is_file():
        stat = path.stat()
        return {
            "kind": "file",
            "path": str(path.resolve()),
            "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
        }
    if path.is_dir():
        return {"kind": "folder", "path": str(path.resolve())}
    if not HUB_ID.match(spec):
        return {"kind": "hub", "id": spec}  # not a source at all: reading it fails clearly
    revision, error = _hub_revision(spec)
    found: dict[str, Any] = {"kind": "hub", "id": spec, "revision": revision}
    if error:
        found["revision_error"] = error
    return found


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
    if name.endswith((".jsonl", ".json", ".csv", ".tsv")) and path.stat().st_size < 2**30:
        with path.open("rb") as handle:
            count = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        return count - 1 if name.endswith((".csv", ".tsv")) else count
    return None


def iter_raw_rows(spec: str, split: str = "train") -> Iterator[RawRow]:
    """Stream the rows of any supported source; a unreadable source is a UserError."""
    path = Path(spec)
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
            yield from _iter_jsonl(path)
        elif name.endswith(".parquet"):
            yield from _iter_parquet(path)
        elif name.endswith((".csv", ".csv.gz")):
            yield from _iter_csv(path)
        elif name.endswith((".tsv", ".tsv.gz")):
            yield from _iter_tsv(path)
        else:
            raise UserError(
                f"{spec}: unsupported seed file type "
                "(use .jsonl, .parquet, .csv, .tsv; .gz for the text formats)"
            )
    elif path.is_dir():
        yield from _iter_hf(spec, split, local=True)
    elif HUB_ID.match(spec):
        yield from _iter_hf(spec, split, local=False)
    else:
        raise UserError(f"{spec}: no such seed file or folder")


def _lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, error) per line; a line that is not UTF-8 carries its error.

    Its text is then decoded with replacement characters, so that a CSV reader keeps its
    place; readers report the error instead of using that text.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)  # a BOM is not data
                try:
                    yield number, raw.decode("utf-8"), None
                except UnicodeDecodeError as exc:
                    byte, column = raw[exc.start], exc.start + 1
                    error = f"not UTF-8 text (byte 0x{byte:02x} at column {column})"
                    yield number, raw.decode("utf-8", errors="replace"), error
    except (OSError, EOFError) as exc:  # a corrupt or truncated .gz
        raise UserError(f"{path}: cannot read ({exc})") from None


def _iter_jsonl(path: Path) -> Iterator[RawRow]:
    for number, line, error in _lines(path):
        location = f"{path}:{number}"
        if error is not None:
            yield RawRow(location, None, error)
            continue
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RawRow(location, None, f"invalid JSON ({exc.msg})")
            continue
        if not isinstance(data, dict):
            yield RawRow(location, None, "a row must be a JSON object")
            continue
        yield RawRow(location, data)


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


def _header(path: Path, number: int, error: str | None, fields: list[str]) -> list[str]:
    """The column names; a header that cannot be read stops the run (no row has columns)."""
    if error is not None:
        raise UserError(f"{path}:{number}: header is {error}")
    if not any(name.strip() for name in fields):
        raise UserError(f"{path}:{number}: empty header row (the first row names the columns)")
    return fields


def _row(path: Path, number: int, header: list[str], fields: list[str], kind: str) -> RawRow:
    if len(fields) != len(header):
        return RawRow(
            f"{path}:{number}",
            None,
            f"{len(fields)} {kind} fields where the header has {len(header)}",
        )
    return RawRow(f"{path}:{number}", dict(zip(header, fields, strict=True)))


def _iter_tsv(path: Path) -> Iterator[RawRow]:
    """Plain tab-separated lines: no quoting, so a `"` inside a passage stays text."""
    header: list[str] | None = None
    for number, line, error in _lines(path):
        line = line.rstrip("\r\n")
        if header is None:
            if line or error is not None:
                header = _header(path, number, error, line.split("\t"))
            continue
        if error is not None:
            yield RawRow(f"{path}:{number}", None, error)
        elif line:
            yield _row(path, number, header, line.split("\t"), "tab-separated")


def _iter_csv(path: Path) -> Iterator[RawRow]:
    """RFC 4180 CSV (quoted fields may span lines); a record with a bad line is a bad row."""
    csv.field_size_limit(2**31 - 1)
    bad: dict[int, str] = {}

    def text() -> Iterator[str]:
        for number, line, error in _lines(path):
            if error is not None:
                bad[number] = error
            yield line

    reader = csv.reader(text())
    header: list[str] | None = None
    last = 0  # the line the previous record ended on
    try:
        for fields in reader:
            first, last = last + 1, reader.line_num
            errors = [(n, bad.pop(n)) for n in range(first, last + 1) if n in bad]
            if header is None:
                error = errors[0][1] if errors else None
                if fields or error is not None:
                    header = _header(path, first, error, fields)
            elif errors:
                number, error = errors[0]
                yield RawRow(f"{path}:{number}", None, error)
            elif fields:
                yield _row(path, last, header, fields, "comma-separated")
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: not readable as CSV ({exc})") from None


def _iter_hf(spec: str, split: str, local: bool) -> Iterator[RawRow]:
    """A local HF dataset folder (save_to_disk or data files) or a Hub id, streamed."""
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
        except Exception as exc:
            raise UserError(f"{spec}: reading failed after row {number} ({exc})") from None
        number += 1
        yield RawRow(f"{spec}[{split}]:row {number}", data)
