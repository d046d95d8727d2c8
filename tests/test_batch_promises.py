"""Issue 25, "nothing is paid twice" at the batch engine's edges: batches of several runs
found after a lost create, later lines for answered requests, online calls while a
batch holds the same requests, one spend ledger for every cap, bad result lines, and
`batch cancel` / `--batch-out` when there is nothing to act on."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from dvsynth.fakes.anthropic_batches import FakeAnthropicBatches
from dvsynth.fakes.openai_batches import FakeOpenAIBatches
from dvsynth.testing import FakeLLMServer
from tests.conftest import generate_args, read_rows, validate_args, write_jsonl
from tests.test_batch_file import SAMPLE, answer_file
from tests.test_row_life import seed_rows

PRICED = "openai/gpt-4o"  # litellm's price table knows it: costs are not None


def _ledger(run: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(run / "dvsynth.sqlite") as db:
        return db.execute(sql).fetchall()


def _states(run: Path) -> dict[str, int]:
    return dict(_ledger(run, "SELECT state, COUNT(*) FROM batch_requests GROUP BY state"))


# ---------------------------------------------------------------------- 1. several runs


def test_anthropic_batches_of_two_runs_are_found_after_a_lost_create(
    run_cli, tmp_path, monkeypatch
):
    """validate rX rY --batch: rX's batch is acknowledged, rY's create is stored by the
    provider and its answer lost (a kill). The rerun adopts rY's batch although rX's has
    the same size and time: no request is sent twice."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    server = FakeLLMServer()
    fake = FakeAnthropicBatches(server, polls_to_complete=None)
    runs = [tmp_path / "rX", tmp_path / "rY"]
    with server:
        for prefix, run in zip("xy", runs, strict=True):
            seeds = write_jsonl(tmp_path / f"{prefix}.jsonl", seed_rows(5, prefix=prefix))
            assert run_cli(*generate_args(server, seeds, run)).code == 0
        judge = validate_args(runs[0], server, "--batch", "--no-judge-logprobs")
        judge[judge.index("openai/judge")] = "anthropic/claude-haiku-4-5"
        judge.insert(2, str(runs[1]))
        fake.fail_create_after_commit, fake.creates_before_fault = 1, 1
        first = run_cli(*judge)
        assert first.code == 2 and "rerun the same command" in first.err, first.err
        sizes = [len(b.requests) for b in fake.batches.values()]
        assert len(sizes) == 2 and sizes[0] == sizes[1], "the two batches must look alike"
        again = run_cli(*judge)
        assert again.code == 0, again.err
        assert "found 1 batches sent before an interruption; 0 requests" in again.out
        assert fake.batches_created == 2
        fake.polls_to_complete = 0
        assert run_cli(*judge).code == 0
    assert max(fake.requests_by_custom_id.values()) == 1  # nothing was sent twice
    for run in runs:
        assert _states(run) == {"answered": sizes[0]}


def test_labels_are_unique_per_run_and_round(tmp_path):
    """Two runs of one identity (the same settings, two --out) label their batches apart,
    so that a label at the provider names one batch only."""
    from dvsynth.llm.batch.ledger import BatchLedger

    labels = set()
    for name in ("a", "b"):
        db = sqlite3.connect(tmp_path / f"{name}.sqlite", isolation_level=None)
        db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        ledger = BatchLedger(db)
        labels.add(ledger.next_label("samerun", "generate"))
        labels.add(ledger.next_label("samerun", "validate"))
    assert len(labels) == 4


def test_a_batch_the_provider_cannot_tell_apart_is_held_not_sent_again(tmp_path):
    """Several running batches could be the lost one: its requests stay assigned (no
    second batch), and the next run asks again."""
    import asyncio

    from dvsynth.llm.batch.engine import BatchEngine
    from dvsynth.llm.batch.ledger import BatchLedger
    from dvsynth.llm.batch.provider import Undecided

    class Unsure:
        name, max_requests, max_bytes = "anthropic", 100, 10**6
        submitted = 0

        async def find(self, *args, **kwargs):
            raise Undecided("2 batches could be it")

        async def submit(self, requests, label):
            self.submitted += 1
            return "new"

        def request_size(self, request):
            return 1

    db = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    ledger = BatchLedger(db)
    ledger.queue([("k1", "c1", "validate", "row", "m", "{}")])
    ledger.open_batch("lost", "anthropic", "m", "validate", ["k1"])
    provider = Unsure()
    engine = BatchEngine(ledger, "validate", "m", provider)
    report = asyncio.run(engine.submit())
    assert report.undecided == 1 and report.released == 0 and provider.submitted == 0
    assert [b.state for b in ledger.batches()] == ["submitting"]
    assert ledger.state_of("k1").state == "assigned"


