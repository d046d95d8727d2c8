"""Provider errors are sorted by HTTP status first, the same way under both transports.

408/409/429/5xx and connection faults are retried; 401/403/404 stop the run; any other
4xx rejects its row at once, and a 4xx that every row hits stops the run after a few.
The exceptions are the real litellm and openai classes, not look-alikes.
"""

from __future__ import annotations

import asyncio

import httpx
import litellm
import openai
import pytest

from dvsynth.errors import FatalLLMError, RowError
from dvsynth.llm.client import FATAL_AFTER_CLIENT_ERRORS, LLMClient
from dvsynth.llm.retry import error_kind
from dvsynth.llm.transports.http import status_error
from dvsynth.testing import FakeLLMServer
from tests.conftest import generate_args, read_rows, write_jsonl

REQUEST = httpx.Request("POST", "http://x")


def _response(status: int) -> httpx.Response:
    return httpx.Response(status, request=REQUEST)


def _openai_status(status: int) -> openai.APIStatusError:
    return openai.APIStatusError(f"HTTP {status}", response=_response(status), body=None)


def _litellm(cls, status: int | None = None, **extra):
    kwargs = {"message": "m", "model": "x", "llm_provider": "openai", **extra}
    if status is not None:
        kwargs["response"] = _response(status)
    return cls(**kwargs)


@pytest.mark.parametrize(
    "make, kind",
    [
        # A 400 derives from APIError like everything else: it must not be retried.
        (lambda: _litellm(litellm.BadRequestError), "row"),
        (lambda: _litellm(litellm.UnsupportedParamsError), "row"),
        (lambda: _litellm(litellm.ContextWindowExceededError), "row"),
        (lambda: _litellm(litellm.UnprocessableEntityError, 422), "row"),
        (lambda: litellm.APIError(413, "too large", "openai", "x"), "row"),
        (lambda: openai.BadRequestError("m", response=_response(400), body=None), "row"),
        (lambda: openai.UnprocessableEntityError("m", response=_response(422), body=None), "row"),
        (lambda: _litellm(litellm.RateLimitError), "transient"),
        (lambda: _litellm(litellm.Timeout), "transient"),
        (lambda: _litellm(litellm.APIConnectionError), "transient"),
        (lambda: _litellm(litellm.InternalServerError), "transient"),
        (lambda: _litellm(litellm.ServiceUnavailableError), "transient"),
        (lambda: litellm.APIError(409, "conflict", "openai", "x"), "transient"),
        (lambda: _openai_status(408), "transient"),
        (lambda: openai.ConflictError("m", response=_response(409), body=None), "transient"),
        (lambda: _openai_status(502), "transient"),
        (lambda: openai.APIConnectionError(request=REQUEST), "transient"),
        (lambda: openai.APITimeoutError(request=REQUEST), "transient"),
        (lambda: _litellm(litellm.AuthenticationError), "fatal"),
        (lambda: _litellm(litellm.PermissionDeniedError, 403), "fatal"),
        (lambda: _litellm(litellm.NotFoundError), "fatal"),
        (lambda: openai.NotFoundError("m", response=_response(404), body=None), "fatal"),
        (lambda: TimeoutError(), "transient"),
        # A fault on this side, not the provider's answer: never a final verdict on the row
        # (`--timeout inf` once rejected every row for good as llm:OverflowError).
        (lambda: ValueError("odd"), "transient"),
        (lambda: OverflowError("timestamp too large"), "transient"),
    ],
)
def test_real_provider_exceptions_sort_by_status(make, kind):
    assert error_kind(make()) == kind


@pytest.mark.parametrize(
    "status, body, kind, name",
    [
        (400, "Unsupported parameter: 'seed'", "row", "BadRequestError"),
        (400, "maximum context length is 8192", "row", "ContextWindowExceededError"),
        (408, "request timeout", "transient", "Timeout"),
        (409, "conflict", "transient", "APIError"),
        (413, "payload too large", "row", "BadRequestError"),
        (404, "no such model", "fatal", "NotFoundError"),
    ],
)
def test_lean_transport_sorts_like_litellm(status, body, kind, name):
    exc = status_error(status, body, {})
    assert type(exc).__name__ == name and error_kind(exc) == kind


def _client(**kwargs) -> LLMClient:
    return LLMClient(
        "openai/x",
        api_base="http://127.0.0.1:9/v1",
        transport="litellm",
        backoff_initial_s=0.001,
        backoff_max_s=0.001,
        **kwargs,
    )


