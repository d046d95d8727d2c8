"""The generation stage on its own, with stub clients: how each outcome becomes a row."""

from __future__ import annotations

import asyncio

import pytest

from dvsynth.errors import FatalLLMError
from dvsynth.generate.step import Generator
from dvsynth.llm.client import Completion
from dvsynth.prompts import DEFAULT_PROMPTS, load_template
from dvsynth.records import Doc, Seed

SEED = Seed(
    seed_id="s1",
    query="q",
    instruction="Only 2020.",
    positive=Doc(doc_id="p", text="2020 text"),
    negative=Doc(doc_id="n", text="2010 text"),
)


class StubClient:
    model = "stub/model"
    params = {"temperature": 0.0, "max_tokens": 64, "seed": 0}

    def __init__(self, outcome):
        self.outcome = outcome

    async def complete(self, messages, answer_tags=()):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def generate(outcome):
    templates = {mode: load_template(name) for mode, name in DEFAULT_PROMPTS.items()}
    return asyncio.run(Generator(StubClient(outcome), templates)(SEED))


def test_a_bug_in_one_row_fails_that_row_only():
    row = generate(ValueError("boom"))  # failed, not rejected: a rerun tries it again
    assert row.status == "failed" and row.reasons == ["internal:ValueError"]
    assert row.error == "ValueError: boom"


def test_fatal_provider_errors_still_stop_the_run():
    with pytest.raises(FatalLLMError):
        generate(FatalLLMError("--model stub/model: AuthenticationError"))


def test_a_reply_cut_by_max_tokens_is_truncated_not_accepted():
    cut = Completion(
        text="<answer><new_instruction>Only 20",
        prompt_tokens=5,
        completion_tokens=64,
        cost_usd=None,
        latency_s=0.1,
        finish_reason="length",
    )
    row = generate(cut)
    assert row.reasons == ["generator:truncated"]
    whole = Completion(
        text="<answer><new_instruction>Only 2010.</new_instruction></answer>",
        prompt_tokens=5,
        completion_tokens=9,
        cost_usd=0.001,
        latency_s=0.1,
        finish_reason="length",
    )
    kept = generate(whole)
    assert kept.status == "kept" and kept.instruction_b == "Only 2010."
    assert kept.provenance.cost_usd == 0.001 and kept.provenance.usage.completion_tokens == 9
