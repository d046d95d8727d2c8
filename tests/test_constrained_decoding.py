"""The embedded model's answer format, enforced token by token (no model needed here).

A scripted scorer stands in for the model: it prefers, at each step, the tokens a test
names. Whatever it prefers, the decoded text must fit the template, and the model's
preferences must decide everything the template leaves open.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from dvsynth.generate.parse import parse_answer
from dvsynth.llm.transports.constrained import (
    REASONING_CHARS,
    ConstrainedDecoder,
    Scorer,
    Vocabulary,
    answer_template,
    choice_template,
)

# A character-level vocabulary plus a few longer pieces, as a BPE vocabulary has.
PIECES = [
    *"abcdefghijklmnopqrstuvwxyz .,<>/\n",
    "<answer>",
    "</answer>",
    "<new_instruction>",
    "</new_instruction>",
    "None",
    "yes",
    "no",
    "hello world",
    "x" * 400,
    "<|end|>",
]
ID = {piece: i for i, piece in enumerate(PIECES)}
END = ID["<|end|>"]


def encode(text: str) -> list[int]:
    """Longest piece first, as a tokenizer would."""
    ids, at = [], 0
    pieces = sorted((p for p in PIECES if p != "<|end|>"), key=len, reverse=True)
    while at < len(text):
        piece = next(p for p in pieces if text.startswith(p, at))
        ids.append(ID[piece])
        at += len(piece)
    return ids


VOCAB = Vocabulary(pieces=PIECES, stop_ids=frozenset({END}), encode=encode)


class Scripted(Scorer):
    """Prefers the next token of `wish` (a list of pieces), then ends text for good."""

    def __init__(self, wish: list[str]) -> None:
        self.wish = list(wish)
        self.fed: list[int] = []

    def feed(self, token_ids: list[int]) -> np.ndarray:
        self.fed += token_ids
        logits = np.zeros(len(PIECES))
        logits[ID["a"]] = 1.0  # a weak default: keep writing "a"
        if self.wish:
            logits[ID[self.wish.pop(0)]] = 10.0
        else:
            logits[END] = 5.0
        return logits


def decode(wish: list[str], template, max_tokens: int = 500, **kwargs) -> tuple[str, str]:
    decoder = ConstrainedDecoder(Scripted(wish), VOCAB, max_tokens=max_tokens, **kwargs)
    out = decoder.run(encode("prompt"), template)
    return "".join(PIECES[i] for i in out.token_ids), out.finish_reason


TEMPLATE = answer_template(["new_instruction"])
FORMAT = re.compile(
    rf"[^<]{{0,{REASONING_CHARS}}}"
    r"<answer>(None|<new_instruction>[^<\n]{8,300}</new_instruction>)</answer>"
)


def test_a_cooperative_model_writes_its_reasoning_and_its_answer():
    wish = [*"think", "<", "<new_instruction>", "hello world", "<", "</answer>"]
    text, finish = decode(wish, TEMPLATE)
    assert text == "think<answer><new_instruction>hello world</new_instruction></answer>"
    assert finish == "stop"
    assert parse_answer(text, ("new_instruction",)).fields == {"new_instruction": "hello world"}


def test_the_model_chooses_none_when_it_scores_none_higher():
    text, _ = decode([*"hmm", "<", "None"], TEMPLATE)
    assert text == "hmm<answer>None</answer>"


@pytest.mark.parametrize(
    "wish",
    [
        [],  # a model that wants to stop at once
        ["<answer>", "<answer>", "</answer>", "<"],  # one that jumps to the tags
        ["x" * 400] * 5,  # one whose pieces never fit the room left
        ["\n", "/", "<", "\n", "<", "<"],  # one that wants forbidden characters
        [*"a" * 600],  # one that would ramble past every bound
    ],
    ids=["stops", "tags", "too-long", "forbidden", "rambles"],
)
def test_whatever_the_model_prefers_the_text_fits_the_template(wish):
    text, finish = decode(wish, TEMPLATE)
    assert finish == "stop"
    assert FORMAT.fullmatch(text), text


def test_short_answer_text_is_extended_to_the_minimum_before_the_tag_closes():
    # The model wants to close the tag after two letters; eight are the least allowed.
    text, _ = decode(["<", "<new_instruction>", "h", "i", "<"], TEMPLATE)
    inner = re.search("<new_instruction>(.*)</new_instruction>", text).group(1)
    assert inner.startswith("hi") and len(inner) >= 8


def test_max_tokens_ends_the_answer_early_and_says_so():
    text, finish = decode([*"abcdefghij"], TEMPLATE, max_tokens=5)
    assert finish == "length" and text == "abcde"


def test_choices_are_exactly_one_word_whatever_the_model_wants():
    assert decode(["no"], choice_template(["yes", "no"]))[0] == "no"
    assert decode(["yes"], choice_template(["yes", "no"]))[0] == "yes"
    assert decode(["hello world"], choice_template(["yes", "no"]))[0] in ("yes", "no")


def test_the_closing_literal_costs_no_forward_pass():
    scorer = Scripted(["yes"])
    decoder = ConstrainedDecoder(scorer, VOCAB, max_tokens=4)
    decoder.run(encode("prompt"), choice_template(["yes", "no"]))
    assert scorer.fed == encode("prompt")  # "yes" was chosen and emitted, never fed back


def test_sampling_is_reproducible_for_a_seed_and_varies_across_seeds():
    def sample(seed: int) -> str:
        return decode([], TEMPLATE, temperature=1.5, seed=seed)[0]

    assert sample(7) == sample(7)
    assert len({sample(seed) for seed in range(6)}) > 1
    assert all(FORMAT.fullmatch(sample(seed)) for seed in range(6))
