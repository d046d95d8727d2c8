"""Ranking metrics shared by `eval-retriever` and the FollowIR evaluator (baselines/).

Ranks follow mteb's convention: higher score first, ties broken by doc id, descending.
p-MRR (FollowIR): for a document whose label changes between the original and the
changed instruction, compare its rank in the two runs: R_new/R_og - 1 if it did not
move down, 1 - R_og/R_new if it moved down; a document missing from a run ranks
len(run) + 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Doc ids best first, ties broken by doc id, descending (trec_eval and mteb agree)."""
    return [
        doc_id for doc_id, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    ]


def ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """doc_id -> 1-based rank in `ranked` order."""
    return {doc_id: position for position, doc_id in enumerate(ranked(scores), 1)}


def rank_or_last(run_ranks: Mapping[str, int], doc_id: str) -> int:
    return run_ranks.get(doc_id, len(run_ranks) + 1)


def pmrr_change(rank_og: int, rank_new: int) -> float:
    """One document's p-MRR term: positive when it moved down after losing relevance."""
    if rank_og >= rank_new:
        return rank_new / rank_og - 1
    return 1 - rank_og / rank_new


def average_precision(scores: Mapping[str, float], qrels: Mapping[str, int], k: int) -> float:
    """AP@k as trec_eval's map_cut: precision at each relevant hit in the top k, over all
    relevant documents in the qrels (relevance >= 1); 0 when the query has none."""
    relevant = sum(1 for label in qrels.values() if label >= 1)
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for position, doc_id in enumerate(ranked(scores)[:k], 1):
        if qrels.get(doc_id, 0) >= 1:
            hits += 1
            total += hits / position
    return total / relevant


def ndcg(scores: Mapping[str, float], qrels: Mapping[str, int], k: int) -> float:
    """nDCG@k as trec_eval's ndcg_cut: the relevance label is the gain, discount
    log2(rank + 1), the ideal ranking taken from the qrels; 0 when the ideal gain is 0."""
    dcg = sum(
        qrels.get(doc_id, 0) / math.log2(position + 1)
        for position, doc_id in enumerate(ranked(scores)[:k], 1)
    )
    ideal_gains = sorted(qrels.values(), reverse=True)[:k]
    idcg = sum(gain / math.log2(position + 1) for position, gain in enumerate(ideal_gains, 1))
    return dcg / idcg if idcg > 0 else 0.0


def mean_over_queries(
    metric, runs: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]], k: int
) -> float:
    """A per-query metric averaged over the queries that have both a run and qrels."""
    values = [metric(runs[qid], qrels[qid], k) for qid in runs if qid in qrels]
    return sum(values) / len(values) if values else 0.0


def followir_pmrr(
    og_runs: Mapping[str, Mapping[str, float]],
    changed_runs: Mapping[str, Mapping[str, float]],
    changed_docs: Mapping[str, list[str]],
) -> float:
    """FollowIR's p-MRR (a fraction; papers print it x100): for each document whose label
    changed, its term from the og run to the changed run; mean per query, then over the
    queries that have such documents and both runs."""
    per_query = []
    for qid, docs in changed_docs.items():
        if not docs or qid not in og_runs or qid not in changed_runs:
            continue
        og_ranks, new_ranks = ranks(og_runs[qid]), ranks(changed_runs[qid])
        terms = [pmrr_change(rank_or_last(og_ranks, d), rank_or_last(new_ranks, d)) for d in docs]
        per_query.append(sum(terms) / len(terms))
    return sum(per_query) / len(per_query) if per_query else 0.0
