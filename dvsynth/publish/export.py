"""`dvsynth export`: runs -> a folder that `datasets.load_dataset` reads as the Hub will.

Three configs, each a set of parquet files per split, mapped by the `configs:` block of
the folder's README.md (the dataset card):

- `pairs`: one row per kept pair, with its documents, verdicts and provenance;
- `triplets`: two rows per kept pair (view a, then view b, adjacent), anchor = query +
  " " + instruction as FollowIR joins them, plus the seed's other negatives as a list;
- `rejected`: every rejected row with its reasons, for audit.

Splits are by query (a hash of the normalised query against `--val-share`), so no query
is in both. Rows stream from the runs to parquet writers; the same runs give the same
bytes (fixed schemas, row order, file names, and a card without wall-clock times).
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dvsynth.errors import UserError
from dvsynth.runs import iter_runs
from dvsynth.schema import Doc, DualView

CONFIGS = ("pairs", "triplets", "rejected")
SPLITS = ("train", "validation")
ROWS_PER_FILE = 250_000
ROWS_PER_GROUP = 10_000

DOC = pa.struct([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
VERDICT = pa.struct(
    [
        ("view", pa.string()),
        ("doc", pa.string()),
        ("relevant", pa.bool_()),
        ("probability", pa.float64()),
        ("model", pa.string()),
    ]
)
SCHEMAS = {
    "pairs": pa.schema(
        [
            ("pair_id", pa.string()),
            ("seed_id", pa.string()),
            ("query", pa.string()),
            ("instruction_a", pa.string()),
            ("doc_a", DOC),
            ("instruction_b", pa.string()),
            ("doc_b", DOC),
            ("other_negatives", pa.list_(DOC)),
            ("mode", pa.string()),
            ("verdicts", pa.list_(VERDICT)),
            ("generator_model", pa.string()),
            ("judge_model", pa.string()),
            ("prompt_name", pa.string()),
            ("prompt_sha256", pa.string()),
            ("judge_prompt_sha256", pa.string()),
            ("temperature", pa.float64()),
            ("dvsynth_version", pa.string()),
            ("generator_tokens", pa.int64()),
            ("judge_tokens", pa.int64()),
            ("created_at", pa.string()),
        ]
    ),
    "triplets": pa.schema(
        [
            ("anchor", pa.string()),
            ("positive", pa.string()),
            ("negative", pa.string()),
            ("negatives", pa.list_(pa.string())),
            ("pair_id", pa.string()),
            ("view", pa.string()),
        ]
    ),
    "rejected": pa.schema(
        [
            ("pair_id", pa.string()),
            ("seed_id", pa.string()),
            ("query", pa.string()),
            ("instruction_a", pa.string()),
            ("instruction_b", pa.string()),
            ("doc_a_id", pa.string()),
            ("doc_b_id", pa.string()),
            ("mode", pa.string()),
            ("stage", pa.string()),
            ("reasons", pa.list_(pa.string())),
            ("error", pa.string()),
            ("raw_response", pa.string()),
            ("generator_model", pa.string()),
            ("judge_model", pa.string()),
        ]
    ),
}


def split_of(query: str, val_share: float) -> str:
    """train or validation, from the query alone: a query never lands in both."""
    key = " ".join(query.lower().split())
    draw = int(hashlib.sha256(f"split:{key}".encode()).hexdigest()[:12], 16) / 16**12
    return "validation" if draw < val_share else "train"


def doc_text(doc: Doc) -> str:
    """The passage as a retriever reads it: title, then text."""
    return f"{doc.title}. {doc.text}" if doc.title else doc.text


def anchor(query: str, instruction: str | None) -> str:
    """The FollowIR join of query and instruction."""
    return f"{query} {instruction or ''}".strip()


def pair_record(row: DualView) -> dict[str, Any]:
    prov = row.provenance
    judge_usage = prov.judge_usage
    return {
        "pair_id": row.pair_id,
        "seed_id": row.seed_id,
        "query": row.query,
        "instruction_a": row.instruction_a,
        "doc_a": row.doc_a.model_dump(),
        "instruction_b": row.instruction_b,
        "doc_b": row.doc_b.model_dump(),
        "other_negatives": [d.model_dump() for d in row.other_negatives],
        "mode": row.mode,
        "verdicts": [v.model_dump(exclude={"raw"}) for v in row.verdicts],
        "generator_model": prov.generator_model,
        "judge_model": prov.judge_model,
        "prompt_name": prov.prompt_name,
        "prompt_sha256": prov.prompt_sha256,
        "judge_prompt_sha256": prov.judge_prompt_sha256,
        "temperature": prov.sampling.get("temperature"),
        "dvsynth_version": prov.dvsynth_version,
        "generator_tokens": prov.usage.prompt_tokens + prov.usage.completion_tokens,
        "judge_tokens": (judge_usage.prompt_tokens + judge_usage.completion_tokens)
        if judge_usage
        else None,
        "created_at": prov.created_at,
    }


def triplet_records(row: DualView) -> list[dict[str, Any]]:
    """View a then view b: the same pair, labels swapped."""
    negatives = [doc_text(d) for d in row.other_negatives]
    a, b = doc_text(row.doc_a), doc_text(row.doc_b)
    views = (("a", row.instruction_a, a, b), ("b", row.instruction_b, b, a))
    return [
        {
            "anchor": anchor(row.query, instruction),
            "positive": positive,
            "negative": negative,
            "negatives": negatives,
            "pair_id": row.pair_id,
            "view": view,
        }
        for view, instruction, positive, negative in views
    ]


def rejected_record(row: DualView) -> dict[str, Any]:
    first = row.reasons[0] if row.reasons else ""
    stage = {"rule": "rules", "judge": "judge", "dedup": "dedup"}.get(
        first.split(":", 1)[0], "generate"
    )
    return {
        "pair_id": row.pair_id,
        "seed_id": row.seed_id,
        "query": row.query,
        "instruction_a": row.instruction_a,
        "instruction_b": row.instruction_b,
        "doc_a_id": row.doc_a.doc_id,
        "doc_b_id": row.doc_b.doc_id,
        "mode": row.mode,
        "stage": stage,
        "reasons": row.reasons,
        "error": row.error,
        "raw_response": row.raw_response,
        "generator_model": row.provenance.generator_model,
        "judge_model": row.provenance.judge_model,
    }


class _SplitWriter:
    """Buffered parquet files `<config>/<split>-NNNNN.parquet`, opened on the first row."""

    def __init__(self, root: Path, config: str, split: str) -> None:
        self.root, self.config, self.split = root, config, split
        self.schema = SCHEMAS[config]
        self.buffer: list[dict[str, Any]] = []
        self.writer: pq.ParquetWriter | None = None
        self.files: list[str] = []
        self.rows = 0
        self._in_file = 0

    def add(self, record: dict[str, Any]) -> None:
        self.buffer.append(record)
        self.rows += 1
        if len(self.buffer) >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        if self.writer is None or self._in_file >= ROWS_PER_FILE:
            self._close_file()
            name = f"{self.config}/{self.split}-{len(self.files):05d}.parquet"
            (self.root / self.config).mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.root / name, self.schema, compression="zstd")
            self.files.append(name)
            self._in_file = 0
        self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
        self._in_file += len(self.buffer)
        self.buffer = []

    def _close_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        self._flush()
        self._close_file()


@dataclass
class ExportReport:
    out: Path
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # config -> split -> rows
    files: list[str] = field(default_factory=list)
    queries: Counter[str] = field(default_factory=Counter)  # split -> distinct queries


def write_data(
    run_dirs: Sequence[Path],
    out: Path,
    val_share: float,
    observe: Callable[[DualView], None] | None = None,
) -> ExportReport:
    """The parquet files of every config and split under `out` (emptied first); each
    row also goes to `observe`, for what else wants the same pass (the card's counts)."""
    if not 0.0 <= val_share < 1.0:
        raise UserError(f"--val-share: {val_share:g} is not in [0, 1)")
    rows = iter_runs(run_dirs)  # checks every run before anything is written
    first = next(rows, None)
    _prepare_out(out)
    writers = {(c, s): _SplitWriter(out, c, s) for c in CONFIGS for s in SPLITS}
    report = ExportReport(out=out)
    seen_queries: dict[str, set[str]] = {s: set() for s in SPLITS}
    try:
        for row in _chain(first, rows):
            if observe:
                observe(row)
            split = split_of(row.query, val_share)
            if row.status == "kept":
                writers[("pairs", split)].add(pair_record(row))
                for record in triplet_records(row):
                    writers[("triplets", split)].add(record)
                seen_queries[split].add(row.query)
            else:
                writers[("rejected", split)].add(rejected_record(row))
    finally:
        for writer in writers.values():
            writer.close()
    for (config, split), writer in writers.items():
        if writer.rows:
            report.rows.setdefault(config, {})[split] = writer.rows
            report.files.extend(writer.files)
    report.queries = Counter({s: len(q) for s, q in seen_queries.items()})
    if not report.rows.get("pairs"):
        raise UserError(f"{', '.join(map(str, run_dirs))}: no kept pairs to export")
    return report


def _chain(first: DualView | None, rest):
    if first is not None:
        yield first
        yield from rest


def _prepare_out(out: Path) -> None:
    """An empty folder, or one a previous export wrote (replaced, never merged)."""
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a folder")
        entries = {p.name for p in out.iterdir()}
        ours = set(CONFIGS) | {"README.md", ".gitattributes"}
        if entries - ours:
            raise UserError(f"--out {out}: folder holds files that are not a dvsynth export")
        for name in entries:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def configs_metadata(report: ExportReport) -> list[dict[str, Any]]:
    """The card's `configs:` block: each config's splits and their file patterns."""
    return [
        {
            "config_name": config,
            "data_files": [
                {"split": split, "path": f"{config}/{split}-*.parquet"}
                for split in SPLITS
                if report.rows.get(config, {}).get(split)
            ],
            **({"default": True} if config == "triplets" else {}),
        }
        for config in CONFIGS
        if report.rows.get(config)
    ]