# ---------------------------------------------------------------------- 2. later lines


def test_a_later_error_line_for_an_answered_request_is_ignored(batch_server, run_cli, tmp_path):
    server, fake = batch_server
    fake.late_error_share = 1.0  # every answer is followed by a 500 line for its id
    run = tmp_path / "run"
    gen = generate_args(server, SAMPLE, run, "--limit", "6", "--batch", model=PRICED)
    assert run_cli(*gen).code == 0
    collected = run_cli(*gen)
    assert collected.code == 0, collected.err
    assert "6 later lines for answered requests" in collected.out
    assert fake.batches_created == 1  # nothing was sent again
    assert _states(run) == {"answered": 6}
    (cost,) = _ledger(run, "SELECT COUNT(cost_usd) FROM batch_requests")[0]
    assert cost == 6  # every answer's cost stays in the ledger
    assert len(read_rows(run)) == 6


def test_a_later_error_line_in_an_imported_file_is_ignored(fake_server, run_cli, tmp_path):
    run, requests, results = tmp_path / "run", tmp_path / "req.jsonl", tmp_path / "out.jsonl"
    gen = generate_args(fake_server, SAMPLE, run, "--limit", "3", "--batch-out", requests)
    assert run_cli(*gen).code == 0
    answer_file(requests, results)
    first = json.loads(results.read_text(encoding="utf-8").splitlines()[0])
    late = {**first, "response": {"status_code": 500, "body": {"error": {"message": "x"}}}}
    with results.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(late) + "\n")
    assert run_cli("batch", "import", run, results).code == 0
    assert _states(run) == {"answered": 3}


# ---------------------------------------------------------------------- 3. online vs batch


def test_online_run_refuses_while_a_batch_holds_its_requests(batch_server, run_cli, tmp_path):
    server, fake = batch_server
    fake.polls_to_complete = None  # the batch stays open
    run = tmp_path / "run"
    gen = generate_args(server, SAMPLE, run, "--limit", "10")
    assert run_cli(*gen, "--batch").code == 0
    calls = server.total_requests
    online = run_cli(*gen)
    assert online.code == 2
    lines = [line for line in online.err.strip().splitlines() if "LiteLLM" not in line]
    assert len(lines) == 1, online.err
    assert "10 generate requests" in lines[0] and "dvsynth batch cancel" in lines[0]
    assert fake.batches and next(iter(fake.batches)) in lines[0]  # names the batch
    assert server.total_requests == calls  # nothing was called online
    fake.polls_to_complete = 0  # the batch ends: the online run collects it first
    done = run_cli(*gen)
    assert done.code == 0, done.err
    assert "collected 1 ended batches of this stage first (10 answers)" in done.err
    assert server.total_requests == calls and fake.batches_created == 1
    assert len(read_rows(run)) == 10


def test_online_validate_refuses_while_a_batch_holds_its_requests(batch_server, run_cli, tmp_path):
    server, fake = batch_server
    run = tmp_path / "run"
    seeds = write_jsonl(tmp_path / "s.jsonl", seed_rows(3))
    assert run_cli(*generate_args(server, seeds, run)).code == 0
    fake.polls_to_complete = None
    assert run_cli(*validate_args(run, server, "--batch")).code == 0
    calls = server.total_requests
    online = run_cli(*validate_args(run, server))
    assert online.code == 2 and "validate requests" in online.err, online.err
    assert server.total_requests == calls


def test_online_run_takes_over_requests_only_queued(batch_server, run_cli, tmp_path):
    """Requests queued but never sent (a cap refused them) are called online, and never
    submitted later as well."""
    server, fake = batch_server
    run = tmp_path / "run"
    gen = generate_args(server, SAMPLE, run, "--limit", "4", model=PRICED)
    assert run_cli(*gen, "--batch", "--max-cost", "0.0001").code == 2
    assert _states(run) == {"queued": 4}
    assert run_cli(*gen).code == 0
    assert len(read_rows(run)) == 4
    assert run_cli(*gen, "--batch").code == 0
    assert fake.batches_created == 0


# ---------------------------------------------------------------------- 4. one ledger


