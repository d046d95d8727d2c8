"""Seed readers and adapters: any source in, a stream of validated `Seed` records out.

Sources stream row by row (JSONL, Parquet batches, CSV, TSV, a local Hugging Face dataset
folder, or a Hub id in streaming mode) so that a million-row file never sits in memory.
Text files are decoded line by line, so a byte that is not UTF-8 is a bad row naming its
line (like a line of invalid JSON), not a crash or a run stopped at row 900,000.
Adapters turn a source row into a Seed: the Promptriever training format, or plain
triples with an optional column mapping. A bad row becomes a `SeedError` naming its
file and line; it never stops the stream unless the caller asks for strict mode.
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
from typing import Any, Literal

from pydantic import ValidationError

from dvsynth.errors import UserError
from dvsynth.schema import Doc, Seed, SeedError, short_hash

SeedFormat = Literal["auto", "promptriever", "triples"]

#: Fields a plain-triples row is read from; `--map field=column` renames columns onto them.
TRIPLE_FIELDS = ("id", "query", "instruction", "positive", "negative", "other_negatives")
REQUIRED_TRIPLE_FIELDS = ("query", "positive", "negative")
PROMPTRIEVER_FIELDS = ("query_id", "only_query", "only_instruction", "positive_passages")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
BUNDLED_SAMPLE = Path(__file__).parent / "data" / "sample_seeds.jsonl"
#: Seconds a Hub seed source's revision lookup may take before the run goes on without it.
HUB_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RawRow:
    """A source row before adaptation, with a human-readable location ("f.jsonl:12")."""

    location: str
    data: dict[str, Any] | None
    error: str | None = None


def parse_mapping(spec: str | None) -> dict[str, str]:
    """Parse `query=col,positive=col` into {field: column}; bad syntax is a UserError."""
    if not spec:
        return {}
    mapping: dict[str, str] = {}
    for part in spec.split(","):
        field, sep, column = part.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise UserError(f"--map: '{part}' is not field=column (e.g. --map query=question)")
        if field not in TRIPLE_FIELDS:
            raise UserError(
                f"--map: unknown field '{field}'; fields are {', '.join(TRIPLE_FIELDS)}"
            )
        mapping[field] = column
    return mapping


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


# --------------------------------------------------------------------------- adapters


def detect_format(data: dict[str, Any]) -> SeedFormat:
    return "promptriever" if all(key in data for key in PROMPTRIEVER_FIELDS) else "triples"


def check_columns(
    data: dict[str, Any], fmt: SeedFormat, mapping: dict[str, str], source: str
) -> None:
    """Check the first row's columns so a wrong file or mapping fails at once, as a UserError."""
    columns = ", ".join(sorted(data)) or "none"
    if fmt == "promptriever":
        missing = [key for key in PROMPTRIEVER_FIELDS if key not in data]
        if missing:
            raise UserError(f"{source}: not in Promptriever format, missing {', '.join(missing)}")
        return
    for field, column in mapping.items():
        if column not in data:
            raise UserError(
                f"{source}: column '{column}' (from --map {field}={column}) not found; "
                f"columns are: {columns}"
            )
    for field in REQUIRED_TRIPLE_FIELDS:
        if mapping.get(field, field) not in data:
            raise UserError(
                f"{source}: no column '{field}'; columns are: {columns} "
                f"(use --map {field}=<column>)"
            )


class SeedRowError(ValueError):
    """A row that cannot become a Seed; the message says which field and why."""


def to_doc(value: Any, field: str) -> Doc:
    """A passage from text or from a {doc_id|docid|_id, title, text} object."""
    if isinstance(value, str):
        if not value.strip():
            raise SeedRowError(f"{field}: empty text")
        return Doc(doc_id=short_hash(value), text=value)
    if isinstance(value, dict):
        text = value.get("text")
        if not isinstance(text, str) or not text.strip():
            raise SeedRowError(f"{field}: missing or empty 'text'")
        title = value.get("title") or ""
        if not isinstance(title, str):
            raise SeedRowError(f"{field}: 'title' must be text")
        doc_id = next(
            (value[k] for k in ("doc_id", "docid", "_id", "id") if value.get(k) is not None), None
        )
        return Doc(
            doc_id=str(doc_id) if doc_id is not None else short_hash(title, text),
            title=title,
            text=text,
        )
    raise SeedRowError(
        f"{field}: expected text or an object with 'text', got {type(value).__name__}"
    )


