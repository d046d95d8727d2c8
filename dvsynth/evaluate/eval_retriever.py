"""`dvsynth eval-retriever`: does a retriever follow instructions on gold dual-view pairs?

For each pair and view, the query text is query + " " + instruction (FollowIR's join)
and the candidates are doc_a, doc_b and the pair's other negatives. Reported:

- accuracy per view: the view's document outscores the other document of the pair;
- dual accuracy: both views right. A retriever blind to the instruction ranks the two
  documents the same way under both views, so it scores 0 here;
- top-1 accuracy and dual top-1: the view's document first among all candidates;
- p-MRR over the pair's candidates: from view a to view b doc_a loses its relevance,
  from b to a doc_b does; each pair scores the mean of the two terms, x100 over pairs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dvsynth.evaluate.gold import GoldPair
from dvsynth.evaluate.metrics import pmrr_change, rank_or_last, ranks
from dvsynth.records import anchor, doc_text

#: (query texts, document texts) -> scores[i][j] of query i against document j.
Scorer = Callable[[Sequence[str], Sequence[str]], Any]


@dataclass
class PairResult:
    gold_id: str
    right: dict[str, bool]  # view -> its document outscored the pair's other document
    top1: dict[str, bool]  # view -> its document first among all candidates
    pmrr: float


def _candidates(pair: GoldPair) -> dict[str, str]:
    docs = {"doc_a": doc_text(pair.doc_a), "doc_b": doc_text(pair.doc_b)}
    for i, doc in enumerate(pair.other_negatives):
        docs[f"other_{i}"] = doc_text(doc)
    return docs


def evaluate_pairs(pairs: Sequence[GoldPair], scorer: Scorer) -> list[PairResult]:
    results = []
    for pair in pairs:
        docs = _candidates(pair)
        names = list(docs)
        queries = {
            "a": anchor(pair.query, pair.instruction_a),
            "b": anchor(pair.query, pair.instruction_b),
        }
        matrix = scorer([queries["a"], queries["b"]], [docs[n] for n in names])
        run = {
            view: {name: float(matrix[i][j]) for j, name in enumerate(names)}
            for i, view in enumerate(("a", "b"))
        }
        target = {"a": "doc_a", "b": "doc_b"}
        other = {"a": "doc_b", "b": "doc_a"}
        run_ranks = {view: ranks(scores) for view, scores in run.items()}
        right = {v: run[v][target[v]] > run[v][other[v]] for v in ("a", "b")}
        top1 = {v: run_ranks[v][target[v]] == 1 for v in ("a", "b")}
        a_to_b = pmrr_change(
            rank_or_last(run_ranks["a"], "doc_a"), rank_or_last(run_ranks["b"], "doc_a")
        )
        b_to_a = pmrr_change(
            rank_or_last(run_ranks["b"], "doc_b"), rank_or_last(run_ranks["a"], "doc_b")
        )
        results.append(PairResult(pair.gold_id, right, top1, (a_to_b + b_to_a) / 2))
    return results


def summarize(results: Sequence[PairResult]) -> dict[str, Any]:
    n = len(results)
    if not n:
        return {"pairs": 0}

    def share(values) -> float:
        return round(sum(values) / n, 4)

    return {
        "pairs": n,
        "accuracy_view_a": share(r.right["a"] for r in results),
        "accuracy_view_b": share(r.right["b"] for r in results),
        "dual_accuracy": share(r.right["a"] and r.right["b"] for r in results),
        "top1_view_a": share(r.top1["a"] for r in results),
        "top1_view_b": share(r.top1["b"] for r in results),
        "dual_top1": share(r.top1["a"] and r.top1["b"] for r in results),
        "p_mrr": round(100 * statistics.fmean(r.pmrr for r in results), 2),
    }


def embedding_scorer(model, batch_size: int = 32) -> Scorer:
    """Cosine similarity with a loaded sentence-transformers model; queries and documents
    go through encode_query / encode_document, so a model's own prompts apply."""

    def score(queries: Sequence[str], docs: Sequence[str]):
        q = model.encode_query(list(queries), batch_size=batch_size, normalize_embeddings=True)
        d = model.encode_document(list(docs), batch_size=batch_size, normalize_embeddings=True)
        return q @ d.T

    return score


def sentence_transformer_scorer(model_name: str | None, batch_size: int = 32) -> Scorer:
    """embedding_scorer for a model name or path (default: the bundled MiniLM)."""
    from dvsynth.evaluate.embed import load_embedder

    return embedding_scorer(load_embedder(model_name), batch_size)
