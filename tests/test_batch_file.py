"""OpenAI batch files (`--batch-out`, `dvsynth batch import`): the offline engines' path.

A vLLM-style results file is made here by answering each request line exactly as the
fake server answers online, so a batch-made row must equal the online-made row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dvsynth.runs.store import RunStore
from dvsynth.testing import completion_body
from tests.conftest import comparable_rows, generate_args, read_rows, validate_args, write_jsonl
from tests.test_row_life import seed_rows

SAMPLE = Path(__file__).resolve().parents[1] / "dvsynth" / "data" / "sample_seeds.jsonl"


def mixed_seeds(folder: Path, verifiable: int = 8, sample: int = 6) -> Path:
    """Seeds whose pairs the fake judge confirms (with other negatives to judge), then
    sample seeds it rejects: both outcomes must come out the same from a batch."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:sample]
    rows = seed_rows(verifiable, others=True) + [json.loads(line) for line in lines]
    return write_jsonl(folder / "seeds.jsonl", rows)


def answer_file(requests: Path, results: Path, skip: int = 0, extra_ids: int = 0) -> int:
    """What `vllm run-batch` writes for `requests` (the first `skip` lines left out)."""
    lines = requests.read_text(encoding="utf-8").splitlines()
    with results.open("w", encoding="utf-8") as out:
        for number, line in enumerate(lines):
            if number < skip:
                continue
            request = json.loads(line)
            out.write(
                json.dumps(
                    {
                        "id": f"vllm-{number}",
                        "custom_id": request["custom_id"],
                        "response": {
                            "status_code": 200,
                            "request_id": f"vllm-batch-{number}",
                            "body": completion_body(request["body"]),
                        },
                        "error": None,
                    }
                )
                + "\n"
            )
        for number in range(extra_ids):
            out.write(
                json.dumps(
                    {
                        "id": "x",
                        "custom_id": f"never-sent-{number}",
                        "response": {"status_code": 200, "body": {}},
                        "error": None,
                    }
                )
                + "\n"
            )
    return len(lines) - skip


def final_rows(run: Path) -> list[dict]:
    store = RunStore.open_existing(run)
    try:
        rows = [r.model_dump(mode="json") for r in store.iter_final_rows()]
    finally:
        store.close()
    for row in rows:
        prov = row["provenance"]
        # Spend: a batch answer reaches the row as a cached call (its cost is counted once,
        # in the run's batch ledger), so the judge's usage on the row is not comparable.
        for key in (
            "created_at",
            "latency_s",
            "cached",
            "cost_usd",
            "judge_cost_usd",
            "judge_usage",
            "judge_spend",
        ):
            prov.pop(key, None)
    return sorted(rows, key=lambda r: r["seed_id"])


def test_rows_from_a_batch_file_equal_rows_from_online_calls(fake_server, run_cli, tmp_path):
    online, batched = tmp_path / "online", tmp_path / "batched"
    seeds = mixed_seeds(tmp_path)
    assert run_cli(*generate_args(fake_server, seeds, online, "--limit", "12")).code == 0
    assert run_cli(*validate_args(online, fake_server)).code == 0
    calls_online = fake_server.total_requests

    requests, results = tmp_path / "requests.jsonl", tmp_path / "results.jsonl"
    gen = generate_args(fake_server, seeds, batched, "--limit", "12", "--batch-out", requests)
    first = run_cli(*gen)
    assert first.code == 0, first.err
    assert "wrote 12 requests" in first.out
    assert read_rows(batched) == []  # every row waits on the file
    answer_file(requests, results)
    imported = run_cli("batch", "import", batched, results)
    assert imported.code == 0, imported.err
    assert "12 answers" in imported.out
    finish = run_cli(*gen)
    assert finish.code == 0
    assert "nothing is pending" in finish.out
    assert comparable_rows(read_rows(batched)) == comparable_rows(read_rows(online))

    judge = validate_args(batched, fake_server, "--batch-out", requests)
    assert run_cli(*judge).code == 0
    judge_requests = answer_file(requests, results)
    assert judge_requests > 12  # the check, four judgments and the negatives, per kept pair
    assert run_cli("batch", "import", batched, results).code == 0
    last = run_cli(*judge)
    assert last.code == 0
    assert "nothing is pending" in last.out  # check and judge went in one round
    rows = final_rows(batched)
    assert rows == final_rows(online)
    outcomes = {row["status"] for row in rows}
    assert outcomes == {"kept", "rejected"}, outcomes  # both paths were compared
    assert any(row["negatives_b"] for row in rows)  # other negatives judged in the batch
    assert fake_server.total_requests == calls_online  # the batch run called nothing online


