"""A tiny FollowIR folder in the Hub datasets' exact files and columns
(jhu-clsp/{robust04,news21,core17}-instructions), written for the tests."""

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


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _write_qrels(path: Path, rows: list[tuple[str, str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["query-id", "corpus-id", "score"])
        writer.writerows(rows)


def write_subset(folder: Path, name: str, seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
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
    _write_jsonl(folder / "corpus.jsonl", corpus)
    _write_jsonl(folder / "queries.jsonl", queries)
    _write_jsonl(folder / "top_ranked.jsonl", top_ranked)
    _write_qrels(folder / "qrels_og" / "test.tsv", og)
    _write_qrels(folder / "qrels_changed" / "test.tsv", changed)


def write_followir(root: Path) -> Path:
    for seed, name in enumerate(("robust04", "news21", "core17")):
        write_subset(root / name, name, seed)
    return root
