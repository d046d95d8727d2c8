"""Each rule validator on cases it must pass and cases it must fail."""

from __future__ import annotations

import pytest

from dvsynth.errors import UserError
from dvsynth.records import Doc, DualView, Provenance
from dvsynth.validators.rules import apply_rules, build_rules

DOC_A = (
    "The 2019 Cochrane review pooled twelve randomised controlled trials of adults with "
    "chronic lower back pain and found that supervised exercise reduced pain scores."
)
DOC_B = (
    "A blog post from a personal trainer shares five stretches she recommends to clients "
    "who sit at a desk all day, with photos of each position."
)


def pair(instruction_a: str | None, instruction_b: str | None, mode: str = "bootstrap"):
    return DualView(
        pair_id="p1",
        seed_id="s1",
        query="exercise for back pain",
        instruction_a=instruction_a,
        doc_a=Doc(doc_id="a", text=DOC_A),
        instruction_b=instruction_b,
        doc_b=Doc(doc_id="b", text=DOC_B),
        mode=mode,
        status="kept",
        provenance=Provenance(
            generator_model="m",
            prompt_name="p",
            prompt_sha256="x",
            dvsynth_version="0",
            created_at="now",
        ),
    )


GOOD_A = "Only systematic reviews of clinical trials; exclude personal advice and opinion."
GOOD_B = "I am a desk worker looking for practical stretching tips from a fitness coach."


def reasons(row, **kwargs):
    return apply_rules(build_rules(**kwargs), row)


def test_a_good_pair_passes_every_rule():
    assert reasons(pair(GOOD_A, GOOD_B)) == []


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (GOOD_A, None, "rule:empty:instruction_b"),
        (GOOD_A, "  ...  ", "rule:empty:instruction_b"),
        (GOOD_A, "Only blogs.", "rule:length:instruction_b:short"),
        (GOOD_A, "word " * 81, "rule:length:instruction_b:long"),
        ("Reviews.", GOOD_B, "rule:length:instruction_a:short"),
    ],
)
def test_empty_and_length(a, b, expected):
    assert expected in reasons(pair(a, b))


def test_leakage_catches_a_copied_span_even_with_small_edits():
    copied = "Find posts where a trainer shares five stretches she recommends to clients who sit."
    assert "rule:leakage:instruction_b:doc_b" in reasons(pair(GOOD_A, copied))
    edited = "Find posts where a trainer shares 5 stretches she recommends to clients who sit."
    assert "rule:leakage:instruction_b:doc_b" in reasons(pair(GOOD_A, edited))
    # Six copied words are under the default span of eight; a span of 4 catches them.
    short = "Find tips where the trainer shares five stretches she recommends, nothing clinical."
    assert not any(r.startswith("rule:leakage") for r in reasons(pair(GOOD_A, short)))
    tight = reasons(pair(GOOD_A, short), options={"leakage": {"span_words": 4}})
    assert "rule:leakage:instruction_b:doc_b" in tight


def test_leakage_ignores_the_seed_instruction_in_reverse_mode():
    copied_a = "Twelve randomised controlled trials of adults with chronic lower back pain only."
    assert not any(r.startswith("rule:leakage") for r in reasons(pair(copied_a, GOOD_B, "reverse")))
    assert "rule:leakage:instruction_a:doc_a" in reasons(pair(copied_a, GOOD_B, "bootstrap"))


@pytest.mark.parametrize(
    "text",
    [
        "Prefer passage B over the other one, it is about stretching.",
        "Return document 2 and skip anything clinical at all.",
        "Treat the negative as the relevant one for desk workers.",
        "Only the relevant passages about stretching should count here.",
        "For this task, focus on stretching advice from coaches.",
        "Rank the doc_id of the blog first, exclude clinical reviews.",
    ],
)
def test_meta_language_is_rejected(text):
    assert "rule:meta_language:instruction_b" in reasons(pair(GOOD_A, text))


@pytest.mark.parametrize(
    "text",
    [
        "Only studies of HIV-negative adults; exclude blog posts and opinion.",
        "Exclude trials with negative results; I want practical tips from coaches.",
        "Article 5 of the guidance is irrelevant; I want stretching tips for office workers.",
    ],
)
def test_real_constraints_are_not_meta_language(text):
    assert not any(r.startswith("rule:meta") for r in reasons(pair(GOOD_A, text)))


def test_rewording_of_instruction_a_is_rejected():
    reworded = "Only clinical trial systematic reviews; exclude opinion and personal advice."
    assert "rule:rewording" in reasons(pair(GOOD_A, reworded))
    assert "rule:rewording" not in reasons(pair(GOOD_A, GOOD_B))
    loose = reasons(pair(GOOD_A, reworded), options={"rewording": {"max_similarity": 100}})
    assert "rule:rewording" not in loose


def test_disabled_and_custom_rules(tmp_path, monkeypatch):
    module = tmp_path / "my_rules.py"
    module.write_text(
        "def no_coaches(row):\n"
        "    return 'coach' if 'coach' in (row.instruction_b or '') else None\n"
        "def broken(row):\n"
        "    raise RuntimeError('bug')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = reasons(pair(GOOD_A, GOOD_B), custom=("my_rules:no_coaches", "my_rules:broken"))
    assert found == ["rule:no_coaches:coach", "rule:broken:error:RuntimeError"]
    assert reasons(pair(GOOD_A, None), disabled=("empty", "length")) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"custom": ("nocolon",)}, "is not module:function"),
        ({"custom": ("no_such_module_xyz:f",)}, "cannot import no_such_module_xyz"),
        ({"custom": ("json:no_such_function",)}, "json has no function no_such_function"),
        ({"disabled": ("spelling",)}, "unknown rule 'spelling'"),
    ],
)
def test_bad_rule_specs_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        build_rules(**kwargs)
