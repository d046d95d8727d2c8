"""The Anthropic Message Batches provider, against the loopback fake of the API."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest

from dvsynth.errors import FatalLLMError, UserError
from dvsynth.fakes.anthropic_batches import FakeAnthropicBatches
from dvsynth.llm.batch.anthropic import (
    AnthropicBatchError,
    AnthropicBatches,
    to_params,
    to_result,
)
from dvsynth.llm.batch.provider import BatchRequest, Undecided
from dvsynth.testing import UNSUPPORTED_PARAMETER, FakeLLMServer, answer_for, completion_body

SECRET = "sk-ant-SECRET123"
SYSTEM = "You write retrieval instructions."


@pytest.fixture
def fake():
    server = FakeLLMServer()
    fake = FakeAnthropicBatches(server)
    server.start()
    yield fake
    server.stop()


def provider(fake: FakeAnthropicBatches) -> AnthropicBatches:
    pytest.importorskip("anthropic")
    return AnthropicBatches(api_key=SECRET, base_url=fake.base_url)


def body(query: str, **extra) -> dict:
    """An OpenAI body as the engine queues it: system prompt first, sampling, a seed."""
    return {
        "model": "claude-test",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Passages...\n<query>{query}</query>"},
        ],
        "temperature": 0.0,
        "seed": 0,
        **extra,
    }


def requests(n: int, prefix: str = "r", **extra) -> list[BatchRequest]:
    return [BatchRequest(f"{prefix}{i}", body(f"{prefix} q{i}", **extra)) for i in range(n)]


async def collect(p: AnthropicBatches, remote_id: str) -> dict:
    return {r.custom_id: r async for r in p.results(remote_id)}


async def until_ended(p: AnthropicBatches, remote_id: str):
    for _ in range(20):
        status = await p.status(remote_id)
        if status.terminal:
            return status
    raise AssertionError("the batch never ended")


def test_submit_poll_and_collect_openai_shaped_results(fake):
    fake.polls_to_complete = 2
    sent = requests(4)

    async def go():
        p = provider(fake)
        since = time.time()
        remote_id = await p.submit(sent, "dvsynth-t-00001")
        first = await p.status(remote_id)
        second = await p.status(remote_id)
        results = await collect(p, remote_id)
        await p.aclose()
        return since, remote_id, first, second, results

    since, remote_id, first, second, results = asyncio.run(go())
    assert first.state == "in_progress" and not first.terminal
    assert first.counts == {"total": 4, "completed": 0, "failed": 0, "expired": 0, "cancelled": 0}
    assert since - 1 <= first.created_at <= time.time()
    assert second.state == "completed"
    assert second.counts["completed"] == 4 and second.counts["total"] == 4
    assert sorted(results) == ["r0", "r1", "r2", "r3"]
    for request in sent:
        result = results[request.custom_id]
        online = completion_body(request.body)  # what the online fake answers
        assert result.status_code == 200 and not result.expired and result.error is None
        response = result.response
        assert response["object"] == "chat.completion"
        assert response["model"] == "claude-test"
        assert response["choices"][0]["message"] == online["choices"][0]["message"]
        assert response["choices"][0]["finish_reason"] == "stop"
        assert response["usage"] == online["usage"]
    # The provider received Anthropic params, without what it cannot take.
    received = dict(fake.batches[remote_id].requests)
    assert received["r0"] == {
        "model": "claude-test",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Passages...\n<query>r q0</query>"}],
        "system": SYSTEM,
    }
    assert fake.batches_created == 1
    assert set(fake.requests_by_custom_id.values()) == {1}


def test_openai_body_translates_to_anthropic_params():
    openai_body = {
        "model": "anthropic/claude-x",
        "messages": [
            {"role": "system", "content": "Rule one."},
            {"role": "developer", "content": [{"type": "text", "text": "Rule two."}]},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "Again"}]},
        ],
        "seed": 7,
        "temperature": 0.0,
        "top_p": 0.9,
        "n": 1,
        "logprobs": True,
        "top_logprobs": 2,
        "stop": "END",
    }
    assert to_params(openai_body) == {
        "model": "claude-x",
        "max_tokens": 1024,
        "system": "Rule one.\nRule two.",
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "Again"}]},
        ],
        "stop_sequences": ["END"],
    }
    assert (
        to_params({"model": "m", "messages": [], "max_completion_tokens": 64})["max_tokens"] == 64
    )
    assert to_params({"model": "m", "messages": [], "stop": ["a", "b"]})["stop_sequences"] == [
        "a",
        "b",
    ]


def test_request_size_is_the_bytes_of_the_entry(fake):
    p = provider(fake)
    request = BatchRequest("r0", body("café"))
    entry = {"custom_id": "r0", "params": to_params(request.body)}
    encoded = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()
    assert p.request_size(request) == len(encoded) + 1  # and the comma between entries
    assert p.max_requests == 100_000 and p.max_bytes == 256 * 2**20
    asyncio.run(p.aclose())


def test_sampling_parameters_would_error_every_request(fake):
    """Why `to_params` drops temperature: API version 2026-10-21 (what the SDK sends)
    refuses it on every model, and the fake checks params as that version does."""
    anthropic = pytest.importorskip("anthropic")

    async def go():
        client = anthropic.AsyncAnthropic(api_key=SECRET, base_url=fake.base_url)
        params = {**to_params(body("q")), "temperature": 0.0}
        batch = await client.messages.batches.create(
            requests=[{"custom_id": "t", "params": params}]
        )
        await client.messages.batches.retrieve(batch.id)
        lines = [line async for line in await client.messages.batches.results(batch.id)]
        await client.close()
        return lines

    (line,) = asyncio.run(go())
    assert line.result.type == "errored"
    assert line.result.error.error.message == "temperature: Extra inputs are not permitted"
    assert fake.request_headers[0]["anthropic-version"] == "2026-10-21"


def test_expired_requests_come_back_expired_and_run_when_resubmitted(fake):
    fake.expire_share = 0.5
    sent = requests(12)

    async def go():
        p = provider(fake)
        first_id = await p.submit(sent, "dvsynth-t-00001")
        first_status = await until_ended(p, first_id)
        first = await collect(p, first_id)
        again = [r for r in sent if first[r.custom_id].expired]
        second_id = await p.submit(again, "dvsynth-t-00002")
        second_status = await until_ended(p, second_id)
        second = await collect(p, second_id)
        await p.aclose()
        return first_status, first, again, second_status, second

    first_status, first, again, second_status, second = asyncio.run(go())
    assert 0 < len(again) < 12
    assert first_status.state == "completed"  # some ran: their answers are there
    assert first_status.counts["expired"] == len(again)
    assert first_status.counts["completed"] == 12 - len(again)
    for request in again:
        assert first[request.custom_id].status_code is None
        assert first[request.custom_id].error == "expired"
        assert second[request.custom_id].status_code == 200
    assert second_status.state == "completed" and second_status.counts["expired"] == 0
    assert all(fake.requests_by_custom_id[r.custom_id] == 2 for r in again)
    assert all(fake.runs_by_custom_id[r.custom_id] == 1 for r in sent)


def test_a_batch_where_nothing_ran_is_expired(fake):
    fake.expire_share = 1.0

    async def go():
        p = provider(fake)
        remote_id = await p.submit(requests(3, prefix="x"), "dvsynth-t-00001")
        status = await until_ended(p, remote_id)
        results = await collect(p, remote_id)
        await p.aclose()
        return status, results

    status, results = asyncio.run(go())
    assert status.state == "expired" and status.terminal
    assert all(r.expired for r in results.values()) and len(results) == 3


def test_missing_lines_strangers_and_junk(fake):
    fake.drop_share = 0.5
    fake.extra_ids = ["stranger"]
    fake.junk_lines = ['{"custom_id": "r1", "resu', '{"no": "custom_id"}', "[]"]
    fake.polls_to_complete = 3  # the SDK's results() retrieves the batch first: poll 1
    sent = requests(10)

    async def go():
        p = provider(fake)
        remote_id = await p.submit(sent, "dvsynth-t-00001")
        with pytest.raises(AnthropicBatchError, match="could not read the results"):
            await collect(p, remote_id)  # not ended yet: no results
        status = await until_ended(p, remote_id)
        results = await collect(p, remote_id)
        await p.aclose()
        return status, results, p.bad_lines

    status, results, bad_lines = asyncio.run(go())
    assert bad_lines == 3
    assert status.counts["completed"] == 10  # the provider counts what it ran
    assert "stranger" in results and results["stranger"].status_code == 200
    present = set(results) - {"stranger"}
    assert 0 < len(present) < 10


def test_errored_requests_map_to_http_statuses(fake):
    sent = [
        BatchRequest("boom", body("[error500] a")),
        BatchRequest("refused", body("[error400] b")),
        BatchRequest("short", body("c", max_tokens=3)),
        BatchRequest("fine", body("d")),
    ]

    async def go():
        p = provider(fake)
        remote_id = await p.submit(sent, "dvsynth-t-00001")
        status = await until_ended(p, remote_id)
        results = await collect(p, remote_id)
        await p.aclose()
        return status, results

    status, results = asyncio.run(go())
    assert status.state == "completed"
    assert status.counts["failed"] == 2 and status.counts["completed"] == 2
    assert results["boom"].status_code == 500 and results["boom"].response is None
    assert results["boom"].error == "api_error: internal error"
    assert results["refused"].status_code == 400
    assert results["refused"].error == f"invalid_request_error: {UNSUPPORTED_PARAMETER}"
    short = results["short"].response
    assert short["choices"][0]["finish_reason"] == "length"
    full = answer_for(SYSTEM + "\nPassages...\n<query>c</query>")[1]
    assert short["choices"][0]["message"]["content"] == full[:12]
    assert results["fine"].response["choices"][0]["finish_reason"] == "stop"


def _errored(kind: str, message: str = "nope") -> dict:
    return {
        "custom_id": "x",
        "result": {
            "type": "errored",
            "error": {"type": "error", "error": {"type": kind, "message": message}},
        },
    }


def test_result_lines_convert():
    statuses = {
        "rate_limit_error": 429,
        "overloaded_error": 500,
        "api_error": 500,
        "invalid_request_error": 400,
        "authentication_error": 401,
        "permission_error": 403,
        "not_found_error": 404,
        "something_new": 500,
    }
    for kind, status in statuses.items():
        result = to_result(_errored(kind))
        assert (result.status_code, result.error) == (status, f"{kind}: nope")
        assert not result.expired
    leaked = to_result(_errored("api_error", f"bad key {SECRET}"), key=SECRET)
    assert SECRET not in leaked.error
    for kind in ("expired", "canceled"):
        result = to_result({"custom_id": "x", "result": {"type": kind}})
        assert result.expired and result.status_code is None and result.response is None
    message = {
        "id": "msg_1",
        "model": "claude-x",
        "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "a"}]
        + [{"type": "text", "text": "b"}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 5},
    }
    done = to_result({"custom_id": "x", "result": {"type": "succeeded", "message": message}})
    assert done.status_code == 200
    choice = done.response["choices"][0]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": "ab"},
        "finish_reason": "length",
        "logprobs": None,
    }
    assert done.response["usage"] == {
        "prompt_tokens": 15,
        "completion_tokens": 3,
        "total_tokens": 18,
    }


def test_an_overloaded_create_is_sent_again(fake):
    fake.overload_creates = 2  # 529 creates nothing: safe to send again

    async def go():
        p = provider(fake)
        remote_id = await p.submit(requests(2), "dvsynth-t-00001")
        fake.overload_creates = 10
        with pytest.raises(AnthropicBatchError) as refused:
            await p.submit(requests(2, prefix="s"), "dvsynth-t-00002")
        await p.aclose()
        return remote_id, refused.value

    remote_id, refused = asyncio.run(go())
    assert list(fake.batches) == [remote_id]
    assert fake.calls["POST /v1/messages/batches"] == 3 + 4
    assert refused.transient and refused.status == 529


@pytest.mark.parametrize("fault", ["drop", "500"])
def test_find_recovers_a_create_whose_answer_was_lost(fake, fault):
    fake.fail_create_after_commit = 1
    fake.create_fault = fault

    async def go():
        p = provider(fake)
        since = time.time()
        with pytest.raises(AnthropicBatchError) as lost:
            await p.submit(requests(3), "dvsynth-t-00001")
        created = fake.batches_created  # the create is never retried by itself
        (lost_id,) = fake.batches
        found = await p.find("dvsynth-t-00001", since, count=3)
        wrong_size = await p.find("dvsynth-t-00001", since, count=4)
        later = await p.find("dvsynth-t-00001", time.time() + 3600, count=3)
        other_id = await p.submit(requests(3, prefix="s"), "dvsynth-t-00002")
        with pytest.raises(Undecided):  # two running batches of 3 since then: which?
            await p.find("dvsynth-t-00001", since, count=3, sample="r0")
        excluded = await p.find("dvsynth-t-00001", since, count=3, known={other_id})
        fake.polls_to_complete = 0  # both end: their results tell them apart
        by_results = await p.find("dvsynth-t-00001", since, count=3, sample="r0")
        neither = await p.find("dvsynth-t-00001", since, count=3, sample="z0")
        await p.aclose()
        return lost.value, created, lost_id, found, wrong_size, later, excluded, by_results, neither

    error, created, lost_id, found, wrong_size, later, excluded, by_results, neither = asyncio.run(
        go()
    )
    assert error.transient and SECRET not in str(error)
    assert created == 1
    assert found == lost_id
    assert wrong_size is None and later is None
    assert excluded == lost_id
    assert by_results == lost_id
    assert neither is None


def test_find_pages_through_the_listing(fake):
    async def go():
        p = provider(fake)
        since = time.time()
        ids = [await p.submit(requests(size, prefix=f"b{size}x"), "L") for size in range(1, 8)]
        found = await p.find("L", since, count=2)
        client = p._client
        everything = [b.id async for b in client.messages.batches.list(limit=2)]
        newer = await client.messages.batches.list(limit=2, before_id=ids[2])
        older = await client.messages.batches.list(limit=2, after_id=ids[1])
        await p.aclose()
        return ids, found, everything, newer, older

    ids, found, everything, newer, older = asyncio.run(go())
    assert found == ids[1]
    assert everything == ids[::-1]
    assert [b.id for b in newer.data] == [ids[4], ids[3]] and newer.has_more
    assert (newer.first_id, newer.last_id) == (ids[4], ids[3])
    assert [b.id for b in older.data] == [ids[0]] and not older.has_more
    assert fake.calls["GET /v1/messages/batches"] >= 1 + 4 + 2


def test_cancel(fake):
    fake.polls_to_complete = None  # runs until cancelled

    async def go():
        p = provider(fake)
        remote_id = await p.submit(requests(3), "dvsynth-t-00001")
        running = await p.status(remote_id)
        cancelling = await p.cancel(remote_id)
        cancelled = await p.status(remote_id)
        again = await p.cancel(remote_id)  # it has ended: the status, no error
        results = await collect(p, remote_id)
        fake.cancel_done = 1
        partial_id = await p.submit(requests(3, prefix="p"), "dvsynth-t-00002")
        await p.cancel(partial_id)
        partial = await p.status(partial_id)
        partial_results = await collect(p, partial_id)
        await p.aclose()
        return running, cancelling, cancelled, again, results, partial, partial_results

    running, cancelling, cancelled, again, results, partial, partial_results = asyncio.run(go())
    assert running.state == "in_progress"
    assert cancelling.state == "cancelling" and not cancelling.terminal
    assert cancelled.state == "cancelled" and cancelled.counts["cancelled"] == 3
    assert again.state == "cancelled"
    assert all(r.expired and r.error == "canceled" for r in results.values())
    assert partial.state == "completed"  # one had finished: its answer is kept
    assert partial.counts["completed"] == 1 and partial.counts["cancelled"] == 2
    assert partial_results["p0"].status_code == 200
    assert partial_results["p1"].expired and partial_results["p2"].expired


def test_the_key_travels_only_in_a_header_and_never_in_an_error(fake):
    async def go():
        p = provider(fake)
        since = time.time()
        remote_id = await p.submit(requests(2), "dvsynth-t-00001")
        await until_ended(p, remote_id)
        await collect(p, remote_id)
        await p.find("dvsynth-t-00001", since, count=2)
        await p.cancel(remote_id)
        fake.require_key = "sk-ant-SOMEONE-ELSE"  # the fake quotes the key it got
        with pytest.raises(FatalLLMError) as refused:
            await p.status(remote_id)
        with pytest.raises(FatalLLMError) as refused_submit:
            await p.submit(requests(1), "dvsynth-t-00002")
        await p.aclose()
        return refused.value, refused_submit.value

    refused, refused_submit = asyncio.run(go())
    assert len(fake.bodies) >= 6
    assert not any(SECRET.encode() in raw for raw in fake.bodies)
    assert set(fake.api_keys) == {SECRET}
    # The SDK 2.x sends the key as a bearer token, not as x-api-key.
    assert fake.request_headers[0]["Authorization"] == f"Bearer {SECRET}"
    for error in (refused, refused_submit):
        assert "HTTP 401" in str(error) and "authentication_error" in str(error)
        assert SECRET not in str(error)


def test_without_the_sdk_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "anthropic", None)  # import anthropic -> ImportError
    with pytest.raises(UserError, match=r'pip install "dvsynth\[anthropic\]"'):
        AnthropicBatches(api_key=SECRET)


def test_without_a_key_it_says_which_variable(monkeypatch, tmp_path):
    pytest.importorskip("anthropic")
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_PROFILE",
        "ANTHROPIC_CONFIG_DIR",
        "ANTHROPIC_FEDERATION_RULE_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no profile on disk either
    with pytest.raises(UserError, match="ANTHROPIC_API_KEY"):
        AnthropicBatches(base_url="http://127.0.0.1:9")


def test_a_broken_profile_is_a_user_error(monkeypatch, tmp_path):
    pytest.importorskip("anthropic")
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_PROFILE", "nonesuch")
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path))
    with pytest.raises(UserError, match="batch: Anthropic credentials"):
        AnthropicBatches(base_url="http://127.0.0.1:9")
