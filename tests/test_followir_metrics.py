"""MAP@1000, nDCG@5 and p-MRR equal mteb's reference implementation (mteb 2.26.24).

Runs and qrels are random, with tied scores (drawn from a few values), graded labels,
judged documents the run never retrieved, and changed documents missing from one run.
"""

from __future__ import annotations

import random

import pytest
from mteb._evaluators import retrieval_metrics  # a test dependency (the dev extra)

from dvsynth.evaluate.metrics import average_precision, followir_pmrr, mean_over_queries, ndcg

K_VALUES = [1, 3, 5, 10, 20, 100, 1000]  # mteb's defaults


def random_case(rng: random.Random, queries: int = 12):
    og_runs, changed_runs, qrels_og, qrels_changed, changed_docs = {}, {}, {}, {}, {}
    for q in range(queries):
        qid = f"q{q}"
        pool = [f"d{q}-{i}" for i in range(rng.randint(5, 40))]
        levels = [0.1, 0.2, 0.5, 0.5, 0.9]  # few values: many ties
        og_runs[qid] = {d: rng.choice(levels) for d in pool if rng.random() < 0.85}
        changed_runs[qid] = {d: rng.choice(levels) for d in pool if rng.random() < 0.85}
        judged = rng.sample(pool, rng.randint(1, len(pool)))
        judged.append(f"unretrieved-{q}")  # judged, in no run
        qrels_og[qid] = {d: rng.choice([0, 0, 1, 2]) for d in judged}
        flipped = [d for d, label in qrels_og[qid].items() if label and rng.random() < 0.5]
        qrels_changed[qid] = {
            d: (0 if d in flipped else label) for d, label in qrels_og[qid].items()
        }
        changed_docs[qid] = flipped
    return og_runs, changed_runs, qrels_og, qrels_changed, changed_docs


@pytest.mark.parametrize("seed", range(8))
def test_map_ndcg_and_pmrr_equal_mteb(seed):
    og_runs, changed_runs, qrels_og, qrels_changed, changed_docs = random_case(random.Random(seed))
    assert any(changed_docs.values())

    results = {f"{q}-og": run for q, run in og_runs.items()}
    results |= {f"{q}-changed": run for q, run in changed_runs.items()}
    qrels = {f"{q}-og": labels for q, labels in qrels_og.items()}
    qrels |= {f"{q}-changed": labels for q, labels in qrels_changed.items()}
    reference = retrieval_metrics.evaluate_p_mrr_change(qrels, results, changed_docs, K_VALUES)

    assert followir_pmrr(og_runs, changed_runs, changed_docs) == pytest.approx(
        reference["p-MRR"], abs=1e-12
    )
    # mteb rounds its means to 5 decimals.
    assert mean_over_queries(average_precision, og_runs, qrels_og, 1000) == pytest.approx(
        reference["og"]["map_at_1000"], abs=6e-6
    )
    assert mean_over_queries(ndcg, og_runs, qrels_og, 5) == pytest.approx(
        reference["og"]["ndcg_at_5"], abs=6e-6
    )


@pytest.mark.parametrize("seed", range(4))
def test_per_query_values_equal_trec_eval_through_mteb(seed):
    og_runs, _, qrels_og, _, _ = random_case(random.Random(100 + seed), queries=20)
    scored = retrieval_metrics.calculate_retrieval_scores(og_runs, qrels_og, K_VALUES)
    for qid, values in scored.all_scores.items():
        assert average_precision(og_runs[qid], qrels_og[qid], 1000) == pytest.approx(
            values["map_cut_1000"], abs=1e-9
        )
        assert ndcg(og_runs[qid], qrels_og[qid], 5) == pytest.approx(values["ndcg_cut_5"], abs=1e-9)


def test_ties_are_broken_by_doc_id_descending():
    qrels = {"a": 1, "b": 0}
    # equal scores: "b" ranks above "a", so "a" is second; alone in the changed run it is
    # first: it moved up after losing relevance, a p-MRR of 1/2 - 1.
    assert average_precision({"a": 0.5, "b": 0.5}, qrels, 1000) == 0.5
    assert followir_pmrr({"q": {"a": 0.5, "b": 0.5}}, {"q": {"a": 0.1}}, {"q": ["a"]}) == -0.5
