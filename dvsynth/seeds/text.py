"""Seed rows of text files: JSON lines, a JSON array, CSV and TSV.

Text is decoded line by line, so that a byte that is not UTF-8 is a bad row naming its
line (like a line of invalid JSON), not a crash or a run stopped at row 900,000; a file
that starts with a UTF-16 or UTF-32 byte-order mark (as Windows tools write them) is
decoded as such. One bad row never takes the rows after it: a CSV quote that opens a
field and never closes as meant is a bad row at the line where it opens, and reading goes
on from the next line.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from dvsynth.errors import UserError
from dvsynth.seeds.raw import RawRow

#: (line number, text, why the line is unreadable or None)
Line = tuple[int, str, str | None]

_WIDE = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose mark starts it
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
#: A `.json` array is read whole (JSON has no resync point); past this, JSON lines.
MAX_JSON_ARRAY_BYTES = 256 << 20
#: A CSV field longer than this is a quote that never closed, not a passage.
MAX_CSV_FIELD = 64 << 20


def lines(path: Path) -> Iterator[Line]:
    """(line number, text, error) per line; a line that is not UTF-8 carries its error.

    Its text is then decoded with replacement characters, so that a CSV reader keeps its
    place; readers report the error instead of using that text.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(0)
            wide = next((name for bom, name in _WIDE if head.startswith(bom)), None)
            yield from _wide_lines(path, handle, wide) if wide else _utf8_lines(path, handle)
    except (OSError, EOFError) as exc:  # a corrupt or truncated .gz
        raise UserError(f"{path}: cannot read ({exc})") from None


def _utf8_lines(path: Path, handle: IO[bytes]) -> Iterator[Line]:
    for number, raw in enumerate(handle, start=1):
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # a BOM is not data
            if b"\x00" in raw:
                raise UserError(
                    f"{path}: looks like UTF-16 text without a byte-order mark; "
                    "save it as UTF-8 (e.g. iconv -f UTF-16LE -t UTF-8)"
                )
        try:
            yield number, raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            byte, column = raw[exc.start], exc.start + 1
            error = f"not UTF-8 text (byte 0x{byte:02x} at column {column})"
            yield number, raw.decode("utf-8", errors="replace"), error


def _wide_lines(path: Path, handle: IO[bytes], encoding: str) -> Iterator[Line]:
    """A UTF-16 / UTF-32 file (its codec reads the byte-order mark); a bad unit stops it."""
    number = 0
    try:
        for number, line in enumerate(io.TextIOWrapper(handle, encoding, newline=""), 1):
            yield number, line, None
    except UnicodeDecodeError as exc:
        name = encoding.upper()
        raise UserError(f"{path}:{number + 1}: not {name} text ({exc.reason})") from None


# ---------------------------------------------------------------------- JSON


def iter_json(path: Path) -> Iterator[RawRow]:
    """JSON lines; a `.json` file that holds one array of objects (`json.dump(rows)`,
    pandas' `to_json(orient="records")`) is read as the rows of that array."""
    if is_json_array(path):
        yield from _iter_array(path)
        return
    for number, line, error in lines(path):
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
        yield _object(location, data)


def _object(location: str, data: object) -> RawRow:
    if not isinstance(data, dict):
        return RawRow(location, None, "a row must be a JSON object")
    return RawRow(location, data)


def is_json_array(path: Path) -> bool:
    """A `.json` file whose text starts with `[`: one array, not JSON lines (read from
    its first bytes: a one-line array may be the whole file)."""
    if not path.name.lower().endswith((".json", ".json.gz")):
        return False
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(4096)
    except (OSError, EOFError):
        return False  # reading it says why
    encoding = next((name for bom, name in _WIDE if head.startswith(bom)), "utf-8-sig")
    text = head.decode(encoding, errors="ignore")
    return text.lstrip().startswith("[")


