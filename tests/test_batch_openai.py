"""The OpenAI batch provider against the fake Files + Batches API on loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dvsynth.fakes.openai_batches import FakeOpenAIBatches, share_of
from dvsynth.llm.batch import openai as openai_batches
from dvsynth.llm.batch.openai import OpenAIBatches
from dvsynth.llm.batch.provider import BatchProvider, BatchRequest, BatchResult
from dvsynth.llm.retry import status_of
from dvsynth.testing import FakeLLMServer, completion_body

KEY = "sk-test-SECRET123"


@pytest.fixture
def fake():
    server = FakeLLMServer()
    fake = FakeOpenAIBatches(server)
    with server:
        yield fake


def provider(fake: FakeOpenAIBatches, api_key: str | None = KEY) -> OpenAIBatches:
    return OpenAIBatches(api_base=fake.server.api_base, api_key=api_key)


def requests(*queries: str, prefix: str = "row") -> list[BatchRequest]:
    return [
        BatchRequest(
            f"{prefix}-{i}",
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"Rewrite. <query>{q}</query>"}],
                "temperature": 0.0,
            },
        )
        for i, q in enumerate(queries)
    ]


def plain(body: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion body without its creation time (it ticks between two calls)."""
    return {k: v for k, v in body.items() if k != "created"}


async def collect(batches: OpenAIBatches, remote_id: str) -> dict[str, BatchResult]:
    results: dict[str, BatchResult] = {}
    async for result in batches.results(remote_id):
        assert result.custom_id not in results, f"{result.custom_id} came back twice"
        results[result.custom_id] = result
    return results


def test_provider_shape():
    batches: BatchProvider = OpenAIBatches(api_key=KEY)
    assert batches.name == "openai"
    assert batches.max_requests == 50_000 and batches.max_bytes == 200 * 2**20
    request = requests("q")[0]
    assert batches.request_size(request) == len(openai_batches.request_line(request)) + 1
    assert KEY not in repr(batches)


def test_submit_poll_results(fake):
    fake.polls_to_complete = 2
    sent = requests("alpha", "beta", "gamma [error500]", "delta [error400]", "epsilon")
    batches = provider(fake)

    async def run() -> None:
        remote_id = await batches.submit(sent, "run-1/batch-0")
        first = await batches.status(remote_id)
        assert (first.state, first.terminal) == ("in_progress", False)
        assert first.created_at is not None and abs(first.created_at - time.time()) < 5
        done = await batches.status(remote_id)
        assert done.state == "completed" and done.terminal
        assert done.counts == {"total": 5, "completed": 3, "failed": 2}
        results = await collect(batches, remote_id)
        assert set(results) == {r.custom_id for r in sent}
        for request in sent:
            result = results[request.custom_id]
            if "[error" in request.body["messages"][0]["content"]:
                assert result.response is None and not result.expired
                assert result.status_code in (400, 500) and result.error
            else:
                assert result.status_code == 200 and result.error is None
                assert plain(result.response) == plain(completion_body(request.body))
        await batches.aclose()

    asyncio.run(run())
    assert fake.files_uploaded == 1 and fake.batches_created == 1
    assert dict(fake.requests_by_custom_id) == {r.custom_id: 1 for r in sent}
    assert fake.batches["batch_fake000002"].obj["metadata"] == {"dvsynth_label": "run-1/batch-0"}
    assert batches.bad_lines == 0


def test_expired_requests_come_back_and_run_when_resubmitted(fake):
    fake.expire_share = 0.5
    sent = requests(*(f"query {i}" for i in range(12)))
    expected = {r.custom_id for r in sent if share_of(r.custom_id, "expire") < 0.5}
    assert expected and len(expected) < len(sent)
    batches = provider(fake)

    async def run() -> None:
        remote_id = await batches.submit(sent, "b0")
        status = await batches.status(remote_id)
        assert status.state == "expired"
        assert status.counts["expired"] == len(expected)
        assert status.counts["completed"] == len(sent) - len(expected)
        results = await collect(batches, remote_id)
        assert {cid for cid, r in results.items() if r.expired} == expected
        assert all(
            r.response is None and r.status_code is None
            for cid, r in results.items()
            if cid in expected
        )
        again = [r for r in sent if results[r.custom_id].expired]
        second = await batches.submit(again, "b1")
        assert (await batches.status(second)).state == "completed"
        retried = await collect(batches, second)
        assert set(retried) == expected
        for request in again:
            assert plain(retried[request.custom_id].response) == plain(
                completion_body(request.body)
            )

    asyncio.run(run())
    assert all(fake.runs_by_custom_id[r.custom_id] == 1 for r in sent)
    assert all(fake.requests_by_custom_id[cid] == 2 for cid in expected)


def test_failed_batch_reports_its_error(fake):
    fake.fail_batch = "Enqueued token limit reached for gpt-4o-mini"
    batches = provider(fake)

    async def run() -> None:
        remote_id = await batches.submit(requests("a", "b"), "b0")
        status = await batches.status(remote_id)
        assert status.state == "failed" and status.terminal
        assert "Enqueued token limit reached" in (status.error or "")
        assert await collect(batches, remote_id) == {}

    asyncio.run(run())
    assert not fake.runs_by_custom_id


def test_invalid_input_fails_validation(fake):
    batches = provider(fake)
    twice = requests("a") + requests("b")  # both are row-0

    async def run() -> None:
        status = await batches.status(await batches.submit(twice, "b0"))
        assert status.state == "failed" and "duplicate_custom_id" in (status.error or "")
        assert "(line 2)" in status.error

    asyncio.run(run())


