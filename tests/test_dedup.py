"""Dedup: exact after normalisation, near duplicates by MinHash + rapidfuzz, and survivors."""

from __future__ import annotations

import random

from dvsynth.validators.dedup import find_duplicates

BASE = [
    "Only peer-reviewed studies published after 2015 on adults in Europe, no news reports.",
    "I am a high-school teacher looking for classroom activities, not academic papers.",
    "Focus on government statistics for Canada and leave out opinion pieces or blogs.",
    "Give me first-hand patient accounts; exclude clinical trials and drug labels.",
    "Only recipes that take under thirty minutes and use no dairy at all.",
]


def test_exact_duplicates_after_normalisation_keep_the_smallest_id():
    ids = ["p3", "p1", "p2"]
    texts = [BASE[0], BASE[0].upper(), BASE[0].replace(",", " ,").replace(".", "")]
    found = find_duplicates(ids, texts)
    assert {k: (v.kind, v.survivor) for k, v in found.items()} == {
        "p2": ("exact", "p1"),
        "p3": ("exact", "p1"),
    }


def test_near_duplicates_are_found_and_distinct_texts_are_not():
    near = {
        "n-drop": BASE[0].replace(" in Europe", ""),
        "n-swap": BASE[1].replace("classroom activities", "activities classroom"),
        "n-typo": BASE[2].replace("government", "goverment"),
        "n-word": BASE[3].replace("first-hand", "firsthand real"),
    }
    ids = [f"b{i}" for i in range(len(BASE))] + list(near)
    texts = BASE + list(near.values())
    # A swap moves characters: ratio 87 for this short text, under the default 90.
    assert "n-swap" not in find_duplicates(ids, texts)
    found = find_duplicates(ids, texts, threshold=85)
    assert {k: v.survivor for k, v in found.items()} == {
        "n-drop": "b0",
        "n-swap": "b1",
        "n-typo": "b2",
        "n-word": "b3",
    }
    assert all(v.kind == "near" for v in found.values())
    assert found["n-drop"].reason == "dedup:near:b0"


def test_a_real_reversal_is_not_a_near_duplicate_of_its_source():
    a = "Only peer-reviewed studies published after 2015 on adults in Europe."
    b = "I want news coverage from before 2010 about teenagers in Asia."
    assert find_duplicates(["a", "b"], [a, b]) == {}


def test_survivors_do_not_depend_on_input_order():
    rng = random.Random(3)
    ids = [f"id{i:03d}" for i in range(200)]
    texts = [f"{BASE[i % 5]} variant {i // 5}" for i in range(200)]
    first = find_duplicates(ids, texts)
    order = list(range(200))
    rng.shuffle(order)
    second = find_duplicates([ids[i] for i in order], [texts[i] for i in order])
    assert first == second
    # "variant 1" vs "variant 11": near duplicates of one another, each cluster keeps
    # its smallest id, and every removed item points at a survivor that was kept.
    assert first and all(v.survivor not in first for v in first.values())