def _iter_array(path: Path) -> Iterator[RawRow]:
    parts, size = [], 0
    for number, line, error in lines(path):
        if error is not None:
            raise UserError(f"{path}:{number}: {error}")
        size += len(line)
        if size > MAX_JSON_ARRAY_BYTES:
            raise UserError(
                f"{path}: a JSON array over {MAX_JSON_ARRAY_BYTES >> 20} MiB; write it as "
                f"JSON lines, one object per line (jq -c '.[]' {path.name} > seeds.jsonl)"
            )
        parts.append(line)
    try:
        rows = json.loads("".join(parts))
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno}); "
            "an array cannot be read past it: fix it, or write the rows as JSON lines"
        ) from None
    if not isinstance(rows, list):  # `[...] trailing text` fails to parse above
        raise UserError(f"{path}: not a JSON array of objects")
    for number, data in enumerate(rows, start=1):
        yield _object(f"{path}:row {number}", data)


# ---------------------------------------------------------------------- CSV, TSV


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


def iter_tsv(path: Path) -> Iterator[RawRow]:
    """Plain tab-separated lines: no quoting, so a `"` inside a passage stays text."""
    header: list[str] | None = None
    for number, line, error in lines(path):
        line = line.rstrip("\r\n")
        if header is None:
            if line or error is not None:
                header = _header(path, number, error, line.split("\t"))
            continue
        if error is not None:
            yield RawRow(f"{path}:{number}", None, error)
        elif line:
            yield _row(path, number, header, line.split("\t"), "tab-separated")


class _Feed:
    """The lines a csv reader reads, noting those of the record it is on (`record`);
    lines pushed back are read again first."""

    def __init__(self, source: Iterable[Line]) -> None:
        self._source = iter(source)
        self._back: deque[Line] = deque()
        self.record: list[Line] = []

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        line = self._back.popleft() if self._back else next(self._source)
        self.record.append(line)
        return line[1]

    def push_back(self, again: list[Line]) -> None:
        self._back.extendleft(reversed(again))


def iter_csv(path: Path) -> Iterator[RawRow]:
    """RFC 4180 CSV (quoted fields may span lines); a record with a bad line is a bad row.

    A record that spans lines but has the wrong number of fields (or cannot be read as
    CSV) is almost always a quote that opened a field by mistake (`"` at the start of a
    passage): it runs to the next quote, maybe the end of the file. It is one bad row, at
    the line where it starts, and the lines after that one are read again as rows.
    """
    csv.field_size_limit(MAX_CSV_FIELD)
    feed = _Feed(lines(path))
    reader = csv.reader(feed)
    header: list[str] | None = None
    while True:
        feed.record = []
        try:
            fields: list[str] | None = next(reader)
            problem = None
        except StopIteration:
            return
        except csv.Error as exc:
            fields, problem = None, f"not readable as CSV ({exc})"
        record = feed.record
        if not record:
            return
        first, last = record[0][0], record[-1][0]
        errors = [(number, error) for number, _, error in record if error is not None]
        if header is None:
            if problem is not None:
                raise UserError(f"{path}:{first}: header is {problem}")
            if fields or errors:
                header = _header(path, first, errors[0][1] if errors else None, fields or [])
            continue
        wrong = fields is None or (bool(fields) and len(fields) != len(header))
        if wrong and last > first:
            if fields is not None:  # else csv said what is wrong
                problem = (
                    f"{len(fields)} comma-separated fields where the header has "
                    f'{len(header)}: a quote (") here opens a field that runs to line '
                    f"{last}; the lines after this one are read as rows"
                )
            yield RawRow(f"{path}:{first}", None, problem)
            feed.push_back(record[1:])
            reader = csv.reader(feed)  # a fresh parser, outside any quoted field
        elif problem is not None:
            yield RawRow(f"{path}:{first}", None, problem)
        elif errors:
            yield RawRow(f"{path}:{errors[0][0]}", None, errors[0][1])
        elif fields:
            yield _row(path, first, header, fields, "comma-separated")
