"""Seed adapters: a raw source row in, a validated `Seed` (or a `SeedError`) out.

The Promptriever training format, or plain triples with an optional column mapping. A
bad row becomes a `SeedError` naming its file and line; it never stops the stream unless
the caller asks for strict mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from dvsynth.errors import UserError
from dvsynth.records import Doc, Seed, SeedError, short_hash
from dvsynth.seeds.readers import iter_raw_rows

SeedFormat = Literal["auto", "promptriever", "triples"]

#: Fields a plain-triples row is read from; `--map field=column` renames columns onto them.
TRIPLE_FIELDS = ("id", "query", "instruction", "positive", "negative", "other_negatives")
REQUIRED_TRIPLE_FIELDS = ("query", "positive", "negative")
PROMPTRIEVER_FIELDS = ("query_id", "only_query", "only_instruction", "positive_passages")


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


_DOC_ID_KEYS = ("doc_id", "docid", "_id", "id")


def to_doc(value: Any, field: str) -> Doc:
    """A passage from text or from a {doc_id|docid|_id, title, text} object.

    The checks here are Doc's own (text a non-blank str, title and doc_id str), so its
    validation never fails. Validated, not `model_construct`: under pydantic 2 the
    validating constructor (compiled) costs less than model_construct (Python).
    """
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
        doc_id = None
        for key in _DOC_ID_KEYS:  # no generator object per passage of every seed
            doc_id = value.get(key)
            if doc_id is not None:
                break
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
    query_id = data.get("query_id")
    if query_id is None or (isinstance(query_id, str) and not query_id.strip()):
        raise SeedRowError("query_id: missing or empty")
    # The instruction hash keeps ids unique where one query_id carries several instructions.
    seed_id = f"{query_id}-{short_hash(instruction or '', length=8)}"
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
    """Streams Seeds (or SeedErrors) from one source with one format and mapping.

    Whatever goes wrong with one row (a bad field, a missing key, a bug in an adapter)
    is that row's SeedError; only the source itself (unreadable, wrong columns, no
    seed at all) is a UserError.
    """

    spec: str
    fmt: SeedFormat = "auto"
    mapping: dict[str, str] | None = None
    split: str = "train"
    require_instruction: bool = False  # --mode reverse: a row without one is a bad row
    filtered: int = 0  # rows an adapter skipped on purpose (no instruction negatives)

    def check(self) -> None:
        """Open the source, check the first row's columns and find a first seed: fail
        before any work starts (and before a run directory is made) when there is none."""
        bad, before = 0, self.filtered
        first_bad: SeedError | None = None
        try:
            for item in self:
                if isinstance(item, Seed):
                    return
                bad, first_bad = bad + 1, first_bad or item
        finally:
            skipped, self.filtered = self.filtered - before, before  # the run counts them
        raise UserError(f"{self.spec}: {_no_seed(bad + skipped, skipped, first_bad)}")

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
                seed = self._adapt(raw.data, fmt, mapping)
            except SeedRowError as exc:
                yield SeedError(location=raw.location, reason=str(exc))
                continue
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                yield SeedError(location=raw.location, reason=f"{field}: {first['msg']}")
                continue
            except Exception as exc:  # any other fault of this row: this row's error
                reason = f"cannot be read as a seed ({type(exc).__name__}: {exc})"[:300]
                yield SeedError(location=raw.location, reason=reason)
                continue
            if seed is None:
                self.filtered += 1
                continue
            if self.require_instruction and seed.instruction is None:
                yield SeedError(
                    location=raw.location,
                    reason="instruction: missing (required by --mode reverse)",
                )
                continue
            seed.location = raw.location  # for reports (duplicate ids), not identity
            yield seed

    def _adapt(self, data: dict[str, Any], fmt: SeedFormat, mapping: dict[str, str]) -> Seed | None:
        if fmt == "promptriever":
            return adapt_promptriever(data, self.spec)
        return adapt_triples(data, mapping, self.spec)


def _no_seed(rows: int, filtered: int, first_bad: SeedError | None) -> str:
    """Why a source gave no seed at all, for its one line."""
    if rows == 0:
        return (
            "no seed rows (the source is empty, or holds only a header or blank lines); "
            "give a file with at least one seed"
        )
    if filtered == rows:
        return (
            f"none of its {rows} Promptriever rows has instruction negatives "
            "(has_instruction and new_negatives); nothing to generate"
        )
    where = f" (first: {first_bad.location}: {first_bad.reason})" if first_bad else ""
    return f"none of its {rows} rows is a valid seed{where}"
