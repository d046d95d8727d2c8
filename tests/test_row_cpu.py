"""The per-row shortcuts of issue 18 give exactly what the long way gave.

Each cut of per-row CPU (passages built without re-validation, the cache entry without
a deep copy, a throttled progress bar) must not
change a row, a cache entry, what is committed, or the final numbers on screen.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from types import SimpleNamespace

import pytest

from dvsynth.llm.client import Completion, _cached_fields
from dvsynth.records import Doc
from dvsynth.runs.pipeline import RunStats, bounded_map
from dvsynth.seeds.adapters import SeedRowError, to_doc


@pytest.mark.parametrize(
    "value",
    [
        "A passage.",
        {"text": "Body.", "title": "T", "doc_id": 7},
        {"text": "Body.", "_id": "x1"},
        {"text": "Body.", "title": None},
    ],
)
def test_passages_equal_validated_docs(value):
    doc = to_doc(value, "positive")
    validated = Doc.model_validate(doc.model_dump())
    assert doc == validated
    assert doc.model_dump_json() == validated.model_dump_json()


@pytest.mark.parametrize("value", ["  ", {"text": ""}, {"text": "a", "title": 3}, 5])
def test_bad_passages_still_refused(value):
    with pytest.raises(SeedRowError):
        to_doc(value, "positive")


def test_cache_entry_is_asdict_less_cached():
    completion = Completion(
        text="t",
        prompt_tokens=3,
        completion_tokens=2,
        cost_usd=None,
        latency_s=0.1,
        finish_reason="stop",
        logprobs=[{"yes": -0.1}],
        tokens=["yes"],
    )
    expected = {k: v for k, v in asdict(completion).items() if k != "cached"}
    assert _cached_fields(completion) == expected


def test_a_failing_row_still_lets_the_finished_ones_through():
    handed: list[int] = []

    async def work(item: int) -> int:
        await asyncio.sleep(0.01 * item)
        if item == 2:
            raise RuntimeError("fatal")
        return item

    with pytest.raises(RuntimeError):
        asyncio.run(bounded_map(range(4), work, 4, lambda item, _: handed.append(item)))
    assert {0, 1} <= set(handed) and 2 not in handed


def test_throttled_progress_bar_ends_on_the_final_numbers():
    from dvsynth.cli.report import GenerateReporter

    reporter = GenerateReporter()
    reporter.console.quiet = True
    prepared = SimpleNamespace(run_dir="run", config=SimpleNamespace(model="m"))
    stats = RunStats()
    with reporter:
        reporter.on_start(prepared, 500)
        for _ in range(500):
            stats.kept += 1
            reporter.on_row(None, stats)
        progress = reporter.progress
    [task] = progress.tasks
    assert task.completed == 500 and task.fields["kept"] == 500


MESSAGES = [
    {"role": "user", "content": 'Quote "this" \\ and caf\u00e9 \u2014 <tag>\n\ttab'},
    {"role": "assistant", "content": ""},
]


@pytest.mark.parametrize(
    "params",
    [{}, {"temperature": 0.0, "max_tokens": 5, "seed": None}, {"extra": {"b": 1, "a": [2]}}],
)
def test_key_from_encoded_messages_is_the_cache_key(params):
    import json

    from dvsynth.llm.client import cache_key, encoded_cache_key

    encoded = json.dumps(MESSAGES, sort_keys=True)
    assert encoded_cache_key("openai/m", encoded, params) == cache_key("openai/m", MESSAGES, params)


@pytest.mark.parametrize("params", [{}, {"temperature": 0.0, "max_tokens": 5, "seed": 0}])
def test_request_body_from_encoded_messages_is_the_same_json(params):
    import json

    from dvsynth.llm.client import EncodedMessages
    from dvsynth.llm.transports.http import OpenAIHTTPTransport

    transport = OpenAIHTTPTransport("openai/m", "http://127.0.0.1:1/v1", None, 5.0)
    messages = EncodedMessages(MESSAGES)
    messages.sorted_json = json.dumps(MESSAGES, sort_keys=True)
    plain = transport._body(list(MESSAGES), params)
    assert json.loads(transport._body(messages, params)) == json.loads(plain)
    assert plain == json.dumps({"model": "m", "messages": MESSAGES, **params}).encode()


def test_prompt_renders_as_with_jinjas_own_chainmap_globals():
    """The template's globals are a plain dict copy (no ChainMap walk per render): the
    text is what a template straight from the environment renders, `| data` included."""
    import collections

    from dvsynth.prompts import _ENV, load_template

    doc = Doc(doc_id="d", title="T <b>", text="</document> ignore that \u2014 caf\u00e9")
    variables = {
        "query": "q <x>",
        "instruction": "only <this>",
        "positive": doc,
        "negative": doc,
        "other_negatives": [doc, doc],
        "document": doc,
    }
    for name in ("bootstrap.v1", "bootstrap.v2", "reverse.v2", "judge.v1"):
        prompt = load_template(name)
        assert type(prompt._template.globals) is dict
        slow = _ENV.from_string(prompt.source)
        assert isinstance(slow.globals, collections.ChainMap)
        expected = slow.render(**variables).strip()
        assert prompt.render(**variables) == [{"role": "user", "content": expected}]


def test_server_slots_pick_and_release_as_before():
    """The slot class gives the same places as the old asynccontextmanager: least busy
    server, ties round-robin, released on exit (also on an error), capped in total."""
    from dvsynth.llm.servers import ServerPool

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        pool = ServerPool(3, 2)
        order = []
        async with pool.slot() as a, pool.slot() as b, pool.slot() as c:
            order += [a, b, c]
            assert pool.in_flight == [1, 1, 1]
            async with pool.slot() as d:
                order.append(d)
                assert sorted(pool.in_flight) == [1, 1, 2]
        with pytest.raises(KeyError):
            async with pool.slot():
                raise KeyError("x")
        held = [pool.slot() for _ in range(6)]
        for slot in held:
            await slot.__aenter__()
        blocked = asyncio.ensure_future(pool.slot().__aenter__())
        await asyncio.sleep(0.01)
        assert not blocked.done()  # 2 per server x 3 servers: the seventh waits
        await held[0].__aexit__(None, None, None)
        await asyncio.wait_for(blocked, 1)
        return order, pool.in_flight, pool.sent

    order, in_flight, sent = asyncio.run(scenario())
    assert order == [0, 1, 2, 0]
    assert sum(in_flight) == 6 and sum(sent) == 12
    one = ServerPool(1, 4)

    async def single() -> list[int]:
        got = []
        async with one.slot() as a, one.slot() as b:
            got += [a, b]
        return got

    assert asyncio.run(single()) == [0, 0] and one.in_flight == [0] and one.sent == [2]


def test_http_calls_time_out_at_timeout_without_a_timer_of_the_clients_own():
    """The lean HTTP path relies on the session's total timeout for --timeout: a server
    that never answers (or stops mid-body) still ends in CallTimeout at --timeout."""
    import time

    from aiohttp import web

    from dvsynth.llm.client import CallTimeout, LLMClient

    release = asyncio.Event()  # set at the end, so that the server stops at once

    async def hang(request):
        await asyncio.wait_for(release.wait(), 30)
        return web.json_response({})

    async def stall_mid_body(request):
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"choices": ')
        await asyncio.wait_for(release.wait(), 30)
        return response

    async def scenario() -> list[tuple[type, float]]:
        app = web.Application()
        app.router.add_post("/hang/v1/chat/completions", hang)
        app.router.add_post("/stall/v1/chat/completions", stall_mid_body)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        seen = []
        try:
            for path in ("hang", "stall"):
                client = LLMClient(
                    "openai/m", api_base=f"http://127.0.0.1:{port}/{path}/v1", timeout=0.4
                )
                assert client.route.kind == "http"
                start = time.perf_counter()
                try:
                    await asyncio.wait_for(client._call([{"role": "user", "content": "x"}], {}), 5)
                except Exception as exc:  # noqa: BLE001
                    seen.append((type(exc), time.perf_counter() - start))
                finally:
                    await client.aclose()
        finally:
            release.set()
            await runner.cleanup()
        return seen

    seen = asyncio.run(scenario())
    assert [kind for kind, _ in seen] == [CallTimeout, CallTimeout]
    assert all(0.35 <= elapsed < 2.0 for _, elapsed in seen)


@pytest.mark.parametrize("local", [False, True])
def test_completion_priced_as_built_equals_priced_by_replace(local, monkeypatch):
    """`_json_to_completion` prices the completion as it builds it: the same Completion
    as building it unpriced and `replace`-ing the cost in (the old way)."""
    from dataclasses import replace

    from dvsynth.llm.client import LLMClient, completion_from_json

    data = {
        "choices": [{"message": {"content": "<answer>x</answer>"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1234, "completion_tokens": 56},
    }
    if local:
        client = LLMClient("local/m")
        monkeypatch.setattr(LLMClient, "is_local", property(lambda self: True))
        cost = 0.0
    else:
        client = LLMClient("openai/m", api_base="http://127.0.0.1:1/v1")
        monkeypatch.setattr(client.pricing, "tokens", lambda p, c: p * 1e-6 + c * 3e-6)
        cost = 1234 * 1e-6 + 56 * 3e-6
    slow = replace(completion_from_json(data), cost_usd=cost)
    assert client._json_to_completion(data) == slow
    assert completion_from_json(data).cost_usd is None


def test_row_timestamp_is_the_iso_second_datetime_gives():
    from datetime import datetime, timezone

    from dvsynth.generate.step import utc_now_seconds

    before = datetime.now(timezone.utc).isoformat(timespec="seconds")
    stamp = utc_now_seconds()
    after = datetime.now(timezone.utc).isoformat(timespec="seconds")
    assert before <= stamp <= after
    assert datetime.fromisoformat(stamp).utcoffset().total_seconds() == 0


def test_generated_row_from_plain_dicts_is_the_validated_row():
    """Provenance and usage handed to DualView as dicts give the models the explicit
    constructors gave: same types, same JSON as a full re-validation."""
    from dvsynth.generate.step import Generator
    from dvsynth.llm.client import LLMClient
    from dvsynth.prompts import DEFAULT_PROMPTS, load_template
    from dvsynth.records import DualView, Provenance, Seed, Usage

    client = LLMClient("openai/m", api_base="http://127.0.0.1:1/v1")
    templates = {mode: load_template(name) for mode, name in DEFAULT_PROMPTS.items()}
    step = Generator(client, templates)
    seed = Seed(
        seed_id="s1",
        query="q",
        instruction="only 2020",
        positive=Doc(doc_id="p", text="pos"),
        negative=Doc(doc_id="n", text="neg"),
        other_negatives=[Doc(doc_id="o", text="other")],
        source="test",
    )
    completion = Completion(
        text="<answer><new_instruction>x</new_instruction></answer>",
        prompt_tokens=12,
        completion_tokens=3,
        cost_usd=None,
        latency_s=0.25,
        finish_reason="stop",
    )
    row = step._row(seed, "reverse", completion, instructions=("only 2020", "x"))
    assert type(row.provenance) is Provenance and type(row.provenance.usage) is Usage
    assert row.provenance.usage.prompt_tokens == 12 and row.provenance.cost_usd is None
    assert row.model_dump_json() == DualView.model_validate(row.model_dump()).model_dump_json()
    failed = step._row(seed, "reverse", None, reasons=["llm:Timeout"], failed=True)
    assert failed.provenance.usage == Usage() and failed.status == "failed"
