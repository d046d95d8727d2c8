"""`dvsynth generate` end to end against the fake OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest

from dvsynth.testing import FakeLLMServer
from tests.conftest import FIXTURES, generate_args, read_rows, write_jsonl


def marked_seeds(path):
    """One seed per behaviour of the fake server, both modes."""
    rows = [
        {
            "id": "ok-rev",
            "query": "ok reverse",
            "instruction": "Only 2021 data.",
            "positive": "2021 data on wheat.",
            "negative": "2009 data on wheat.",
        },
        {
            "id": "ok-boot",
            "query": "ok bootstrap",
            "positive": "For children.",
            "negative": "For experts.",
        },
        {
            "id": "none",
            "query": "refuse [none]",
            "instruction": "x y z",
            "positive": "a",
            "negative": "b",
        },
        {
            "id": "garbage",
            "query": "noise [garbage]",
            "instruction": "x y z",
            "positive": "a",
            "negative": "b",
        },
        {
            "id": "fence",
            "query": "fenced [fence]",
            "instruction": "x y z",
            "positive": "a",
            "negative": "b",
        },
        {
            "id": "err",
            "query": "fails [error500]",
            "instruction": "x y z",
            "positive": "a",
            "negative": "b",
        },
    ]
    return write_jsonl(path, rows)


def gen_args(server, seeds, out, *extra):
    return generate_args(
        server, seeds, out, "--max-retries", "1", *extra, model="openai/fake-model"
    )


def test_generate_rows_with_reasons(fake_server, run_cli, tmp_path):
    seeds = marked_seeds(tmp_path / "seeds.jsonl")
    result = run_cli(*gen_args(fake_server, seeds, tmp_path / "run"))
    assert result.code == 0, result.err
    rows = {r["seed_id"]: r for r in read_rows(tmp_path / "run")}
    assert set(rows) == {"ok-rev", "ok-boot", "none", "garbage", "fence", "err"}
    rev = rows["ok-rev"]
    assert rev["status"] == "kept" and rev["mode"] == "reverse"
    assert rev["instruction_a"] == "Only 2021 data."
    assert rev["instruction_b"].startswith("Focus on the ")
    assert (
        rev["doc_a"]["text"] == "2021 data on wheat."
        and rev["doc_b"]["text"] == "2009 data on wheat."
    )
    boot = rows["ok-boot"]
    assert boot["mode"] == "bootstrap" and boot["status"] == "kept"
    assert boot["instruction_a"].startswith("Only sources") and boot["instruction_b"].startswith(
        "I need"
    )
    assert rows["none"]["reasons"] == ["generator:none"]
    assert rows["garbage"]["reasons"] == ["generator:unparsable"]
    assert rows["garbage"]["raw_response"].startswith("I think")  # raw text kept
    assert rows["fence"]["status"] == "kept"  # code fence and missing closing tags tolerated
    assert rows["err"]["status"] == "failed"  # a 5xx may pass: the next run retries it
    assert rows["err"]["reasons"] == ["llm:InternalServerError"]
    prov = rev["provenance"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert prov["prompt_name"] == "reverse.v2"
    assert prov["prompt_sha256"] == manifest["prompts"]["reverse.v2"]
    assert prov["generator_model"] == "openai/fake-model"
    assert prov["usage"]["prompt_tokens"] > 0
    assert prov["cost_usd"] is None  # no price is known for a self-hosted model: not 0
    assert "3 kept, 2 rejected, 1 failed (6 new" in result.out


def test_rerun_resumes_without_new_calls_and_other_config_is_refused(
    fake_server, run_cli, tmp_path
):
    seeds = marked_seeds(tmp_path / "seeds.jsonl")
    out = tmp_path / "run"
    assert run_cli(*gen_args(fake_server, seeds, out, "--limit", "3")).code == 0
    calls = fake_server.total_requests
    assert len(read_rows(out)) == 3
    # The same command again: nothing to do, no call.
    assert run_cli(*gen_args(fake_server, seeds, out, "--limit", "3")).code == 0
    assert fake_server.total_requests == calls
    # A larger limit extends the same run; finished rows are not redone.
    assert run_cli(*gen_args(fake_server, seeds, out)).code == 0
    assert len(read_rows(out)) == 6
    by_query = fake_server.requests_by_query
    assert by_query["ok reverse"] == 1 and by_query["ok bootstrap"] == 1
    # Different settings in the same directory: one clear line, exit 2.
    refused = run_cli(*gen_args(fake_server, seeds, out, "--temperature", "0.7"))
    assert refused.code == 2
    assert "different settings (temperature: 0.0 -> 0.7)" in refused.err
    assert len(refused.err.strip().splitlines()) == 1


def test_cached_responses_are_reused_after_rows_are_lost(fake_server, run_cli, tmp_path):
    import sqlite3

    seeds = marked_seeds(tmp_path / "seeds.jsonl")
    out = tmp_path / "run"
    assert run_cli(*gen_args(fake_server, seeds, out)).code == 0
    calls = fake_server.total_requests
    with sqlite3.connect(out / "dvsynth.sqlite") as db:  # as if killed after the call
        db.execute("DELETE FROM rows WHERE seed_id IN ('ok-rev', 'none')")
    failed_calls = fake_server.requests_by_query["fails [error500]"]
    result = run_cli(*gen_args(fake_server, seeds, out))
    assert result.code == 0
    # Only the failed row (a 5xx) calls again; the lost rows come from the cache.
    assert fake_server.total_requests == calls + failed_calls
    rows = {r["seed_id"]: r for r in read_rows(out)}
    assert rows["ok-rev"]["provenance"]["cached"] is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "missing.jsonl"], "missing.jsonl: no such seed file or folder"),
        (["--map", "query"], "--map: 'query' is not field=column"),
        (["--map", "query=nope"], "column 'nope' (from --map query=nope) not found"),
        (["--mode", "sideways"], "--mode: 'sideways' is not one of"),
        (["--model", "nonsense-provider/x"], "names no known provider"),
        (["--model", "local/unknown"], "unknown local model"),
        (["--prompt", "nope.jinja", "--mode", "reverse"], "--prompt: nope.jinja: no such file"),
        (["--transport", "carrier-pigeon"], "--transport: 'carrier-pigeon' is not one of"),
        (["--transport", "http", "--model", "local/smollm2"], "--transport http: needs"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run_cli(
        "generate",
        "--seeds",
        str(FIXTURES / "triples.jsonl"),
        "--out",
        str(tmp_path / "run"),
        *args,
    )
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


def test_missing_api_key_is_a_user_error(run_cli, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run_cli(
        "generate",
        "--seeds",
        str(FIXTURES / "triples.jsonl"),
        "--model",
        "openai/gpt-4o-mini",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.code == 2
    assert "missing API key, set OPENAI_API_KEY" in result.err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("transport", ["litellm", "http"])
def test_rejected_key_stops_the_run_without_leaking_it(run_cli, tmp_path, monkeypatch, transport):
    secret = "sk-test-abcdefghijklmnopqrstuvwxyz123456"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with FakeLLMServer(require_key="the-right-key") as server:
        args = gen_args(server, FIXTURES / "triples.jsonl", tmp_path / "run")
        result = run_cli(*args, "--transport", transport)
    assert result.code == 2
    assert "AuthenticationError" in result.err and "Traceback" not in result.err
    assert secret not in result.err
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_bad_seed_rows_are_skipped_or_fatal_with_strict(fake_server, run_cli, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        '{"query": "fine", "positive": "a", "negative": "b"}\n'
        '{"query": "broken", "positive": "", "negative": "b"}\n',
        encoding="utf-8",
    )
    result = run_cli(*gen_args(fake_server, seeds, tmp_path / "run"))
    assert result.code == 0
    assert len(read_rows(tmp_path / "run")) == 1
    strict = run_cli(*gen_args(fake_server, seeds, tmp_path / "run2", "--strict"))
    assert strict.code == 2
    assert f"{seeds}:2: positive: empty text (--strict)" in strict.err


def test_custom_prompt_file_is_used_and_hashed(fake_server, run_cli, tmp_path):
    prompt = tmp_path / "mine.jinja"
    prompt.write_text(
        "Reverse it.\n<query>{{ query }}</query>\n{{ instruction }}\n"
        "Answer <answer><new_instruction>...</new_instruction></answer>"
    )
    seeds = FIXTURES / "triples.jsonl"
    result = run_cli(
        *gen_args(fake_server, seeds, tmp_path / "run", "--mode", "reverse", "--prompt", prompt)
    )
    assert result.code == 0, result.err
    rows = read_rows(tmp_path / "run")
    assert [r["seed_id"] for r in rows] == ["r1"]  # bootstrap seeds are bad rows in reverse mode
    import hashlib

    assert rows[0]["provenance"]["prompt_name"] == "mine"
    assert rows[0]["provenance"]["prompt_sha256"] == hashlib.sha256(prompt.read_bytes()).hexdigest()
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% if %}")
    bad = run_cli(
        *gen_args(fake_server, seeds, tmp_path / "run3", "--mode", "reverse", "--prompt", broken)
    )
    assert bad.code == 2 and "template error" in bad.err


def test_default_run_dir_is_derived_from_the_settings(fake_server, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        "generate",
        "--seeds",
        str(FIXTURES / "triples.jsonl"),
        "--model",
        "openai/fake",
        "--api-base",
        fake_server.api_base,
        "--quiet",
    ]
    assert run_cli(*args).code == 0
    assert run_cli(*args, "--temperature", "0.3").code == 0
    runs = sorted(p.name for p in (tmp_path / "dvsynth-runs").iterdir())
    assert len(runs) == 2 and all(r.startswith("triples-fake-") for r in runs)


def test_prompt_with_an_unknown_variable_fails_before_any_row(fake_server, run_cli, tmp_path):
    prompt = tmp_path / "typo.jinja"
    prompt.write_text("Reverse <query>{{ querry }}</query>")
    result = run_cli(
        *gen_args(
            fake_server,
            FIXTURES / "triples.jsonl",
            tmp_path / "run",
            "--mode",
            "reverse",
            "--prompt",
            prompt,
        )
    )
    assert result.code == 2
    assert "'querry' is undefined" in result.err and "Traceback" not in result.err
    assert fake_server.total_requests == 0
