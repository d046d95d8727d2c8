"""`dvsynth mine`: (query, positive) pairs + a corpus -> bootstrap-mode seeds with hard negatives.

A thin wrapper over sentence-transformers' `mine_hard_negatives`, which already does
the embedding, the top-k search and the margin filtering (NV-Retriever's TopK-PercPos
by default: a negative must score at least 5% below the positive, which keeps unjudged
true positives out). What is ours: reading BEIR-style files, mapping mined texts back
to passage ids, and writing seeds that `dvsynth generate` reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dvsynth.config import MineOptions
from dvsynth.errors import UserError
from dvsynth.evaluate.embed import load_embedder
from dvsynth.records import Doc, short_hash
from dvsynth.seeds.adapters import SeedRowError, to_doc
from dvsynth.seeds.readers import iter_raw_rows


@dataclass
class MineReport:
    pairs: int
    corpus_size: int
    written: int
    without_negatives: int


def passage_text(doc: Doc) -> str:
    """What gets embedded: title and text, as BEIR evaluations embed them."""
    return f"{doc.title}\n{doc.text}" if doc.title else doc.text


def read_corpus(path: Path) -> dict[str, Doc]:
    """BEIR corpus.jsonl (or any source with _id/doc_id/id, title, text) keyed by doc id."""
    corpus: dict[str, Doc] = {}
    for raw in iter_raw_rows(str(path)):
        if raw.data is None:
            raise UserError(f"{raw.location}: {raw.error}")
        try:
            doc = to_doc(raw.data, "passage")
        except SeedRowError as exc:
            raise UserError(f"{raw.location}: {exc}") from None
        corpus[doc.doc_id] = doc
    if not corpus:
        raise UserError(f"{path}: the corpus is empty")
    return corpus


def _read_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for raw in iter_raw_rows(str(path)):
        data = raw.data or {}
        qid, text = data.get("_id", data.get("id")), data.get("text", data.get("query"))
        if qid is None or not isinstance(text, str):
            raise UserError(f"{raw.location}: a query needs _id and text")
        queries[str(qid)] = text
    return queries


def pair_seed_id(query_key: str, doc_id: str) -> str:
    """A seed id two different (query, passage) pairs never share.

    `qid-pid` where neither id has a hyphen (readable, and unambiguous then); else a hash
    of both parts, NUL-joined, so "q1-2" + "3" and "q1" + "2-3" stay apart. Query texts
    (no qid) are always hashed: equal-length queries once collided here.
    """
    parts = query_key + doc_id
    readable = query_key and len(query_key) <= 64 and not any(c in parts for c in "- \t\n")
    return f"{query_key}-{doc_id}" if readable else short_hash(query_key, doc_id)


def _qrels_pairs(
    path: Path, queries: dict[str, str], corpus: dict[str, Doc]
) -> Iterator[tuple[str, str, Doc]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").split("\t")
            if number == 1 and parts[0] in ("qid", "query-id", "query_id"):
                continue
            if len(parts) < 2:
                raise UserError(f"{path}:{number}: expected qid<TAB>pid[<TAB>score]")
            qid, pid = parts[0], parts[1]
            if len(parts) > 2 and parts[2].strip() and float(parts[2]) <= 0:
                continue
            if qid not in queries:
                raise UserError(f"{path}:{number}: query {qid} not in the queries file")
            if pid not in corpus:
                raise UserError(f"{path}:{number}: passage {pid} not in the corpus")
            yield pair_seed_id(qid, pid), queries[qid], corpus[pid]


def _text_pairs(path: Path, corpus: dict[str, Doc]) -> Iterator[tuple[str, str, Doc]]:
    for raw in iter_raw_rows(str(path)):
        data = raw.data
        if data is None:
            raise UserError(f"{raw.location}: {raw.error}")
        query = data.get("query")
        if not isinstance(query, str) or not query.strip():
            raise UserError(f"{raw.location}: needs a 'query' text column")
        try:
            positive = to_doc(data.get("positive"), "positive")
        except SeedRowError as exc:
            raise UserError(f"{raw.location}: {exc}") from None
        corpus.setdefault(positive.doc_id, positive)
        source_id = data.get("id")
        pair_id = (
            str(source_id) if source_id not in (None, "") else pair_seed_id(query, positive.doc_id)
        )
        yield pair_id, query, positive


def read_pairs(options: MineOptions, corpus: dict[str, Doc]) -> list[tuple[str, str, Doc]]:
    if options.pairs.suffix == ".tsv":
        if options.queries is None:
            raise UserError(f"--pairs {options.pairs}: a qrels TSV needs --queries queries.jsonl")
        pairs = _qrels_pairs(options.pairs, _read_queries(options.queries), corpus)
    else:
        pairs = _text_pairs(options.pairs, corpus)
    selected = []
    for pair in pairs:
        if options.limit is not None and len(selected) >= options.limit:
            break
        selected.append(pair)
    if not selected:
        raise UserError(f"--pairs {options.pairs}: no (query, positive) pairs found")
    return selected


def mine_seeds(options: MineOptions) -> MineReport:
    """Mine hard negatives and write seeds (query, positive, negative, other_negatives)."""
    if not options.pairs.exists():
        raise UserError(f"--pairs {options.pairs}: no such file")
    if not options.corpus.exists():
        raise UserError(f"--corpus {options.corpus}: no such file")
    if options.range_max < options.range_min + options.num_negatives:
        raise UserError("--range-max must leave room for --num-negatives after --range-min")
    corpus = read_corpus(options.corpus)
    pairs = read_pairs(options, corpus)

    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    by_text: dict[str, Doc] = {}
    for doc in corpus.values():
        by_text.setdefault(passage_text(doc), doc)
    dataset = Dataset.from_dict(
        {
            "query": [query for _, query, _ in pairs],
            "positive": [passage_text(doc) for _, _, doc in pairs],
        }
    )
    if not options.verbose:
        # sentence-transformers shows encode progress bars unconditionally; tqdm obeys this.
        os.environ["TQDM_DISABLE"] = "1"
    model = load_embedder(options.model)
    mined = mine_hard_negatives(
        dataset,
        model,
        corpus=list(by_text),
        num_negatives=options.num_negatives,
        range_min=options.range_min,
        range_max=options.range_max,
        relative_margin=options.relative_margin,
        sampling_strategy="top",
        output_format="n-tuple",
        batch_size=options.batch_size,
        verbose=options.verbose,
    )
    negative_columns = [c for c in mined.column_names if c.startswith("negative")]
    by_pair = {(row["query"], row["positive"]): row for row in mined}
    options.out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    tmp = options.out.with_suffix(options.out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for pair_id, query, positive in pairs:
            row = by_pair.get((query, passage_text(positive)))
            if row is None:
                continue
            negatives = [by_text[row[c]] for c in negative_columns if row.get(c) in by_text]
            if not negatives:
                continue
            seed = {
                "id": pair_id,
                "query": query,
                "positive": positive.model_dump(),
                "negative": negatives[0].model_dump(),
                "other_negatives": [doc.model_dump() for doc in negatives[1:]],
            }
            handle.write(json.dumps(seed, ensure_ascii=False) + "\n")
            written += 1
    os.replace(tmp, options.out)
    return MineReport(
        pairs=len(pairs),
        corpus_size=len(corpus),
        written=written,
        without_negatives=len(pairs) - written,
    )
