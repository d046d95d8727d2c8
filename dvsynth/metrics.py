"""Ranking metrics shared by `eval-retriever` and the FollowIR evaluator.

Ranks follow mteb's convention: higher score first, ties broken by doc id, descending.
p-MRR (FollowIR): for a document whose label changes between the original and the
changed instruction, compare its rank in the two runs: R_new/R_og - 1 if it did not
move down, 1 - R_og/R_new if it moved down; a document missing from a run ranks
len(run) + 1.
"""

from __future__ import annotations

from collections.abc import Mapping


def ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """doc_id -> 1-based rank; ties broken by doc id, descending (as mteb does)."""
    ordered = sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    return {doc_id: position for position, (doc_id, _) in enumerate(ordered, 1)}


def rank_or_last(run_ranks: Mapping[str, int], doc_id: str) -> int:
    return run_ranks.get(doc_id, len(run_ranks) + 1)


def pmrr_change(rank_og: int, rank_new: int) -> float:
    """One document's p-MRR term: positive when it moved down after losing relevance."""
    if rank_og >= rank_new:
        return rank_new / rank_og - 1
    return 1 - rank_og / rank_new