def _to_docs(value: Any, field: str) -> list[Doc]:
    if value is None or value == "":
        return []
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SeedRowError(f"{field}: not a JSON list") from None
    if not isinstance(value, list):
        raise SeedRowError(f"{field}: expected a list of passages")
    return [to_doc(item, f"{field}[{i}]") for i, item in enumerate(value)]


def _text_field(data: dict[str, Any], key: str, column: str, required: bool) -> str | None:
    value = data.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise SeedRowError(f"{key}: missing or empty (column '{column}')")
        return None
    if not isinstance(value, str):
        raise SeedRowError(f"{key}: expected text, got {type(value).__name__}")
    return value.strip()


def adapt_triples(data: dict[str, Any], mapping: dict[str, str], source: str) -> Seed:
    col = {field: mapping.get(field, field) for field in TRIPLE_FIELDS}
    query = _text_field(data, "query", col["query"], required=True)
    instruction = _text_field(data, "instruction", col["instruction"], required=False)
    positive = to_doc(data.get(col["positive"]), "positive")
    negative = to_doc(data.get(col["negative"]), "negative")
    others = _to_docs(data.get(col["other_negatives"]), "other_negatives")
    source_id = data.get(col["id"], data.get("seed_id", data.get("_id")))
    seed_id = (
        str(source_id)
        if source_id not in (None, "")
        else short_hash(query or "", instruction or "", positive.text, negative.text)
    )
    return Seed(
        seed_id=seed_id,
        query=query or "",
        instruction=instruction,
        positive=positive,
        negative=negative,
        other_negatives=others,
        source=source,
    )


def adapt_promptriever(data: dict[str, Any], source: str) -> Seed | None:
    """A Promptriever row; None when it has no instruction negative (the paper skips those).

    The first instruction negative (`new_negatives`) becomes D-, the rest stay as
    `other_negatives`: they must remain irrelevant under the reversed instruction too.
    """
    if not data.get("has_instruction") or not data.get("new_negatives"):
        return None
    query = _text_field(data, "query", "only_query", required=True)
    instruction = _text_field(data, "instruction", "only_instruction", required=True)
    positives = _to_docs(data.get("positive_passages"), "positive_passages")
    if not positives:
        raise SeedRowError("positive_passages: empty")
    negatives = _to_docs(data.get("new_negatives"), "new_negatives")
    # The instruction hash keeps ids unique where one query_id carries several instructions.
    seed_id = f"{data['query_id']}-{short_hash(instruction or '', length=8)}"
    return Seed(
        seed_id=seed_id,
        query=query or "",
        instruction=instruction,
        positive=positives[0],
        negative=negatives[0],
        other_negatives=negatives[1:],
        source=source,
    )


@dataclass
class SeedReader:
    """Streams Seeds (or SeedErrors) from one source with one format and mapping."""

    spec: str
    fmt: SeedFormat = "auto"
    mapping: dict[str, str] | None = None
    split: str = "train"
    require_instruction: bool = False  # --mode reverse: a row without one is a bad row
    filtered: int = 0  # rows an adapter skipped on purpose (no instruction negatives)

    def check(self) -> None:
        """Open the source and check the first row's columns: fail before any work starts."""
        for raw in iter_raw_rows(self.spec, self.split):
            if raw.data is not None:
                fmt = detect_format(raw.data) if self.fmt == "auto" else self.fmt
                check_columns(raw.data, fmt, self.mapping or {}, self.spec)
                return
        # An empty source (or one without a single readable row) is checked by the run itself.

    def __iter__(self) -> Iterator[Seed | SeedError]:
        mapping = self.mapping or {}
        fmt = self.fmt
        checked = False
        for raw in iter_raw_rows(self.spec, self.split):
            if raw.error is not None or raw.data is None:
                yield SeedError(location=raw.location, reason=raw.error or "unreadable row")
                continue
            if not checked:
                if fmt == "auto":
                    fmt = detect_format(raw.data)
                check_columns(raw.data, fmt, mapping, self.spec)
                checked = True
            try:
                if fmt == "promptriever":
                    seed = adapt_promptriever(raw.data, self.spec)
                    if seed is None:
                        self.filtered += 1
                        continue
                else:
                    seed = adapt_triples(raw.data, mapping, self.spec)
            except SeedRowError as exc:
                yield SeedError(location=raw.location, reason=str(exc))
                continue
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                yield SeedError(location=raw.location, reason=f"{field}: {first['msg']}")
                continue
            if self.require_instruction and seed.instruction is None:
                yield SeedError(
                    location=raw.location,
                    reason="instruction: missing (required by --mode reverse)",
                )
                continue
            seed.location = raw.location  # for reports (duplicate ids), not identity
            yield seed
