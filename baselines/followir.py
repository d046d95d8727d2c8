"""FollowIR (Weller et al., 2024): the three reranking subsets, read from a local folder
for machines without the Hub (`evaluate.py --followir-dir`). A subset folder is in one of
two layouts, told apart by the files present:

- jhu-clsp's (`jhu-clsp/{robust04,news21,core17}-instructions`), read here:

    <subset>/corpus.jsonl          _id, title, text
    <subset>/queries.jsonl         _id, text, instruction_og, instruction_changed, ...
    <subset>/qrels_og/test.tsv     query-id, corpus-id, score   (header row; tab-separated)
    <subset>/qrels_changed/test.tsv
    <subset>/top_ranked.jsonl      qid, pid   (one candidate per line)

- mteb's current one (`mteb/*InstructionRetrieval`: one folder per config), read by
  baselines/followir_mteb_layout.py.

Each query's candidates (top_ranked) are reranked twice: query + " " + instruction_og
(the og run) and query + " " + instruction_changed (the changed run). MAP@1000 or
nDCG@5 is scored on the og run with the og qrels; p-MRR compares the two runs on the
documents whose label changed, as mteb computes it (dvsynth.evaluate.metrics).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dvsynth.errors import UserError
from dvsynth.evaluate.metrics import (
    average_precision,
    followir_pmrr,
    mean_over_queries,
    ndcg,
    ranked,
)
from dvsynth.records import anchor

#: subset -> (Hub dataset, its main retrieval metric, k)
SUBSETS = {
    "robust04": ("jhu-clsp/robust04-instructions", "map", 1000),
    "news21": ("jhu-clsp/news21-instructions", "ndcg", 5),
    "core17": ("jhu-clsp/core17-instructions", "map", 1000),
}
JHU_FILES = ("corpus.jsonl", "queries.jsonl", "top_ranked.jsonl", "qrels_og", "qrels_changed")


@dataclass
class FollowIRQuery:
    text: str
    instruction_og: str
    instruction_changed: str


@dataclass
class FollowIRSubset:
    name: str
    queries: dict[str, FollowIRQuery]
    qrels_og: dict[str, dict[str, int]]
    qrels_changed: dict[str, dict[str, int]]
    top_ranked: dict[str, list[str]]
    corpus: dict[str, str] = field(repr=False)  # doc_id -> title + " " + text, as mteb joins
    source: str = ""  # the folder read
    changed: dict[str, list[str]] | None = None  # mteb's qrel_diff, where the data has one

    def changed_documents(self) -> dict[str, list[str]]:
        """Per query, the judged documents whose label differs between og and changed
        qrels (in FollowIR: relevant under og, not relevant under the changed one); mteb's
        qrel_diff lists them, jhu-clsp's files leave them to be computed."""
        if self.changed is not None:
            return self.changed
        return {
            qid: [
                d
                for d, label in labels.items()
                if self.qrels_changed.get(qid, {}).get(d, 0) != label
            ]
            for qid, labels in self.qrels_og.items()
        }


def _jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{number}: not JSON ({exc.msg})") from None


def _need(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise UserError(f"{folder}: no {pattern} (jhu-clsp layout: {', '.join(JHU_FILES)})")
    return found[0]


def _qrels(folder: Path, name: str) -> dict[str, dict[str, int]]:
    path = (
        _need(folder, f"{name}/*.tsv") if (folder / name).is_dir() else _need(folder, f"{name}.tsv")
    )
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle, delimiter="\t"), 2):
            try:
                qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(
                    float(row["score"])
                )
            except (KeyError, TypeError, ValueError):
                raise UserError(
                    f"{path}:{number}: expected query-id, corpus-id, score columns"
                ) from None
    return qrels


def _field(row: dict, keys: tuple[str, ...], path: Path) -> str:
    for key in keys:
        if key in row:
            return str(row[key])
    raise UserError(f"{path}: a row lacks {' or '.join(keys)}")


def ranked_corpus(
    rows: Iterable[dict],
    doc_id: Callable[[dict], str],
    top_ranked: dict[str, list[str]],
    folder: Path,
    source: str,
) -> dict[str, str]:
    """doc id -> title + " " + text (as mteb joins) of the documents some query ranks, in
    either layout; one line naming the folder when a ranked document is missing."""
    wanted = {d for docs in top_ranked.values() for d in docs}
    corpus = {}
    for row in rows:
        key = doc_id(row)
        if key in wanted:
            corpus[key] = f"{row.get('title') or ''} {row.get('text') or ''}".strip()
    missing = wanted - corpus.keys()
    if missing:
        raise UserError(f"{folder}: {len(missing)} ranked documents are not in {source}")
    return corpus