def test_total_cost_counts_the_online_judge(fake_server, run_cli, tmp_path):
    from dvsynth.runs.store import RunStore

    run = tmp_path / "run"
    seeds = write_jsonl(tmp_path / "s.jsonl", seed_rows(4))
    assert run_cli(*generate_args(fake_server, seeds, run, model=PRICED)).code == 0
    judged = validate_args(run, fake_server, judge=PRICED)
    assert run_cli(*judged).code == 0
    stats = json.loads(run_cli("stats", run, "--json").out)
    paid = stats["generator"]["cost_usd"] + stats["judge"]["cost_usd"]
    assert stats["judge"]["cost_usd"] > 0
    store = RunStore.open_existing(run)
    try:
        assert store.total_cost() == pytest.approx(paid, abs=1e-5)  # stats: 6 decimals
    finally:
        store.close()


def test_open_batches_count_at_their_estimate(batch_server, run_cli, tmp_path):
    """--limit 10 then --limit 20 while the first batch is open: the second submission
    sees the first batch's estimate as spent."""
    from dvsynth.config import GenerateConfig
    from dvsynth.generate.run import generate_run

    server, fake = batch_server
    fake.polls_to_complete = None
    run = tmp_path / "run"
    probe = GenerateConfig(
        seeds=str(SAMPLE),
        model=PRICED,
        api_base=server.api_base,
        out=tmp_path / "probe",
        limit=10,
        batch=True,
        dry_run=True,
    )
    ten = generate_run(probe)[1].estimate.batch_usd
    assert ten > 0
    cap = f"{ten * 1.5:.8f}"
    gen = generate_args(server, SAMPLE, run, "--batch", "--max-cost", cap, model=PRICED)
    assert run_cli(*gen, "--limit", "10").code == 0
    more = run_cli(*gen, "--limit", "20")
    assert more.code == 2 and "nothing was submitted" in more.err, more.err
    assert "in open batches" in more.err
    assert fake.batches_created == 1


def test_recipe_cap_counts_the_online_judge(run_cli, tmp_path):
    """limits.max_cost across two recipe runs (limit 10, then 20): the judge's online
    spend of the first counts, so the second stops before it passes the cap."""
    from tests.test_recipe import _recipe, _seeds, _write

    with FakeLLMServer() as server:
        seeds = _seeds(tmp_path / "s.jsonl", n=20)

        def recipe(limit: int, cap: float) -> Path:
            found = _recipe(
                tmp_path,
                server,
                seeds,
                generate={"model": PRICED, "limit": limit},
                validation={"judge_model": PRICED},
                limits={"max_cost": cap},
                export=None,
                push=None,
            )
            return _write(tmp_path / f"r{limit}.yaml", found)

        assert run_cli("run", recipe(10, 10.0), "--quiet").code == 0
        from dvsynth.runs.store import RunStore

        store = RunStore.open_existing(tmp_path / "run")
        try:
            first = store.total_cost()
        finally:
            store.close()
        stats = json.loads(run_cli("stats", tmp_path / "run", "--json").out)
        assert first == pytest.approx(
            stats["generator"]["cost_usd"] + stats["judge"]["cost_usd"], abs=1e-5
        )
        # Above what was spent, but not by another 10 rows' generation: counting only the
        # generator's spend (half of it) would let generate send them.
        paid = stats["generator"]["cost_usd"] + stats["judge"]["cost_usd"]
        cap = paid + stats["generator"]["cost_usd"] * 0.5
        second = run_cli("run", recipe(20, cap), "--quiet")
    assert second.code == 2 and "generate would cost" in second.err, second.err
    assert len(read_rows(tmp_path / "run")) == 10  # stopped before generate sent a call


# ---------------------------------------------------------------------- 5. after the cap


def test_nothing_queued_means_no_cap_check(batch_server, run_cli, tmp_path):
    server, _ = batch_server
    run = tmp_path / "run"
    gen = generate_args(server, SAMPLE, run, "--limit", "4", "--batch", model=PRICED)
    assert run_cli(*gen, "--wait", "--poll-interval", "0.01", "--max-cost", "10").code == 0
    assert len(read_rows(run)) == 4
    again = run_cli(*gen, "--max-cost", "0.0001")  # spend is now above this cap
    assert again.code == 0, again.err
    assert "would cost" not in again.err