OK_BODY = {"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]}


def _scripted(client: LLMClient, outcomes: list) -> list[int]:
    """Make the client's requests answer with `outcomes` in turn; returns a call count."""
    calls = [0]

    async def call(messages, extra, server=0):
        outcome = outcomes[min(calls[0], len(outcomes) - 1)]
        calls[0] += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    client._call = call  # type: ignore[method-assign]
    return calls


def _complete(client: LLMClient, text: str = "q"):
    return asyncio.run(client.complete([{"role": "user", "content": text}]))


@pytest.mark.parametrize("status", [408, 409, 429, 503])
def test_transient_statuses_are_retried(status):
    client = _client(max_retries=3)
    calls = _scripted(client, [_openai_status(status), _openai_status(status), OK_BODY])
    assert _complete(client).text == "fine"
    assert calls[0] == 3


def test_a_400_rejects_its_row_without_a_retry():
    client = _client(max_retries=4)
    calls = _scripted(client, [_litellm(litellm.BadRequestError)])
    with pytest.raises(RowError) as caught:
        _complete(client)
    assert caught.value.reason == "llm:BadRequestError"
    assert calls[0] == 1


def test_a_4xx_on_every_call_stops_the_run_after_a_few():
    client = _client()
    error = litellm.BadRequestError(
        message="Unsupported parameter: 'seed'", model="x", llm_provider="openai"
    )
    calls = _scripted(client, [error])
    for _ in range(FATAL_AFTER_CLIENT_ERRORS - 1):
        with pytest.raises(RowError):
            _complete(client)
    with pytest.raises(FatalLLMError) as caught:
        _complete(client)
    message = str(caught.value)
    assert "HTTP 400" in message and "Unsupported parameter" in message
    assert "\n" not in message
    assert calls[0] == FATAL_AFTER_CLIENT_ERRORS


def test_4xx_after_a_success_or_about_one_rows_content_never_stop_the_run():
    client = _client()
    _scripted(client, [OK_BODY, *[_litellm(litellm.BadRequestError)] * 10])
    _complete(client, "first")
    for i in range(6):
        with pytest.raises(RowError):
            _complete(client, f"later {i}")
    client = _client()
    _scripted(client, [_litellm(litellm.ContextWindowExceededError)])
    for i in range(6):
        with pytest.raises(RowError):
            _complete(client, f"long {i}")


def _seeds(path, queries: list[str]):
    rows = [
        {"id": f"s{i:02d}", "query": q, "positive": f"pos {i}", "negative": f"neg {i}"}
        for i, q in enumerate(queries)
    ]
    return write_jsonl(path, rows)


@pytest.mark.parametrize("transport", ["litellm", "http"])
def test_a_400_on_some_queries_rejects_those_rows_without_retries(run_cli, tmp_path, transport):
    # One row at a time, successes first: a 400 after a success is one row's problem.
    queries = ["ok one", "ok two"] + [f"bad {i} [error400]" for i in range(4)] + ["ok three"]
    seeds = _seeds(tmp_path / "seeds.jsonl", queries)
    with FakeLLMServer() as server:
        args = generate_args(server, seeds, tmp_path / "run", "--max-retries", "3")
        result = run_cli(*args, "--concurrency", "1", "--transport", transport)
        by_query = dict(server.requests_by_query)
    assert result.code == 0, result.err
    rows = {r["query"]: r for r in read_rows(tmp_path / "run")}
    assert set(rows) == set(queries)
    for query in queries:
        assert by_query[query] == 1  # no retry of a 400, nor of a success
        if "[error400]" in query:
            assert rows[query]["reasons"] == ["llm:BadRequestError"]
            assert "Unsupported parameter" in rows[query]["error"]
        else:
            assert rows[query]["status"] == "kept"


@pytest.mark.parametrize("transport", ["litellm", "http"])
def test_a_400_on_every_query_stops_the_run_after_a_few_rows(run_cli, tmp_path, transport):
    seeds = _seeds(tmp_path / "seeds.jsonl", [f"query {i}" for i in range(40)])
    with FakeLLMServer(status_for_all=400) as server:
        args = generate_args(server, seeds, tmp_path / "run", "--max-retries", "3")
        result = run_cli(*args, "--concurrency", "2", "--transport", transport)
        by_query = dict(server.requests_by_query)
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "HTTP 400" in result.err and "Unsupported parameter" in result.err
    assert sum(by_query.values()) <= FATAL_AFTER_CLIENT_ERRORS + 2  # + what was in flight
    assert set(by_query.values()) == {1}  # nothing was retried
    assert len(read_rows(tmp_path / "run")) < FATAL_AFTER_CLIENT_ERRORS + 2
