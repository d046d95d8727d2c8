"""Gold pairs: the files validate and cover what they must; calibrate and eval-retriever."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dvsynth.evaluate.eval_retriever import evaluate_pairs, summarize
from dvsynth.evaluate.gold import BUNDLED_GOLD, CORRUPT_KINDS, GoldPair, read_gold
from dvsynth.validators.rules import apply_rules, build_rules

ROOT = Path(__file__).resolve().parents[1]
MSMARCO_GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"
LEVERS = {"scope", "time", "geography", "audience", "format", "source", "methodology", "exclusion"}
STYLES = {"constraint", "persona", "background", "negation"}


# 165 msmarco pairs so far: issue 6 asks for 200 (see benchmarks/gold/README.md).
@pytest.mark.parametrize("path, minimum", [(MSMARCO_GOLD, 165), (BUNDLED_GOLD, 48)])
def test_gold_files_validate_and_cover_levers_styles_and_failures(path, minimum):
    pairs = list(read_gold(path))
    assert len(pairs) >= minimum
    assert len({p.gold_id for p in pairs}) == len(pairs)
    assert {p.lever for p in pairs} == LEVERS
    assert {p.style for p in pairs} == STYLES
    kinds = Counter(v.kind for p in pairs for v in p.corrupt)
    assert set(kinds) == set(CORRUPT_KINDS)
    rules = build_rules()
    for pair in pairs:
        assert apply_rules(rules, pair.as_dual_view()) == [], pair.gold_id
        assert pair.instruction_a != pair.instruction_b


TAIL = "and then a long tail of ordinary filler words follows here"


def _doc(i, text):
    return {"doc_id": f"d{i}", "title": "", "text": text}


def fixture_pairs(marker: str = "") -> list[GoldPair]:
    """Pairs the fake judge can read exactly: a view needs the `#kw...` word it names."""
    pairs = []
    for i in range(6):
        a, b = f"kwalpha{i}", f"kwbeta{i}"
        pairs.append(
            GoldPair.model_validate(
                {
                    "gold_id": f"g{i}",
                    "seed_id": f"s{i}",
                    "query": f"fixture query {i} {marker}".strip(),
                    "instruction_a": f"Only sources that cover #{a} in some depth.",
                    "doc_a": _doc(2 * i, f"{a} report with shared words kwshared {TAIL}"),
                    "instruction_b": f"I am after material about #{b} instead of the rest.",
                    "doc_b": _doc(2 * i + 1, f"{b} notes with shared words kwshared {TAIL}"),
                    "other_negatives": [_doc(100 + i, "unrelated filler text")],
                    "lever": "scope",
                    "style": "constraint",
                    "check": "each document carries exactly the keyword its view asks for",
                    "corrupt": [
                        {"kind": "rewording", "instruction_b": f"Only sources covering #{a}."},
                        {
                            "kind": "admits_both",
                            "instruction_b": "Anything about #kwshared is fine.",
                        },
                        {
                            "kind": "admits_neither",
                            "instruction_b": "Only texts on #kwgamma please.",
                        },
                        {
                            "kind": "leak",
                            "instruction_b": f"Find {b} notes with shared words kwshared {TAIL}",
                        },
                        {"kind": "meta", "instruction_b": f"Prefer passage B, the one on #{b}."},
                    ],
                }
            )
        )
    return pairs


def write_gold(path: Path, pairs: list[GoldPair]) -> Path:
    path.write_text("".join(p.model_dump_json() + "\n" for p in pairs), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "marker, precision, recall, corrupt_recall",
    [("", 1.0, 1.0, 1.0), ("[judge-yes]", None, 0.0, 1.0), ("[judge-no]", None, 0.0, 1.0)],
)
def test_calibrate_scores_perfect_always_yes_and_always_no_judges(
    run_cli, fake_server, tmp_path, marker, precision, recall, corrupt_recall
):
    gold = write_gold(tmp_path / "gold.jsonl", fixture_pairs(marker))
    result = run_cli(
        "calibrate",
        "--gold",
        gold,
        "--judge-model",
        "openai/judge",
        "--judge-api-base",
        fake_server.api_base,
        "--json",
    )
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["gold_pairs"] == 6 and data["corrupt_variants"] == 30
    assert data["keep_precision"] == precision
    assert data["keep_recall"] == recall
    assert data["false_reject_rate"] == 1 - recall
    assert data["corrupt_recall"] == corrupt_recall
    by_kind = data["recall_by_kind"]
    assert by_kind["leak"]["by_rules"] == 6 and by_kind["meta"]["by_rules"] == 6
    if not marker:  # the perfect judge catches what the rules let through
        assert by_kind["admits_both"] == {
            "variants": 6,
            "recall": 1.0,
            "by_rules": 0,
            "by_check": 0,
            "by_judge": 6,
        }


def test_calibrate_rules_alone_on_the_bundled_gold(run_cli):
    result = run_cli("calibrate", "--no-judge", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["gold_pairs"] == 48 and data["false_reject_rate"] == 0.0
    assert data["recall_by_kind"]["meta"]["recall"] > 0.8
    assert data["recall_by_kind"]["admits_both"]["recall"] < 0.5  # only a judge can see it


def test_a_blind_scorer_gets_dual_accuracy_zero_and_an_oracle_gets_one():
    pairs = fixture_pairs()

    def blind(queries, docs):  # reads the query and the documents, never the instruction
        return [
            [len(doc) % 7 + (0.1 if "kwalpha" in doc else 0.0) for doc in docs] for _ in queries
        ]

    def oracle(queries, docs):  # scores a document by the keyword the instruction asks for
        def wanted(query):
            return query.split("#", 1)[1].split()[0].strip(".,") if "#" in query else ""

        return [[1.0 if wanted(q) and wanted(q) in doc else 0.0 for doc in docs] for q in queries]

    blind_summary = summarize(evaluate_pairs(pairs, blind))
    assert blind_summary["dual_accuracy"] == 0.0 and blind_summary["dual_top1"] == 0.0
    assert blind_summary["accuracy_view_a"] == 1.0 and blind_summary["p_mrr"] <= 0
    oracle_summary = summarize(evaluate_pairs(pairs, oracle))
    assert oracle_summary["dual_accuracy"] == 1.0 and oracle_summary["dual_top1"] == 1.0
    assert oracle_summary["p_mrr"] > 0


def test_eval_retriever_runs_the_bundled_model_on_a_gold_file(run_cli, tmp_path):
    gold = write_gold(tmp_path / "gold.jsonl", fixture_pairs())
    result = run_cli("eval-retriever", "--gold", gold, "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["pairs"] == 6 and 0.0 <= data["dual_accuracy"] <= 1.0
    assert -100.0 <= data["p_mrr"] <= 100.0


def test_a_bad_gold_line_is_one_clear_line(run_cli, tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"gold_id": "x"}\n')
    result = run_cli("calibrate", "--no-judge", "--gold", gold)
    assert result.code == 2 and f"{gold}:1:" in result.err
