"""`--batch` against a loopback fake of OpenAI's Files + Batches API: submit, exit,
collect on rerun; `--wait`; kills; expired requests; cost caps; `dvsynth batch` commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dvsynth.fakes.openai_batches import FakeOpenAIBatches
from dvsynth.testing import FakeLLMServer
from tests.conftest import comparable_rows, generate_args, read_rows, validate_args
from tests.test_batch_file import SAMPLE, final_rows, mixed_seeds


def test_submit_exit_collect_on_rerun_equals_online(batch_server, run_cli, tmp_path):
    server, fake = batch_server
    online, batched = tmp_path / "online", tmp_path / "batched"
    seeds = mixed_seeds(tmp_path, verifiable=6, sample=4)
    assert run_cli(*generate_args(server, seeds, online, "--limit", "10")).code == 0
    assert run_cli(*validate_args(online, server)).code == 0
    online_calls = server.total_requests

    gen = generate_args(server, seeds, batched, "--limit", "10", "--batch")
    first = run_cli(*gen)
    assert first.code == 0, first.err
    assert "submitted 10 requests in 1 batches" in first.out
    assert "dvsynth batch status" in first.out and "rerun" in first.out
    assert read_rows(batched) == []
    status = run_cli("batch", "status", batched)
    assert status.code == 0 and "generate requests: 10 assigned" in status.out
    second = run_cli(*gen)  # the batch ended at this poll: collected, rows finished
    assert second.code == 0, second.err
    assert "10 answers" in second.out and "every request of this stage is answered" in second.out
    assert comparable_rows(read_rows(batched)) == comparable_rows(read_rows(online))

    judge = validate_args(batched, server, "--batch", "--wait", "--poll-interval", "0.01")
    assert run_cli(*judge).code == 0
    rows = final_rows(batched)
    assert rows == final_rows(online)
    assert {row["status"] for row in rows} == {"kept", "rejected"}
    assert server.total_requests == online_calls  # nothing went online
    assert max(fake.requests_by_custom_id.values()) == 1  # nothing submitted twice


def test_expired_requests_are_resubmitted_alone(batch_server, run_cli, tmp_path):
    server, fake = batch_server
    fake.expire_share = 0.4
    run = tmp_path / "run"
    gen = generate_args(server, SAMPLE, run, "--limit", "20", "--batch")
    assert run_cli(*gen).code == 0
    assert run_cli(*gen).code == 0  # collects: the expired ones go into a second batch
    assert fake.expired_ids, "the fake expired nothing: the test proves nothing"
    second = list(fake.batches.values())[1]
    assert {custom_id for custom_id, _ in second.lines} == fake.expired_ids
    assert run_cli(*gen).code == 0
    assert len(read_rows(run)) == 20
    assert all(fake.runs_by_custom_id[c] == 1 for c in fake.requests_by_custom_id)


def test_lost_create_answer_is_found_not_resubmitted(batch_server, run_cli, tmp_path):
    server, fake = batch_server
    fake.fail_create_after_commit, fake.create_fault = 1, "drop"
    run = tmp_path / "run"
    gen = generate_args(server, SAMPLE, run, "--limit", "8", "--batch")
    first = run_cli(*gen)
    assert first.code == 2 and "rerun the same command" in first.err
    assert fake.batches_created == 1
    assert run_cli(*gen).code == 0  # finds the batch by its label and collects it
    assert run_cli(*gen).code == 0
    assert fake.batches_created == 1
    assert len(read_rows(run)) == 8


def test_killed_while_waiting_rerun_collects_without_resubmitting(batch_server, tmp_path):
    server, fake = batch_server
    fake.polls_to_complete = None  # never ends until the test says so
    run = tmp_path / "run"
    args = generate_args(server, SAMPLE, run, "--limit", "6", "--batch", "--wait")
    args += ["--poll-interval", "0.05"]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [sys.executable, "-m", "dvsynth.cli", *args]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while fake.calls["GET /v1/batches/{id}"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert fake.batches_created == 1
    fake.polls_to_complete = 0
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert fake.batches_created == 1
    assert len(read_rows(run)) == 6


def test_max_cost_refuses_to_submit_above_the_cap(batch_server, run_cli, tmp_path):
    server, fake = batch_server
    run = tmp_path / "run"
    args = generate_args(
        server, SAMPLE, run, "--limit", "10", "--batch", model="openai/gpt-4o-mini"
    )
    refused = run_cli(*args, "--max-cost", "0.0001")
    assert refused.code == 2
    assert "--max-cost" in refused.err and "nothing was submitted" in refused.err
    assert fake.batches_created == 0
    allowed = run_cli(*args, "--max-cost", "10")
    assert allowed.code == 0, allowed.err
    assert fake.batches_created == 1


def test_batch_cost_is_half_the_online_cost_and_shown_apart(batch_server, run_cli, tmp_path):
    server, _ = batch_server
    online, batched = tmp_path / "online", tmp_path / "batched"
    model = "openai/gpt-4o-mini"
    assert run_cli(*generate_args(server, SAMPLE, online, "--limit", "10", model=model)).code == 0
    gen = generate_args(server, SAMPLE, batched, "--limit", "10", "--batch", "--wait", model=model)
    assert run_cli(*gen, "--poll-interval", "0.01").code == 0
    import json

    stats_online = json.loads(run_cli("stats", online, "--json").out)
    stats_batch = json.loads(run_cli("stats", batched, "--json").out)
    online_cost = stats_online["generator"]["cost_usd"]
    batch_cost = stats_batch["batch"]["generate"]["cost_usd"]
    assert online_cost > 0
    assert batch_cost == pytest.approx(online_cost / 2, rel=0.01)
    assert stats_batch["generator"]["cost_usd"] == 0  # nothing was paid online


def test_cancel_marks_batches_cancelled(batch_server, run_cli, tmp_path):
    server, fake = batch_server
    fake.polls_to_complete = None
    run = tmp_path / "run"
    assert run_cli(*generate_args(server, SAMPLE, run, "--limit", "4", "--batch")).code == 0
    cancelled = run_cli("batch", "cancel", run)
    assert cancelled.code == 0, cancelled.err
    assert "cancelling" in cancelled.out or "cancelled" in cancelled.out
    status = run_cli("batch", "status", run)
    assert "cancelled" in status.out


def test_anthropic_message_batches_make_the_same_instructions(run_cli, tmp_path, monkeypatch):
    """generate + validate through Anthropic's Message Batches (its own SDK) end with the
    rows an online OpenAI-format run makes for the same answers."""
    from dvsynth.fakes.anthropic_batches import FakeAnthropicBatches

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-NOT-ON-DISK")
    server = FakeLLMServer()
    fake = FakeAnthropicBatches(server, polls_to_complete=1, expire_share=0.2)
    with server:
        online, batched = tmp_path / "online", tmp_path / "batched"
        seeds = mixed_seeds(tmp_path, verifiable=6, sample=4)
        assert run_cli(*generate_args(server, seeds, online, "--limit", "10")).code == 0
        assert run_cli(*validate_args(online, server, "--no-judge-logprobs")).code == 0
        model = "anthropic/claude-haiku-4-5"
        gen = generate_args(
            server, seeds, batched, "--limit", "10", "--batch", "--wait", model=model
        )
        done = run_cli(*gen, "--poll-interval", "0.01")
        assert done.code == 0, done.err
        judge = validate_args(batched, server, "--batch", "--wait", "--no-judge-logprobs")
        judge[judge.index("openai/judge")] = model
        assert run_cli(*judge, "--poll-interval", "0.01").code == 0, "validate"
    assert fake.expired_ids, "nothing expired: resubmission was not exercised"
    fields = ("seed_id", "status", "instruction_a", "instruction_b", "negatives_b")

    def content(rows: list[dict]) -> list[tuple]:
        return [tuple(str(row[f]) for f in fields) for row in rows]

    assert content(final_rows(batched)) == content(final_rows(online))
    for path in batched.rglob("*"):
        if path.is_file():
            assert b"sk-ant-test-NOT-ON-DISK" not in path.read_bytes()


def test_request_errors_in_a_batch_end_as_online_errors_do(batch_server, run_cli, tmp_path):
    """A 400 in the results rejects its row (never sent again); a 500 is sent again in
    the next batches, then fails the row, which the next run of the command retries."""
    from tests.conftest import write_jsonl

    server, fake = batch_server
    rows = [
        {"id": "ok", "query": "plain question", "positive": "kwa text", "negative": "kwb text"},
        {"id": "bad", "query": "[error400] q", "positive": "kwc text", "negative": "kwd text"},
        {"id": "down", "query": "[error500] q", "positive": "kwe text", "negative": "kwf t"},
    ]
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    run = tmp_path / "run"
    gen = generate_args(server, seeds, run, "--batch", "--wait", "--poll-interval", "0.01")
    assert run_cli(*gen).code == 0
    by_id = {row["seed_id"]: row for row in read_rows(run)}
    assert by_id["ok"]["status"] == "kept"
    assert by_id["bad"]["status"] == "rejected" and by_id["bad"]["reasons"] == ["llm:batch:400"]
    assert by_id["down"]["status"] == "failed" and by_id["down"]["reasons"] == ["llm:batch:500"]
    sent = {cid.split("-")[0]: n for cid, n in fake.requests_by_custom_id.items()}
    assert sent == {"ok": 1, "bad": 1, "down": 3}  # the 500 went out in 3 batches
    again = run_cli(*gen)
    assert again.code == 0
    sent = {cid.split("-")[0]: n for cid, n in fake.requests_by_custom_id.items()}
    assert sent == {"ok": 1, "bad": 1, "down": 4}  # only the failed row was retried


def test_provider_unreachable_ends_in_one_line_and_loses_nothing(run_cli, tmp_path):
    server = FakeLLMServer()
    fake = FakeOpenAIBatches(server, polls_to_complete=1)
    run = tmp_path / "run"
    with server:
        gen = generate_args(server, SAMPLE, run, "--limit", "4", "--batch", "--max-retries", "0")
        assert run_cli(*gen).code == 0
    down = run_cli(*gen)  # the server is gone
    assert down.code == 2
    lines = [line for line in down.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "batch:" in lines[0] and "rerun" in lines[0], down.err
    status = run_cli("batch", "status", run)  # shows what the run knows, and why no more
    assert status.code == 0 and "not refreshed" in status.out, status.out
    assert "generate requests: 4 assigned" in status.out
    assert fake.batches_created == 1


def test_a_batch_the_provider_fails_says_why_on_its_rows(batch_server, run_cli, tmp_path):
    server, fake = batch_server
    fake.fail_batch = "token limit exceeded for this organization"
    run = tmp_path / "run"
    gen = generate_args(server, SAMPLE, run, "--limit", "3", "--batch", "--wait")
    done = run_cli(*gen, "--poll-interval", "0.01")
    assert done.code == 0
    assert "batch failed at the provider" in done.out
    assert "3 requests ended in an error" in done.out
    assert fake.batches_created == 3  # sent again, up to its tries
    rows = read_rows(run)
    assert {row["status"] for row in rows} == {"failed"}
    assert all("token limit exceeded" in row["error"] for row in rows)
