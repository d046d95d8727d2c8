"""Keys go only where they belong: each server sees its own key and no other.

Two fake servers stand for a self-hosted generator and a self-hosted judge; each records
the Authorization header of every request. OPENAI_API_KEY is set to a third value that
must reach neither, and no key value may land in any file of the run directory.
"""

from __future__ import annotations

import json

import pytest

from dvsynth.llm.client import LLMClient
from dvsynth.llm.keys import NO_KEY, plain_http_warning
from dvsynth.testing import FakeLLMServer
from tests.conftest import generate_args, write_jsonl

GEN_KEY = "gen-secret-value-1111"
JUDGE_KEY = "judge-secret-value-2222"
OPENAI_KEY = "sk-openai-secret-value-3333"
TRANSPORTS = ["litellm", "http"]


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("MY_GEN_KEY", GEN_KEY)
    monkeypatch.setenv("MY_JUDGE_KEY", JUDGE_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.delenv("HOSTED_VLLM_API_KEY", raising=False)


def _seeds(tmp_path):
    rows = [
        {"id": f"k{i}", "query": f"key query {i}", "positive": f"kwa{i} a", "negative": "kwb b"}
        for i in range(3)
    ]
    return write_jsonl(tmp_path / "seeds.jsonl", rows)


def _generate(seeds, out, server, transport, *extra, model="openai/gen"):
    return generate_args(
        server, seeds, out, "--transport", transport, "--max-retries", "0", *extra, model=model
    )


def _assert_no_key_in_files(run_dir):
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for key in (GEN_KEY, JUDGE_KEY, OPENAI_KEY):
            assert key.encode() not in data, (path, key)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_generator_and_judge_each_get_only_their_own_key(keys, run_cli, tmp_path, transport):
    seeds = _seeds(tmp_path)
    run = tmp_path / "run"
    with FakeLLMServer() as gen, FakeLLMServer() as judge:
        result = run_cli(
            *_generate(seeds, run, gen, transport, "--api-key-env", "MY_GEN_KEY"),
            "--validate",
            "--judge-model",
            "openai/judge",
            "--judge-api-base",
            judge.api_base,
            "--judge-api-key-env",
            "MY_JUDGE_KEY",
        )
        assert result.code == 0, result.err
        assert gen.total_requests == 3 and judge.total_requests >= 12  # 4 judgments a pair
        assert set(gen.authorizations) == {f"Bearer {GEN_KEY}"}
        assert set(judge.authorizations) == {f"Bearer {JUDGE_KEY}"}
    _assert_no_key_in_files(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["api_key_env"] == "MY_GEN_KEY"  # the name, never the value


def test_validate_sends_the_judge_key_named_by_its_option(keys, run_cli, tmp_path):
    seeds = _seeds(tmp_path)
    run = tmp_path / "run"
    with FakeLLMServer() as gen, FakeLLMServer() as judge:
        generated = run_cli(*_generate(seeds, run, gen, "http", "--api-key-env", "MY_GEN_KEY"))
        assert generated.code == 0, generated.err
        result = run_cli(
            "validate",
            str(run),
            "--judge-model",
            "openai/judge",
            "--judge-api-base",
            judge.api_base,
            "--judge-api-key-env",
            "MY_JUDGE_KEY",
            "--transport",
            "litellm",
            "--quiet",
        )
        assert result.code == 0, result.err
        assert set(judge.authorizations) == {f"Bearer {JUDGE_KEY}"}
    _assert_no_key_in_files(run)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_self_hosted_server_never_gets_openai_api_key(keys, run_cli, tmp_path, transport):
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as server:
        result = run_cli(*_generate(seeds, tmp_path / "run", server, transport))
        assert result.code == 0, result.err
        sent = set(server.authorizations)
    assert sent <= {None, f"Bearer {NO_KEY}"}  # no key, or litellm's harmless placeholder


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hosted_vllm_gets_its_own_variable(keys, monkeypatch, run_cli, tmp_path, transport):
    monkeypatch.setenv("HOSTED_VLLM_API_KEY", "vllm-secret-value-4444")
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as server:
        args = _generate(seeds, tmp_path / "run", server, transport, model="hosted_vllm/gen")
        result = run_cli(*args)
        assert result.code == 0, result.err
        assert set(server.authorizations) == {"Bearer vllm-secret-value-4444"}


def test_the_generator_judging_itself_keeps_its_server_and_key(keys, run_cli, tmp_path):
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as gen:
        args = _generate(seeds, tmp_path / "run", gen, "http", "--api-key-env", "MY_GEN_KEY")
        result = run_cli(*args, "--validate")
        assert result.code == 0, result.err
        assert gen.total_requests >= 3 + 12  # generate, then 4 judgments a pair
        assert set(gen.authorizations) == {f"Bearer {GEN_KEY}"}


def test_a_judge_of_its_own_does_not_inherit_the_generator_server(monkeypatch, run_cli, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as gen:
        args = _generate(seeds, tmp_path / "run", gen, "auto")
        result = run_cli(*args, "--validate", "--judge-model", "openai/judge")
        # Not sent to the generator's server: openai/judge means OpenAI, which needs a key.
        assert gen.total_requests == 3
    assert result.code == 2
    assert "missing API key, set OPENAI_API_KEY" in result.err


def test_an_unset_key_variable_is_one_line_and_exit_2(monkeypatch, run_cli, tmp_path):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as server:
        args = _generate(seeds, tmp_path / "run", server, "http", "--api-key-env")
        result = run_cli(*args, "NOT_SET_ANYWHERE")
        assert server.total_requests == 0
    assert result.code == 2
    assert "--api-key-env NOT_SET_ANYWHERE" in result.err
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "api_base, warns",
    [
        ("http://10.1.2.3:8000/v1", True),
        ("http://gpu-box:8000/v1", True),
        ("https://gpu-box/v1", False),
        ("http://127.0.0.1:8000/v1", False),
        ("http://localhost:8000/v1", False),
        ("http://[::1]:8000/v1", False),
    ],
)
def test_plain_http_to_another_machine_is_flagged(api_base, warns):
    assert (plain_http_warning(api_base, "the key") is not None) == warns


def test_a_key_over_plain_http_warns_on_stderr_without_the_key(keys, capsys):
    LLMClient("openai/gen", api_base="http://10.1.2.3:8000/v1", api_key_env="MY_GEN_KEY").check()
    err = capsys.readouterr().err
    assert "warning:" in err and "MY_GEN_KEY" in err and "10.1.2.3" in err
    assert GEN_KEY not in err
    notices: list[str] = []
    # No key of ours travels (OPENAI_API_KEY stays home): nothing to warn about.
    LLMClient("openai/gen", api_base="http://10.1.2.3:8000/v1", on_notice=notices.append).check()
    assert notices == []


def test_openai_compatible_providers_behind_a_base_get_their_own_key_or_none(keys, monkeypatch):
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    groq = LLMClient("groq/llama", api_base="http://127.0.0.1:9/v1", transport="litellm")
    assert groq._litellm_key == {"api_key": NO_KEY}  # litellm would send OPENAI_API_KEY
    openai_own = LLMClient("openai/gpt-4o-mini", api_base="https://api.openai.com/v1")
    assert openai_own._litellm_key == {"api_key": OPENAI_KEY}
    assert LLMClient("openai/gpt-4o-mini")._litellm_key == {}  # litellm as usual
