"""The generation stage on its own, with stub clients: how each outcome becomes a row."""

from __future__ import annotations

import asyncio
import json

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


@pytest.mark.parametrize("content", [5, ["<answer>", "Only 2010."], {"answer": "Only 2010."}])
def test_an_answer_that_is_not_text_is_unparsable_not_a_bug(content):
    odd = Completion(
        text=content, prompt_tokens=5, completion_tokens=1, cost_usd=None, latency_s=0.1
    )
    row = generate(odd)  # once internal:TypeError, "retried" by every rerun for ever
    assert row.status == "rejected" and row.reasons == ["generator:unparsable"]
    assert row.raw_response == json.dumps(content)


def test_a_server_answering_a_number_rejects_the_row_for_good(run_cli, tmp_path):
    """Through the real HTTP transport and the CLI: content 5 is a final rejection."""
    from aiohttp import web

    from dvsynth.testing import FakeLLMServer, completion_body
    from tests.conftest import generate_args, read_rows, write_jsonl

    async def numbers(request):
        body = completion_body(await request.json(), "")
        body["choices"][0]["message"]["content"] = 5
        return web.json_response(body)

    server = FakeLLMServer()
    server.extra_routes.append([web.post("/numbers/v1/chat/completions", numbers)])
    seeds = write_jsonl(
        tmp_path / "s.jsonl", [{"id": "s0", "query": "q", "positive": "p", "negative": "n"}]
    )
    with server:
        args = generate_args(server, seeds, tmp_path / "run")
        args[args.index(server.api_base)] = f"http://127.0.0.1:{server.port}/numbers/v1"
        for _ in range(2):
            result = run_cli(*args)
            assert result.code == 0, result.err
    [row] = read_rows(tmp_path / "run")
    assert row["status"] == "rejected" and row["reasons"] == ["generator:unparsable"]


@pytest.mark.parametrize("content", [5, ["a", 1], {"label": "yes"}])
def test_a_judge_answering_not_text_rejects_by_its_own_verdict(run_cli, tmp_path, content):
    """The judge and the instruction check read text too: content that is not text is
    their own `unparsable` verdict, final, never an internal TypeError retried forever."""
    from aiohttp import web

    from dvsynth.testing import FakeLLMServer, completion_body
    from tests.conftest import generate_args, validate_args, write_jsonl

    async def odd(request):
        body = completion_body(await request.json(), "")
        body["choices"][0]["message"]["content"] = content
        return web.json_response(body)

    server = FakeLLMServer()
    server.extra_routes.append([web.post("/odd/v1/chat/completions", odd)])
    seeds = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {
                "id": "s0",
                "query": "effects of caffeine on sleep",
                "instruction": "Only human laboratory studies; no surveys.",
                "positive": "In a sleep laboratory, 24 adults slept 41 minutes less.",
                "negative": "An online survey of 5,000 coffee drinkers on sleep.",
            }
        ],
    )
    with server:
        assert run_cli(*generate_args(server, seeds, tmp_path / "run")).code == 0
        args = validate_args(tmp_path / "run", server)
        args[args.index(server.api_base)] = f"http://127.0.0.1:{server.port}/odd/v1"
        for _ in range(2):
            result = run_cli(*args)
            assert result.code == 0, result.err
    import sqlite3

    db = sqlite3.connect(tmp_path / "run" / "dvsynth.sqlite")
    [(outcome, checked)] = db.execute("SELECT outcome, checked FROM rows").fetchall()
    reasons = json.loads(checked)["reasons"]
    assert outcome == "rejected", (outcome, reasons)
    assert not any("internal" in r or "TypeError" in r for r in reasons), reasons