def test_recipe_after_the_cap_with_nothing_to_do_goes_on(run_cli, tmp_path):
    from tests.test_recipe import _recipe, _seeds, _write

    with FakeLLMServer() as server:
        found = _recipe(
            tmp_path,
            server,
            _seeds(tmp_path / "s.jsonl", n=4),
            generate={"model": PRICED},
            limits={"max_cost": 10.0},
            export=None,
            push=None,
        )
        assert run_cli("run", _write(tmp_path / "r.yaml", found), "--quiet").code == 0
        found["limits"]["max_cost"] = 0.0000001  # below what was spent
        again = run_cli("run", _write(tmp_path / "r.yaml", found), "--quiet")
    assert again.code == 0, again.err


# ---------------------------------------------------------------------- 6. bad lines


@pytest.mark.parametrize("fake_kind", ["openai", "anthropic"])
def test_one_unreadable_result_line_does_not_block_the_batch(
    fake_kind, run_cli, tmp_path, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    server = FakeLLMServer()
    kind = FakeOpenAIBatches if fake_kind == "openai" else FakeAnthropicBatches
    fake = kind(server, polls_to_complete=1, bad_usage_share=0.3)
    run = tmp_path / "run"
    model = "openai/fake" if fake_kind == "openai" else "anthropic/claude-haiku-4-5"
    with server:
        gen = generate_args(server, SAMPLE, run, "--limit", "10", "--batch", model=model)
        assert run_cli(*gen).code == 0
        collected = run_cli(*gen)
        assert collected.code == 0, collected.err
        bad = len(fake.bad_usage_ids)
        assert 0 < bad < 10, "the fake garbled no line (or all): the test proves nothing"
        assert f"{bad} unreadable lines" in collected.out
        assert len(read_rows(run)) == 10 - bad  # the rest are collected
        assert fake.batches_created == 2  # the bad ones were sent again
        assert run_cli(*gen).code == 0
    assert len(read_rows(run)) == 10
    assert all(
        n == (2 if c in fake.bad_usage_ids else 1) for c, n in fake.requests_by_custom_id.items()
    )


def test_an_unreadable_line_in_an_imported_file_is_counted(fake_server, run_cli, tmp_path):
    run, requests, results = tmp_path / "run", tmp_path / "req.jsonl", tmp_path / "out.jsonl"
    gen = generate_args(fake_server, SAMPLE, run, "--limit", "3", "--batch-out", requests)
    assert run_cli(*gen).code == 0
    answer_file(requests, results)
    lines = results.read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[1])
    broken["response"]["body"]["usage"]["prompt_tokens"] = "ten"
    lines[1] = json.dumps(broken)
    results.write_text("\n".join(lines) + "\n", encoding="utf-8")
    imported = run_cli("batch", "import", run, results)
    assert imported.code == 0, imported.err
    assert "1 unreadable" in imported.out
    assert _states(run) == {"answered": 2, "queued": 1}
    again = run_cli(*gen)
    assert again.code == 0 and "wrote 1 requests" in again.out
    assert broken["custom_id"] in requests.read_text(encoding="utf-8")


# ---------------------------------------------------------------------- 7. one line


def test_cancel_finds_a_batch_whose_acknowledgement_was_lost(batch_server, run_cli, tmp_path):
    server, fake = batch_server
    fake.polls_to_complete = None
    fake.fail_create_after_commit, fake.create_fault = 1, "drop"
    run = tmp_path / "run"
    assert run_cli(*generate_args(server, SAMPLE, run, "--limit", "3", "--batch")).code == 2
    (batch,) = fake.batches.values()
    cancelled = run_cli("batch", "cancel", run)
    assert cancelled.code == 0, cancelled.err
    assert batch.status == "cancelling"
    assert batch.id in cancelled.out


def test_batch_out_with_nothing_pending_writes_no_file(fake_server, run_cli, tmp_path):
    run, requests, results = tmp_path / "run", tmp_path / "req.jsonl", tmp_path / "out.jsonl"
    gen = generate_args(fake_server, SAMPLE, run, "--limit", "3", "--batch-out", requests)
    assert run_cli(*gen).code == 0
    answer_file(requests, results)
    assert run_cli("batch", "import", run, results).code == 0
    requests.unlink()
    finish = run_cli(*gen)
    assert finish.code == 0, finish.err
    assert "nothing is pending" in finish.out and "run them" not in finish.out
    assert not requests.exists()
    online = generate_args(fake_server, SAMPLE, run, "--limit", "3")
    assert run_cli(*online).code == 0  # an imported file holds nothing back