def read_subset(folder: Path, name: str | None = None) -> FollowIRSubset:
    """One subset from its folder, in either layout; only the documents some query ranks
    are kept."""
    from baselines.followir_mteb_layout import EXPECTED, is_mteb_layout, read_mteb_subset

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--followir-dir: {folder} is not a folder")
    if not any((folder / f).exists() for f in JHU_FILES):
        if is_mteb_layout(folder):
            return read_mteb_subset(folder, name or folder.name)
        raise UserError(
            f"{folder}: not a FollowIR subset: expected jhu-clsp's files "
            f"({', '.join(JHU_FILES)}) or mteb's config folders ({EXPECTED})"
        )
    top_ranked: dict[str, list[str]] = {}
    path = _need(folder, "top_ranked.jsonl")
    for row in _jsonl(path):
        qid = _field(row, ("qid", "query-id"), path)
        docs = row.get("corpus-ids") or [_field(row, ("pid", "corpus-id"), path)]
        top_ranked.setdefault(qid, []).extend(str(d) for d in docs)
    path = _need(folder, "queries.jsonl")
    queries = {}
    for row in _jsonl(path):
        qid = _field(row, ("_id", "id"), path)
        queries[qid] = FollowIRQuery(
            text=_field(row, ("text",), path),
            instruction_og=_field(row, ("instruction_og",), path),
            instruction_changed=_field(row, ("instruction_changed",), path),
        )
    path = _need(folder, "corpus.jsonl")
    corpus = ranked_corpus(
        _jsonl(path), lambda row: _field(row, ("_id", "id"), path), top_ranked, folder, path.name
    )
    return FollowIRSubset(
        name=name or folder.name,
        queries={q: v for q, v in queries.items() if q in top_ranked},
        qrels_og=_qrels(folder, "qrels_og"),
        qrels_changed=_qrels(folder, "qrels_changed"),
        top_ranked=top_ranked,
        corpus=corpus,
        source=str(folder),
    )


Runs = dict[str, dict[str, float]]


def rerank(subset: FollowIRSubset, model, batch_size: int = 32) -> tuple[Runs, Runs]:
    """(og runs, changed runs): cosine scores of each query's candidates, each document
    encoded once (encode_document) and each query text once (encode_query)."""
    doc_ids = sorted(subset.corpus)
    doc_vectors = model.encode_document(
        [subset.corpus[d] for d in doc_ids], batch_size=batch_size, normalize_embeddings=True
    )
    row_of = {d: i for i, d in enumerate(doc_ids)}
    qids = sorted(subset.queries)
    runs: list[Runs] = []
    for which in ("instruction_og", "instruction_changed"):
        texts = [anchor(subset.queries[q].text, getattr(subset.queries[q], which)) for q in qids]
        query_vectors = model.encode_query(texts, batch_size=batch_size, normalize_embeddings=True)
        run = {}
        for qid, vector in zip(qids, query_vectors, strict=True):
            candidates = subset.top_ranked[qid]
            scores = doc_vectors[[row_of[d] for d in candidates]] @ vector
            run[qid] = {d: float(s) for d, s in zip(candidates, scores, strict=True)}
        runs.append(run)
    return runs[0], runs[1]


def score(subset: FollowIRSubset, og_runs: Runs, changed_runs: Runs) -> dict:
    """The subset's main metric on the og run with og qrels, and p-MRR; both x100."""
    _, metric, k = SUBSETS.get(subset.name, ("", "map", 1000))
    function = average_precision if metric == "map" else ndcg
    changed = subset.changed_documents()
    return {
        "metric": f"{metric}_at_{k}",
        "score": round(100 * mean_over_queries(function, og_runs, subset.qrels_og, k), 2),
        "p_mrr": round(100 * followir_pmrr(og_runs, changed_runs, changed), 2),
        "queries": len(og_runs),
        "changed_documents": sum(len(v) for v in changed.values()),
        "source": subset.source,
    }


def write_trec_run(runs: Runs, path: Path, tag: str) -> None:
    """TREC run format: qid Q0 docid rank score tag, in rank order (ties by doc id)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for qid in sorted(runs):
            for rank, doc_id in enumerate(ranked(runs[qid]), 1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {runs[qid][doc_id]!r} {tag}\n")