def test_missing_and_extra_ids(fake):
    fake.drop_share = 0.3
    fake.extra_ids = ["never-sent"]
    sent = requests(*(f"query {i}" for i in range(12)))
    dropped = {r.custom_id for r in sent if share_of(r.custom_id, "drop") < 0.3}
    assert dropped
    batches = provider(fake)

    async def run() -> dict[str, BatchResult]:
        remote_id = await batches.submit(sent, "b0")
        assert (await batches.status(remote_id)).state == "completed"
        return await collect(batches, remote_id)

    results = asyncio.run(run())
    assert set(results) == {r.custom_id for r in sent} - dropped | {"never-sent"}
    assert results["never-sent"].status_code == 200


def test_bad_result_lines_are_counted_not_raised(fake):
    batches = provider(fake)

    async def run() -> dict[str, BatchResult]:
        remote_id = await batches.submit(requests("a", "b"), "b0")
        assert (await batches.status(remote_id)).state == "completed"
        output = fake.files[fake.batches[remote_id].obj["output_file_id"]]
        output.content = b"not json\n\n" + output.content + b'{"no_custom_id": 1}\n'
        return await collect(batches, remote_id)

    assert set(asyncio.run(run())) == {"row-0", "row-1"}
    assert batches.bad_lines == 2


@pytest.mark.parametrize("fault", ["500", "drop"])
def test_find_recovers_a_batch_whose_create_answer_was_lost(fake, fault):
    fake.fail_create_after_commit = 1
    fake.create_fault = fault
    batches = provider(fake)
    since = time.time()

    async def run() -> None:
        with pytest.raises(Exception) as lost:
            await batches.submit(requests("a", "b"), "run-7/b3")
        if fault == "500":
            assert status_of(lost.value) == 500
        assert KEY not in str(lost.value)
        found = await batches.find("run-7/b3", since)
        assert found is not None and found in fake.batches
        assert await batches.find("run-7/b4", since) is None
        assert await batches.find("run-7/b3", time.time() + 3600) is None
        assert (await batches.status(found)).state == "completed"
        assert set(await collect(batches, found)) == {"row-0", "row-1"}

    asyncio.run(run())
    # The SDK did not retry the create: one batch, each request sent once.
    assert fake.batches_created == 1
    assert dict(fake.requests_by_custom_id) == {"row-0": 1, "row-1": 1}


def test_find_pages_through_the_list(fake, monkeypatch):
    monkeypatch.setattr(openai_batches, "LIST_PAGE", 2)
    batches = provider(fake)
    since = time.time()

    async def run() -> list[str]:
        return [await batches.submit(requests("q", prefix=f"b{i}"), f"label-{i}") for i in range(5)]

    ids = asyncio.run(run())
    assert asyncio.run(batches.find("label-0", since)) == ids[0]
    assert asyncio.run(batches.find("label-4", since)) == ids[4]
    assert asyncio.run(batches.find("label-9", since)) is None
    assert fake.calls["GET /v1/batches"] == 3 + 1 + 3


def test_cancel(fake):
    fake.polls_to_complete = None  # never finishes by itself
    sent = requests("a", "b", "c")
    batches = provider(fake)

    async def run() -> None:
        remote_id = await batches.submit(sent, "b0")
        assert (await batches.status(remote_id)).state == "in_progress"
        cancelling = await batches.cancel(remote_id)
        assert cancelling.state == "cancelling" and not cancelling.terminal
        cancelled = await batches.status(remote_id)
        assert cancelled.state == "cancelled" and cancelled.counts["cancelled"] == 3
        again = await batches.cancel(remote_id)  # refused by the provider: already ended
        assert again.state == "cancelled"
        results = await collect(batches, remote_id)
        assert set(results) == {r.custom_id for r in sent}
        assert all(r.expired and r.response is None for r in results.values())

    asyncio.run(run())
    assert not fake.runs_by_custom_id


def test_time_based_completion(fake):
    fake.polls_to_complete = None
    fake.complete_after_s = 0.2
    batches = provider(fake)

    async def run() -> None:
        remote_id = await batches.submit(requests("a"), "b0")
        assert (await batches.status(remote_id)).state == "in_progress"
        await asyncio.sleep(0.2)
        assert (await batches.status(remote_id)).state == "completed"

    asyncio.run(run())


def test_key_travels_only_in_the_authorization_header(fake):
    batches = provider(fake, api_key=KEY)

    async def run() -> None:
        remote_id = await batches.submit(requests("a [error500]", "b"), "b0")
        await batches.status(remote_id)
        await collect(batches, remote_id)
        await batches.find("b0", time.time() - 60)

    asyncio.run(run())
    assert fake.uploads and fake.files
    for content in fake.uploads + [f.content for f in fake.files.values()]:
        assert KEY.encode() not in content
    assert fake.authorizations and set(fake.authorizations) == {f"Bearer {KEY}"}
    for headers in fake.request_headers:
        assert all(KEY not in v for k, v in headers.items() if k.lower() != "authorization")


def test_rejected_key_error_does_not_quote_the_key(fake):
    fake.server.require_key = "sk-the-right-one-0000"
    batches = provider(fake, api_key=KEY)
    with pytest.raises(Exception) as refused:
        asyncio.run(batches.submit(requests("a"), "b0"))
    assert status_of(refused.value) == 401
    assert KEY not in str(refused.value) and KEY not in repr(refused.value.args)


def test_openai_key_is_not_sent_to_another_server(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-LEAK-0123456789")
    batches = provider(fake, api_key=None)

    async def run() -> None:
        await batches.status(await batches.submit(requests("a"), "b0"))

    asyncio.run(run())
    assert all("LEAK" not in (a or "") for a in fake.authorizations)
