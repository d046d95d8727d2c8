"""`--engine ray` on a local Ray (2 CPUs): the HTTP processor against the fake server gives
the online engine's rows, spreads over several servers, and a killed job loses and
repeats nothing it had received. The vLLM processor is configured, not run (no GPU)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from dvsynth.llm.client import completion_from_json
from dvsynth.testing import FakeLLMServer
from tests.conftest import comparable_rows, generate_args, read_rows, validate_args, write_jsonl
from tests.test_batch_file import final_rows, mixed_seeds

ray = pytest.importorskip("ray")

RAY = ["--engine", "ray", "--ray-address", "local"]


@pytest.fixture(scope="module", autouse=True)
def one_local_ray():
    """One local Ray for the module's in-process commands, shut down after them."""
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_ray_rows_equal_online_rows_and_both_servers_work(run_cli, tmp_path):
    with FakeLLMServer() as one, FakeLLMServer() as two:
        seeds = mixed_seeds(tmp_path, verifiable=8, sample=6)
        online, spread = tmp_path / "online", tmp_path / "ray"
        assert run_cli(*generate_args(one, seeds, online)).code == 0
        assert run_cli(*validate_args(online, one)).code == 0
        one.total_requests = 0
        args = generate_args(one, seeds, spread, *RAY, "--api-base", two.api_base)
        done = run_cli(*args)
        assert done.code == 0, done.err
        assert one.total_requests > 0 and two.total_requests > 0
        assert comparable_rows(read_rows(spread)) == comparable_rows(read_rows(online))
        judged = run_cli(*validate_args(spread, one, *RAY, "--judge-api-base", two.api_base))
        assert judged.code == 0, judged.err
    rows = final_rows(spread)
    assert rows == final_rows(online)
    assert {row["status"] for row in rows} == {"kept", "rejected"}


def many_seeds(n: int) -> list[dict]:
    return [
        {"id": f"k{i}", "query": f"question {i}", "positive": f"kwp{i} a", "negative": f"kwn{i} b"}
        for i in range(n)
    ]


def test_a_killed_ray_job_rerun_repeats_nothing_it_received(tmp_path):
    total = 96  # six blocks of 16: results come back block by block
    seeds = write_jsonl(tmp_path / "seeds.jsonl", many_seeds(total))
    run = tmp_path / "run"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    with FakeLLMServer(latency=0.3) as server:
        command = [
            sys.executable,
            "-m",
            "dvsynth.cli",
            *generate_args(server, seeds, run, *RAY, "--concurrency", "2"),
        ]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        answered: set[str] = set()
        deadline = time.monotonic() + 240
        while not answered and time.monotonic() < deadline:
            time.sleep(0.2)
            answered = _answered_rows(run)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        answered = _answered_rows(run)
        assert 0 < len(answered) < total, "the kill came too late to prove anything"
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        queries = {row["id"]: row["query"] for row in many_seeds(total)}
        for seed_id in answered:  # received before the kill: never sent again
            assert server.requests_by_query[queries[seed_id]] == 1, seed_id
    assert len(read_rows(run)) == total


def _answered_rows(run) -> set[str]:
    """Rows whose request's answer the run has committed (the database may not exist yet)."""
    path = run / "dvsynth.sqlite"
    if not path.exists():
        return set()
    try:
        with sqlite3.connect(path) as db:
            found = db.execute(
                "SELECT row_id FROM batch_requests WHERE state = 'answered'"
            ).fetchall()
    except sqlite3.OperationalError:  # the ledger's tables are not made yet
        return set()
    return {row for (row,) in found}


def test_vllm_processor_is_configured_for_a_gguf_model():
    pytest.importorskip("ray.data.llm")
    from dvsynth.llm.ray.vllm_processor import from_engine_row, to_engine_row, vllm_config

    config = vllm_config(
        "/models/SmolLM2-135M-Instruct.Q8_0.gguf",
        tensor_parallel=2,
        replicas=3,
        engine_args={"tokenizer": "HuggingFaceTB/SmolLM2-135M-Instruct", "max_model_len": 4096},
    )
    assert config.engine_kwargs["tensor_parallel_size"] == 2
    assert config.engine_kwargs["max_model_len"] == 4096
    assert tuple(config.concurrency) == (3, 3)
    assert config.should_continue_on_error is True
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    row = to_engine_row({"custom_id": "s1-abc", "body": json.dumps(body)})
    assert row["sampling_params"] == {"max_tokens": 8}
    out = from_engine_row(
        {
            **row,
            "generated_text": "yes",
            "num_input_tokens": 12,
            "num_generated_tokens": 1,
        }
    )
    completion = completion_from_json(json.loads(out["response"]))
    assert (completion.text, completion.prompt_tokens, completion.finish_reason) == (
        "yes",
        12,
        "stop",
    )
    failed = from_engine_row({**row, "__inference_error__": "CUDA OOM"})
    assert failed["status"] == 500 and failed["error"] == "CUDA OOM"


def test_nothing_of_ray_is_imported_without_the_ray_engine(tmp_path):
    code = (
        "import sys\n"
        "from dvsynth.config import GenerateConfig\n"
        "from dvsynth.generate.run import generate_run\n"
        f"generate_run(GenerateConfig(model='openai/gpt-4o-mini', out={str(tmp_path / 'r')!r},"
        " dry_run=True, limit=2))\n"
        "ours = ('ray.', 'dvsynth.llm.ray')\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith(ours)))\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
