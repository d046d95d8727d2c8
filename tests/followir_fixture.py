"""A tiny FollowIR folder, written for the tests in either of two layouts:

- "jhu": the files and columns of jhu-clsp/{robust04,news21,core17}-instructions;
- "mteb": the configs of mteb/{Robust04,News21,Core17}InstructionRetrieval (queries
  split into <id>-og and <id>-changed, instructions and qrels keyed the same way, a
  qrel_diff config), as parquet files one folder per config, with the README.md
  `configs:` block that lets `datasets.load_dataset(folder, config)` read them.

Both layouts hold the same data, so any reader must give the same numbers from either.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

TOPICS = [
    (
        "wind power subsidies",
        "government support for wind farms",
        "offshore turbines in the North Sea",
    ),
    (
        "hubble telescope repairs",
        "servicing missions by shuttle astronauts",
        "budget disputes in Congress",
    ),
    ("olive oil fraud", "adulteration with cheaper seed oils", "police raids in southern Italy"),
]
SUBSET_NAMES = ("robust04", "news21", "core17")
#: mteb's config -> (folder, split), as in the mteb repos (qrels are the default config)
MTEB_CONFIGS = {
    "corpus": ("corpus", "corpus"),
    "queries": ("queries", "queries"),
    "instruction": ("instruction", "instruction"),
    "default": ("data", "test"),
    "qrel_diff": ("qrel_diff", "qrel_diff"),
    "top_ranked": ("top_ranked", "top_ranked"),
}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _write_qrels(path: Path, rows: list[tuple[str, str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["query-id", "corpus-id", "score"])
        writer.writerows(rows)


def subset_rows(name: str, seed: int) -> dict:
    """The subset's rows in jhu-clsp's shape: corpus, queries, top_ranked, og, changed."""
    rng = random.Random(seed)
    corpus, queries, top_ranked, og, changed = [], [], [], [], []
    for q, (topic, aspect, detail) in enumerate(TOPICS):
        qid = f"{300 + q}"
        queries.append(
            {
                "_id": qid,
                "text": topic,
                "instruction_og": f"A relevant document discusses {aspect}.",
                "instruction_changed": f"A relevant document discusses {aspect}, "
                f"specifically {detail}; other documents are not relevant.",
                "keywords": aspect,
                "short_query": f"{topic}: {aspect}",
            }
        )
        for d in range(8):
            doc_id = f"{name.upper()}-{q}-{d:03d}"
            about = detail if d % 3 == 0 else aspect if d % 3 == 1 else "the weather"
            corpus.append(
                {"_id": doc_id, "title": f"{topic} {d}", "text": f"Report on {topic}: {about}."}
            )
            top_ranked.append({"qid": qid, "pid": doc_id})
            label = 0 if about == "the weather" else rng.choice([1, 2])
            og.append((qid, doc_id, label))
            changed.append((qid, doc_id, label if about == detail else 0))
    corpus.append({"_id": "UNRANKED-1", "title": "", "text": "never a candidate"})
    return {
        "corpus": corpus,
        "queries": queries,
        "top_ranked": top_ranked,
        "og": og,
        "changed": changed,
    }


def write_subset(folder: Path, name: str, seed: int) -> None:
    rows = subset_rows(name, seed)
    folder.mkdir(parents=True, exist_ok=True)
    _write_jsonl(folder / "corpus.jsonl", rows["corpus"])
    _write_jsonl(folder / "queries.jsonl", rows["queries"])
    _write_jsonl(folder / "top_ranked.jsonl", rows["top_ranked"])
    _write_qrels(folder / "qrels_og" / "test.tsv", rows["og"])
    _write_qrels(folder / "qrels_changed" / "test.tsv", rows["changed"])


def mteb_rows(name: str, seed: int) -> dict[str, list[dict]]:
    """The same subset as mteb's configs hold it."""
    rows = subset_rows(name, seed)
    queries, instructions, qrels, top_ranked, diff = [], [], [], [], []
    candidates: dict[str, list[str]] = {}
    for row in rows["top_ranked"]:
        candidates.setdefault(row["qid"], []).append(row["pid"])
    for query in rows["queries"]:
        for which in ("og", "changed"):
            qid = f"{query['_id']}-{which}"
            queries.append({"_id": qid, "text": query["text"]})
            instructions.append({"query-id": qid, "instruction": query[f"instruction_{which}"]})
            top_ranked.append({"query-id": qid, "corpus-ids": candidates[query["_id"]]})
    for which in ("og", "changed"):
        qrels += [
            {"query-id": f"{q}-{which}", "corpus-id": d, "score": s} for q, d, s in rows[which]
        ]
    labels_changed = {(q, d): s for q, d, s in rows["changed"]}
    for qid in candidates:
        docs = [d for q, d, s in rows["og"] if q == qid and labels_changed[(q, d)] != s]
        diff.append({"query-id": qid, "corpus-ids": docs})
    return {
        "corpus": rows["corpus"],
        "queries": queries,
        "instruction": instructions,
        "default": qrels,
        "qrel_diff": diff,
        "top_ranked": top_ranked,
    }


def write_subset_mteb(folder: Path, name: str, seed: int, fmt: str = "parquet") -> None:
    """One folder per config, `<split>-00000-of-00001.<fmt>` in each, as `push_to_hub` does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    card = ["---", "configs:"]
    for config, rows in mteb_rows(name, seed).items():
        sub, split = MTEB_CONFIGS[config]
        path = folder / sub / f"{split}-00000-of-00001.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), path)
        else:
            _write_jsonl(path, rows)
        card += [f"- config_name: {config}", "  data_files:", f"  - split: {split}"]
        card.append(f"    path: {sub}/{split}-*")
    (folder / "README.md").write_text("\n".join([*card, "---", ""]), encoding="utf-8")


def write_followir(root: Path, layout: str = "jhu") -> Path:
    for seed, name in enumerate(SUBSET_NAMES):
        if layout == "jhu":
            write_subset(root / name, name, seed)
        else:
            write_subset_mteb(root / name, name, seed, "parquet" if layout == "mteb" else "jsonl")
    return root
