"""General (instruction-free) data from ../shared/data/msmarco-1743, for the
matched-budget arms on this machine: MS MARCO triples for `--mix` and a NanoBEIR-layout
copy (split NanoMSMARCO) for `--general nano-beir`, on disjoint queries, none of them a
gold-set query.

    python benchmarks/msmarco_general.py [--eval-queries 200] [--out benchmarks/out/msmarco-general]

Writes OUT/triples.jsonl (query, positive: its judged passage, negative: a random other
passage) and OUT/copies/sentence-transformers/NanoBEIR-en (corpus: all 1,743 passages;
queries: --eval-queries held-out queries with their judged passage), so that

    python baselines/run_arms.py --data benchmarks/gold/msmarco-gold.jsonl --arms orig dv \\
        --rows 160 --mix OUT/triples.jsonl:0.5 --out benchmarks/out/mix-arms \\
        -- --data-dir OUT/copies --nanobeir-datasets msmarco --no-followir

measures general nDCG@10 on real MS MARCO text next to the gold pairs. A 1,743-passage
corpus is far smaller than NanoMSMARCO's, so the figure is easier than NanoBEIR's.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MSMARCO = ROOT.parent / "shared" / "data" / "msmarco-1743"
GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "msmarco-general")
    args = parser.parse_args()
    from tests.mteb_fixture import write_configs

    corpus = {row["_id"]: row for row in read_jsonl(MSMARCO / "corpus.jsonl")}
    queries = {row["_id"]: row["text"] for row in read_jsonl(MSMARCO / "queries.jsonl")}
    with (MSMARCO / "qrels-test.tsv").open(encoding="utf-8") as handle:
        judged = {row["qid"]: row["pid"] for row in csv.DictReader(handle, delimiter="\t")}
    gold_queries = {row["query"] for row in read_jsonl(GOLD)}
    usable = sorted(q for q in judged if queries.get(q) not in gold_queries and judged[q] in corpus)
    rng = random.Random(args.seed)
    rng.shuffle(usable)
    held_out, train = usable[: args.eval_queries], usable[args.eval_queries :]
    ids = sorted(corpus)

    def text(pid: str) -> str:
        return f"{corpus[pid].get('title') or ''} {corpus[pid]['text']}".strip()

    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "triples.jsonl").open("w", encoding="utf-8") as handle:
        for qid in train:
            negative = rng.choice([p for p in rng.sample(ids, 3) if p != judged[qid]])
            row = {"query": queries[qid], "positive": text(judged[qid]), "negative": text(negative)}
            handle.write(json.dumps(row) + "\n")
    copy = args.out / "copies" / "sentence-transformers" / "NanoBEIR-en"
    write_configs(
        copy,
        {
            "corpus": {"NanoMSMARCO": [{"_id": p, "text": text(p)} for p in ids]},
            "queries": {"NanoMSMARCO": [{"_id": q, "text": queries[q]} for q in held_out]},
            "qrels": {"NanoMSMARCO": [{"query-id": q, "corpus-id": judged[q]} for q in held_out]},
        },
    )
    print(f"{len(train)} triples, {len(held_out)} held-out queries over {len(ids)} passages")
    print(f"wrote {args.out / 'triples.jsonl'} and {copy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
