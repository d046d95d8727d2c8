"""Generation under a storm of provider faults.

Both transports are exercised: litellm's real OpenAI client path (`--transport
litellm`) and the lean HTTP client that `auto` picks for OpenAI-compatible servers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from dvsynth.llm.limits import RateLimits
from dvsynth.llm.retry import error_kind, retry_after_seconds
from dvsynth.testing import FakeLLMServer, answer_for, fault_for
from tests.conftest import comparable_rows, generate_args, read_rows, write_jsonl

STORM = {
    "slow": 0.1,
    "429": 0.12,
    "500": 0.12,
    "hang": 0.06,
    "drop": 0.1,
    "malformed": 0.1,
    "truncated": 0.06,
}
N_SEEDS = 80


def storm_server(**kwargs) -> FakeLLMServer:
    return FakeLLMServer(faults=STORM, fault_attempts=2, retry_after_s=1, hang_s=4, **kwargs)


def storm_seeds(path):
    rows = [
        {
            "id": f"f{i:03d}",
            "query": f"storm query {i}",
            "positive": f"pos {i}",
            "negative": f"neg {i}",
            **({"instruction": f"Only {1990 + i}."} if i % 2 else {}),
        }
        for i in range(N_SEEDS)
    ]
    return write_jsonl(path, rows)


TRANSPORTS = ["litellm", "http"]


def storm_args(server, seeds, out, transport):
    return generate_args(
        server,
        seeds,
        out,
        "--concurrency",
        "8",
        "--timeout",
        "1",
        "--max-retries",
        "3",
        "--transport",
        transport,
    )


def test_every_fault_kind_is_drawn():
    kinds = {fault_for(f"storm query {i}", STORM) for i in range(N_SEEDS)}
    assert kinds >= set(STORM)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fault_storm_run_finishes_with_every_seed_accounted_for(run_cli, tmp_path, transport):
    seeds = storm_seeds(tmp_path / "seeds.jsonl")
    with storm_server() as server:
        result = run_cli(*storm_args(server, seeds, tmp_path / "run", transport))
        log = list(server.log)
    assert result.code == 0, result.err
    rows = read_rows(tmp_path / "run")
    assert sorted(r["seed_id"] for r in rows) == [f"f{i:03d}" for i in range(N_SEEDS)]
    for row in rows:
        fault = fault_for(row["query"], STORM)
        if fault == "truncated":
            assert row["status"] == "rejected" and row["reasons"] == ["generator:truncated"]
        else:
            # Transient faults were retried until the answer came: same as fault-free.
            assert row["status"] == "kept", (fault, row["reasons"], row["error"])
            assert row["raw_response"] == answer_for(_prompt_of(row))[1]
    # Backoff was honoured: after a 429 the same query came back no sooner than Retry-After,
    # and after a hang no sooner than the client's timeout.
    by_query: dict[str, list] = {}
    for entry in log:
        by_query.setdefault(entry.query, []).append(entry)
    checked = 0
    for entries in by_query.values():
        for first, second in zip(entries, entries[1:], strict=False):
            if first.fault == "429":
                assert second.at - first.at >= 1.0 - 0.05
                checked += 1
            if first.fault == "hang":
                assert second.at - first.at >= 1.0 - 0.05
    assert checked >= 4


def _prompt_of(row) -> str:
    """The server only reads the <query> tag and the mode marker from a prompt."""
    marker = "<instruction_a>" if row["mode"] == "bootstrap" else ""
    return f"<query>{row['query']}</query>{marker}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sigkill_in_the_storm_then_rerun_matches_an_uninterrupted_run(run_cli, tmp_path, transport):
    seeds = storm_seeds(tmp_path / "seeds.jsonl")
    with storm_server() as server:
        assert run_cli(*storm_args(server, seeds, tmp_path / "whole", transport)).code == 0
    reference = comparable_rows(read_rows(tmp_path / "whole"))

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with storm_server() as server:
        command = [
            sys.executable,
            "-m",
            "dvsynth.cli",
            *storm_args(server, seeds, out, transport),
        ]
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "dvsynth.sqlite").exists() and len(_rows_or_empty(out)) >= 25:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        finished = {r["query"] for r in _rows_or_empty(out)}
        assert 25 <= len(finished) < N_SEEDS
        calls_before = dict(server.requests_by_query)
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        for query in finished:  # no finished row was asked for again
            assert server.requests_by_query[query] == calls_before[query]
    assert comparable_rows(read_rows(out)) == reference


def _rows_or_empty(out):
    try:
        return read_rows(out)
    except Exception:
        return []


def test_max_cost_stops_cleanly_and_a_higher_cap_resumes(run_cli, fake_server, tmp_path):
    seeds = storm_seeds(tmp_path / "seeds.jsonl")
    args = [
        "generate",
        "--seeds",
        str(seeds),
        "--model",
        "openai/gpt-4o-mini",
        "--api-base",
        fake_server.api_base,
        "--out",
        str(tmp_path / "run"),
        "--concurrency",
        "2",
        "--quiet",
    ]
    capped = run_cli(*args, "--max-cost", "0.0005")
    assert capped.code == 0, capped.err
    assert "stopped: --max-cost reached" in capped.out
    rows = read_rows(tmp_path / "run")
    costs = [r["provenance"]["cost_usd"] for r in rows]
    assert all(c is not None and c > 0 for c in costs)  # litellm's price table knows the model
    assert 0 < len(rows) < N_SEEDS
    assert sum(costs) - max(costs) * 2 < 0.0005  # at most the rows in flight overshoot
    resumed = run_cli(*args, "--max-cost", "100")
    assert resumed.code == 0 and len(read_rows(tmp_path / "run")) == N_SEEDS


def test_rate_limits_hold_requests_and_tokens_to_their_budget():
    async def run() -> tuple[float, float]:
        requests = RateLimits(rpm=4, period_s=1.0)
        started = time.monotonic()
        for _ in range(10):  # a burst of 4, then 4 per second
            await requests.acquire(0)
        request_time = time.monotonic() - started
        tokens = RateLimits(tpm=100, period_s=1.0)
        started = time.monotonic()
        await tokens.acquire(50)
        await tokens.settle(50, prompt_tokens=80, completion_tokens=70)  # used 150: 100 more
        await tokens.acquire(50)
        return request_time, time.monotonic() - started

    request_time, token_time = asyncio.run(run())
    assert request_time >= 1.2
    assert token_time >= 0.4


def test_error_kinds_and_retry_after_parsing():
    import httpx
    import litellm

    response = httpx.Response(
        429, headers={"retry-after": "7"}, request=httpx.Request("POST", "http://x")
    )
    rate = litellm.RateLimitError("slow down", llm_provider="openai", model="m", response=response)
    assert error_kind(rate) == "transient"
    assert retry_after_seconds(rate) == pytest.approx(7.0)
    auth = litellm.AuthenticationError("bad key", llm_provider="openai", model="m")
    assert error_kind(auth) == "fatal"
    window = litellm.ContextWindowExceededError("too long", model="m", llm_provider="openai")
    assert error_kind(window) == "row"
    assert error_kind(TimeoutError()) == "transient"
    assert error_kind(ValueError("odd")) == "transient"  # a fault on this side: retried, no verdict


def test_max_cost_warns_when_the_price_is_unknown(run_cli, fake_server, tmp_path):
    seeds = storm_seeds(tmp_path / "seeds.jsonl")
    result = run_cli(
        "generate",
        "--seeds",
        str(seeds),
        "--model",
        "openai/not-a-priced-model",
        "--api-base",
        fake_server.api_base,
        "--out",
        str(tmp_path / "run"),
        "--limit",
        "2",
        "--max-cost",
        "1",
        "--quiet",
    )
    assert result.code == 0
    assert "no price for openai/not-a-priced-model" in result.err
    assert "cost" in result.err and "cannot be capped" in result.err


@pytest.mark.parametrize(
    "status, body, kind, name",
    [
        (401, "Incorrect API key", "fatal", "AuthenticationError"),
        (403, "no access", "fatal", "PermissionDeniedError"),
        (404, "no such model", "fatal", "NotFoundError"),
        (429, "slow down", "transient", "RateLimitError"),
        (503, "overloaded", "transient", "InternalServerError"),
        (400, "maximum context length is 8192", "row", "ContextWindowExceededError"),
        (422, "bad field", "row", "BadRequestError"),
    ],
)
def test_http_transport_errors_sort_like_litellm_ones(status, body, kind, name):
    from dvsynth.llm.transports.http import status_error

    exc = status_error(status, body, {"Retry-After": "3"})
    assert type(exc).__name__ == name
    assert error_kind(exc) == kind
    assert retry_after_seconds(exc) == pytest.approx(3.0)
