"""The judge's verdict is the word it wrote; log-probabilities only weigh that word.

Hand-built logprob structures: per position, the alternatives (token -> log-probability)
and the token the model produced there, as the client keeps them.
"""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import pytest

from dvsynth.llm.client import Completion, LLMClient
from dvsynth.prompts import DEFAULT_JUDGE_PROMPT, load_template
from dvsynth.records import Doc
from dvsynth.validators.judge import Judge, parse_label, probability_of_yes

LOG = math.log


def test_a_low_probability_yes_behind_markdown_is_not_the_verdict():
    # The reply opens with "**": its alternatives hold a 2% "Yes", the only yes/no there.
    # The word the judge wrote comes next, and there "No" has 90%.
    text = "**No**"
    tokens = ["**", "No", "**"]
    logprobs = [
        {"**": LOG(0.97), "Yes": LOG(0.02)},
        {"No": LOG(0.9), "Yes": LOG(0.1)},
        {"**": 0.0},
    ]
    assert probability_of_yes(text, logprobs, tokens) == pytest.approx(0.1)
    bold_yes = [{"**": LOG(0.97), "No": LOG(0.02)}, {"Yes": LOG(0.7), "No": LOG(0.3)}, {"**": 0}]
    assert probability_of_yes("**Yes**", bold_yes, ["**", "Yes", "**"]) == pytest.approx(0.7)


def test_the_probability_is_read_where_the_word_was_written():
    # "no" + "thing" is not the word no; the verdict word is the later "Yes".
    tokens = ["no", "thing", " to", " add.", " Yes", "."]
    logprobs = [{"no": LOG(0.9), "yes": LOG(0.1)}, {}, {}, {}, {" Yes": LOG(0.8), " No": LOG(0.2)}]
    logprobs.append({".": 0.0})
    assert parse_label("nothing to add. Yes.") is True
    assert probability_of_yes("nothing to add. Yes.", logprobs, tokens) == pytest.approx(0.8)


def test_no_verdict_word_is_unparsable_whatever_the_logprobs():
    text = "It depends on the reader."
    logprobs = [{"It": LOG(0.5), "yes": LOG(0.25), "no": LOG(0.25)}]
    assert parse_label(text) is None
    assert probability_of_yes(text, logprobs, ["It"]) is None


@pytest.mark.parametrize(
    "text, tokens, logprobs",
    [
        ("Yes", None, None),  # no logprobs at all
        ("Yes", ["Y", "es"], [{"Y": -0.1, "No": -3.0}, {"es": 0.0}]),  # word split in two
        ("Yes", ["Maybe"], [{"Maybe": -0.1, "No": -3.0}]),  # tokens that do not spell it
    ],
)
def test_without_a_yes_or_no_token_the_word_alone_decides(text, tokens, logprobs):
    assert probability_of_yes(text, logprobs, tokens) is None


def test_cached_completions_without_produced_tokens_use_the_likeliest():
    # Response caches written before the produced token was kept.
    logprobs = [{"**": LOG(0.97), "Yes": LOG(0.02)}, {"No": LOG(0.9), "Yes": LOG(0.1)}, {"**": 0}]
    assert probability_of_yes("**No**", logprobs) == pytest.approx(0.1)
    old_entry = {
        "text": "No",
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "cost_usd": None,
        "latency_s": 0.0,
        "logprobs": [{"No": 0.0}],
    }
    assert Completion(**old_entry).tokens is None


def test_markdown_and_punctuation_around_the_word_parse():
    assert parse_label("**Yes**") is True
    assert parse_label("No.") is False
    assert parse_label("Answer: *no*") is False
    assert parse_label("Yesterday, perhaps") is None


class _StubClient:
    model = "openai/judge"

    def __init__(self, completion: Completion) -> None:
        self.completion = completion

    async def complete(self, messages, answer_choices=()):
        return self.completion


def _judge_once(completion: Completion, threshold: float = 0.5):
    judge = Judge(_StubClient(completion), load_template(DEFAULT_JUDGE_PROMPT), threshold)
    row = SimpleNamespace(
        query="q",
        instruction_a="Only kwa.",
        instruction_b="Only kwb.",
        doc_a=Doc(doc_id="a", title="", text="kwa"),
        doc_b=Doc(doc_id="b", title="", text="kwb"),
    )
    (verdict,), _ = asyncio.run(judge._judge_one(row, "a", "a"))
    return verdict


def _completion(text: str, tokens=None, logprobs=None) -> Completion:
    return Completion(text, 1, 1, None, 0.0, logprobs=logprobs, tokens=tokens)


def test_judge_verdicts_follow_the_written_word_and_its_probability():
    markdown = _completion(
        "**No**", ["**", "No", "**"], [{"**": LOG(0.97), "Yes": LOG(0.02)}, {"No": 0.0}, {}]
    )
    verdict = _judge_once(markdown)
    assert verdict.relevant is False and verdict.probability == pytest.approx(0.0)
    garbage = _completion("It depends.", ["It"], [{"It": LOG(0.5), "yes": LOG(0.5)}])
    verdict = _judge_once(garbage)
    assert verdict.relevant is None and verdict.probability is None
    # The threshold applies to P(yes) at the word: a hesitant yes, a hesitant no.
    hesitant_yes = _completion("yes", ["yes"], [{"yes": LOG(0.6), "no": LOG(0.4)}])
    assert _judge_once(hesitant_yes, threshold=0.7).relevant is False
    hesitant_no = _completion("no", ["no"], [{"no": LOG(0.55), "yes": LOG(0.45)}])
    assert _judge_once(hesitant_no, threshold=0.4).relevant is True
    assert _judge_once(_completion("Yes.")).relevant is True  # no logprobs: the word


def test_the_client_keeps_the_produced_token_of_each_position():
    client = LLMClient("openai/judge", api_base="http://127.0.0.1:9/v1", transport="http")

    def position(token, logprob, alternatives):
        top = [{"token": t, "logprob": lp} for t, lp in alternatives.items()]
        return {"token": token, "logprob": logprob, "top_logprobs": top}

    content = [position("**", -0.03, {"No": -4.0}), position("Yes", -0.1, {"No": -2.5})]
    content.append(position("**", 0.0, {}))
    choice = {"message": {"content": "**Yes**"}, "finish_reason": "stop"}
    body = {"choices": [{**choice, "logprobs": {"content": content}}]}
    completion = client._json_to_completion(body)
    assert completion.tokens == ["**", "Yes", "**"]
    assert completion.logprobs[1] == {"No": -2.5, "Yes": -0.1}
    p = probability_of_yes(completion.text, completion.logprobs, completion.tokens)
    assert p == pytest.approx(math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.5)))
