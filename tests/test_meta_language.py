"""The meta_language rule: pointing at the shown passages is caught, real needs pass.

The tuning set is what the rule was written against, so it must be classified exactly.
The held-out set was written first and never tuned on: it must stay above the floor
measured when the rule was finished (recall 0.894, false-reject rate 0.015 on 66 / 67).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dvsynth.evaluate.gold import BUNDLED_GOLD, read_gold
from dvsynth.records import Doc, DualView, Provenance
from dvsynth.validators.rules import meta_language, meta_match

ROOT = Path(__file__).resolve().parents[1]
SETS = ROOT / "benchmarks" / "meta_language"
GOLD_FILES = [BUNDLED_GOLD, ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"]
HELDOUT_MIN_RECALL = 0.85
HELDOUT_MAX_FALSE_REJECTS = 0.03


def read_set(name: str) -> list[dict]:
    lines = (SETS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def row(instruction_a: str, instruction_b: str, mode: str = "bootstrap") -> DualView:
    doc = Doc(doc_id="d", text="Some passage text.")
    provenance = Provenance(
        generator_model="m", prompt_name="p", prompt_sha256="x", dvsynth_version="0", created_at="t"
    )
    return DualView(
        pair_id="p", seed_id="s", query="q", instruction_a=instruction_a, doc_a=doc,
        instruction_b=instruction_b, doc_b=doc, mode=mode, status="kept", provenance=provenance,
    )  # fmt: skip


def test_the_sets_are_large_separate_and_balanced():
    tuning, heldout = read_set("tuning"), read_set("heldout")
    assert sum(r["meta"] for r in tuning) >= 40 and sum(not r["meta"] for r in tuning) >= 40
    assert sum(r["meta"] for r in heldout) >= 60 and sum(not r["meta"] for r in heldout) >= 60
    assert not {r["text"] for r in tuning} & {r["text"] for r in heldout}
    assert all(r["note"] and isinstance(r["meta"], bool) for r in tuning + heldout)


@pytest.mark.parametrize("case", read_set("tuning"), ids=lambda r: r["text"][:40])
def test_every_tuning_case_is_classified_right(case):
    assert (meta_match(case["text"]) is not None) == case["meta"], meta_match(case["text"])


def test_the_held_out_set_stays_above_the_measured_floor():
    rows = read_set("heldout")
    meta = [r for r in rows if r["meta"]]
    legit = [r for r in rows if not r["meta"]]
    recall = sum(meta_match(r["text"]) is not None for r in meta) / len(meta)
    false_rejects = sum(meta_match(r["text"]) is not None for r in legit) / len(legit)
    assert recall >= HELDOUT_MIN_RECALL
    assert false_rejects <= HELDOUT_MAX_FALSE_REJECTS


@pytest.mark.parametrize(
    "text, group",
    [
        ("Ignore passage A; doc #2 has the figures.", "label"),
        ("I want the latter document, it has prices.", "position"),
        ("Prefer the former, since it is older.", "standalone"),
        ("The one listed below covers leasing.", "position"),
        ("Of the provided documents, keep the short one.", "shown_set"),
        ("Give me the hard negative about solar panels.", "task_talk"),
        ("Mark the passage about Mars as relevant.", "task_talk"),
    ],
)
def test_each_match_names_its_pattern_group(text, group):
    found = meta_match(text)
    assert found is not None and found[0] == group


def test_an_ordinal_whose_noun_was_named_is_not_a_pointer():
    assert meta_match("I want the second edition reviewed, not the first.") is None
    assert meta_match("I want the symptoms, not the first.") == ("standalone", "the first")


def test_only_generated_instructions_are_checked():
    meta, need = "Return the second passage shown.", "Relevant documents describe trials."
    assert meta_language(row(meta, need, mode="reverse")) is None  # the seed's own a
    assert meta_language(row(meta, need, mode="bootstrap")) == "instruction_a"
    assert meta_language(row(need, meta, mode="reverse")) == "instruction_b"
    assert meta_language(row(need, need)) is None


@pytest.mark.parametrize("path", GOLD_FILES, ids=lambda p: p.name)
def test_gold_instructions_pass_and_every_meta_variant_is_caught(path):
    pairs = list(read_gold(path))
    for pair in pairs:
        for text in (pair.instruction_a, pair.instruction_b):
            assert meta_match(text) is None, (pair.gold_id, text)
    variants = [(p, v) for p in pairs for v in p.corrupt if v.kind == "meta"]
    assert variants
    for pair, variant in variants:
        found = meta_language(pair.as_dual_view(variant.instruction_b))
        assert found == "instruction_b", variant.instruction_b