def test_import_is_idempotent_and_reports_unknown_and_missing(fake_server, run_cli, tmp_path):
    run, requests, results = tmp_path / "run", tmp_path / "req.jsonl", tmp_path / "out.jsonl"
    gen = generate_args(fake_server, SAMPLE, run, "--limit", "6", "--batch-out", requests)
    assert run_cli(*gen).code == 0
    answer_file(requests, results, skip=2, extra_ids=3)  # two requests never ran
    first = run_cli("batch", "import", run, results)
    assert "3 with ids no run given sent" in first.out
    assert "4 answers" in first.out
    again = run_cli("batch", "import", run, results)
    assert "0 answers, 4 already imported" in again.out
    rerun = run_cli(*gen)
    assert "wrote 2 requests" in rerun.out  # only the two without an answer
    assert len(read_rows(run)) == 4
    assert len(requests.read_text().splitlines()) == 2


def test_batch_file_holds_no_key(fake_server, run_cli, tmp_path, monkeypatch):
    secret = "sk-test-NEVER-ON-DISK-123"
    monkeypatch.setenv("MY_KEY", secret)
    run, requests = tmp_path / "run", tmp_path / "req.jsonl"
    args = generate_args(
        fake_server, SAMPLE, run, "--limit", "4", "--batch-out", requests, "--api-key-env", "MY_KEY"
    )
    assert run_cli(*args).code == 0
    assert requests.read_text().count("custom_id") == 4
    for path in [requests, *run.rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_dry_run_sends_nothing_and_leaves_no_run(fake_server, run_cli, tmp_path):
    run = tmp_path / "run"
    result = run_cli(*generate_args(fake_server, SAMPLE, run, "--limit", "5", "--dry-run"))
    assert result.code == 0, result.err
    assert "dry run, nothing sent: 5 calls" in result.out
    assert fake_server.total_requests == 0
    assert not run.exists()


def test_engine_options_that_contradict_exit_2(tmp_path):
    cases = [
        (["--batch", "--batch-out", str(tmp_path / "r.jsonl")], "--batch-out"),
        (["--wait"], "--wait"),
        (["--batch", "--model", "local/smollm2"], "--batch"),
    ]
    for extra, option in cases:
        done = subprocess.run(
            [sys.executable, "-m", "dvsynth.cli", "generate", "--out", str(tmp_path / "x"), *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, (extra, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and option in lines[0], done.stderr


def test_passages_with_unicode_line_breaks_stay_one_line_each(fake_server, run_cli, tmp_path):
    """U+0085 and U+2028 (real MS MARCO passages hold them) split a batch line for any
    parser that splits on Unicode line breaks; batch lines are ASCII."""
    rows = [
        {
            "id": f"u{i}",
            "query": f"question {i}",
            "positive": f"kwp{i} a\x85b",
            "negative": "c\u2028d",
        }
        for i in range(3)
    ]
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    requests = tmp_path / "req.jsonl"
    args = generate_args(fake_server, seeds, tmp_path / "run", "--batch-out", requests)
    assert run_cli(*args).code == 0
    lines = requests.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert "a\x85b" in json.loads(lines[0])["body"]["messages"][-1]["content"]
