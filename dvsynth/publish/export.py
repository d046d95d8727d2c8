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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dvsynth.errors import UserError
from dvsynth.publish.dedup import ExportDedup
from dvsynth.records import DualView, doc_text
from dvsynth.runs.dirs import iter_runs
from dvsynth.runs.store import RunStore

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
        ("model", pa.string()),  # the judge whose verdict stands
        # A cascade's record (issue 27): null when one judge decided alone.
        (
            "escalation",
            pa.struct(
                [
                    ("cheap_model", pa.string()),
                    ("cheap_probability", pa.float64()),
                    ("strong_model", pa.string()),
                    ("strong_probability", pa.float64()),
                    ("escalated", pa.bool_()),
                    ("why", pa.string()),
                ]
            ),
        ),
    ]
)
#: A pair's two views, the same columns wherever a pair is written (run and gold exports).
VIEW_COLUMNS = [
    ("query", pa.string()),
    ("instruction_a", pa.string()),
    ("doc_a", DOC),
    ("instruction_b", pa.string()),
    ("doc_b", DOC),
    ("other_negatives", pa.list_(DOC)),
]
SCHEMAS = {
    "pairs": pa.schema(
        [
            ("pair_id", pa.string()),
            ("seed_id", pa.string()),
            *VIEW_COLUMNS,
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
            ("negatives_b", pa.list_(pa.string())),
            ("stage", pa.string()),
            # sha256 of the recipe file published beside the data (`dvsynth run`); None
            # for an export made without one. Stamped at export, not stored on the row:
            # a new version of the same run (another push.version) has another recipe.
            ("recipe_sha256", pa.string()),
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
            ("stage", pa.string()),
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
        "negatives_b": row.negatives_b,
        "stage": row.stage,
    }


def triplet_records(row: DualView) -> list[dict[str, Any]]:
    """View a then view b (`DualView.views()`): the same pair, labels swapped; each
    view's `negatives` are the other negatives verified for it."""
    return [
        {
            "anchor": view.anchor(row.query),
            "positive": doc_text(view.positive),
            "negative": doc_text(view.negative),
            "negatives": [doc_text(d) for d in view.other_negatives],
            "pair_id": row.pair_id,
            "view": view.name,
            "stage": row.stage,
        }
        for view in row.views()
    ]


def rejected_record(row: DualView) -> dict[str, Any]:
    first = row.reasons[0] if row.reasons else ""
    stage = {"rule": "rules", "check": "check", "judge": "judge", "dedup": "dedup"}.get(
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
    modes: Counter[str] = field(default_factory=Counter)  # mode -> pairs exported
    dedup: str | None = None  # the duplicate removal applied over the exported rows


def write_data(
    run_dirs: Sequence[Path],
    out: Path,
    val_share: float,
    observe: Callable[[DualView], None] | None = None,
    allow_unvalidated: bool = False,
    recipe_sha256: str | None = None,
) -> ExportReport:
    """The parquet files of every config and split under `out` (a fresh folder); each
    row exported (as a pair or as rejected) also goes to `observe`, for what else wants
    the same pass (the card's counts).

    Only verified rows are exported as pairs: a run with rows still pending validation is
    refused (`check_verified`), unless `allow_unvalidated`, when they go out marked with
    the stage they reached. Duplicates are removed over exactly the rows exported
    (`publish.dedup`), however the runs were validated.
    """
    if not 0.0 <= val_share < 1.0:
        raise UserError(f"--val-share: {val_share:g} is not in [0, 1)")
    check_verified(run_dirs, allow_unvalidated)
    dedup = ExportDedup.of_runs(run_dirs)
    writers = {(c, s): _SplitWriter(out, c, s) for c in CONFIGS for s in SPLITS}
    report = ExportReport(out=out, dedup=dedup.describe() if dedup else None)
    seen_queries: dict[str, set[str]] = {s: set() for s in SPLITS}
    try:
        for row in iter_runs(run_dirs):
            if dedup:
                row = dedup.settle(row)
            split = split_of(row.query, val_share)
            if row.status == "kept" and (row.verified or allow_unvalidated):
                writers[("pairs", split)].add({**pair_record(row), "recipe_sha256": recipe_sha256})
                for record in triplet_records(row):
                    writers[("triplets", split)].add(record)
                seen_queries[split].add(row.query)
                report.modes[row.mode] += 1
            elif row.status == "rejected":
                writers[("rejected", split)].add(rejected_record(row))
            else:
                continue  # failed (retried by a rerun), or unverified: not in the export
            if observe:
                observe(row)
    finally:
        for writer in writers.values():
            writer.close()
    for (config, split), writer in writers.items():
        if writer.rows:
            report.rows.setdefault(config, {})[split] = writer.rows
            report.files.extend(writer.files)
    report.queries = Counter({s: len(q) for s, q in seen_queries.items()})
    if not report.rows.get("pairs"):
        raise UserError(f"{', '.join(map(str, run_dirs))}: no verified pairs to export")
    return report


def check_verified(run_dirs: Sequence[Path], allow_unvalidated: bool) -> Counter[str]:
    """Rows by outcome over all runs; refuses (one line, with the command that finishes
    them) when some are still pending validation, unless `allow_unvalidated`."""
    if not run_dirs:
        raise UserError("give at least one run directory")
    totals: Counter[str] = Counter()
    validated = True
    for run in run_dirs:
        store = RunStore.open_existing(Path(run))
        try:
            totals.update(store.progress())
            validated = validated and store.validation() is not None
        finally:
            store.close()
    waiting = totals["pending"] + totals["failed_validate"]
    if waiting and not allow_unvalidated:
        runs = " ".join(map(str, run_dirs))
        candidates = waiting + totals["verified"]
        how = (
            f"dvsynth validate {runs}` with the same options as before"
            if validated
            else f"dvsynth validate {runs} --judge-model MODEL`"
        )
        raise UserError(
            f"{runs}: {waiting} of {candidates} generated pairs are not verified"
            f"{'' if validated else ' (never validated)'}; finish them with `{how}, "
            "or pass --allow-unvalidated to export them marked with the stage they reached"
        )
    return totals


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
        for config in (*CONFIGS, *(c for c in report.rows if c not in CONFIGS))
        if report.rows.get(config)
    ]
