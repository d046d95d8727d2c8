"""Every client names the options it was built from in its errors: the generator's
`--model` / `--api-base` / `--api-key-env`, the judge's `--judge-model` /
`--judge-api-base` / `--judge-api-key-env`, or a recipe's keys (issue 25: the judge's
errors named the generator's options)."""

from __future__ import annotations

import pytest
import yaml

from dvsynth.testing import FakeLLMServer
from tests.conftest import generate_args, validate_args, write_jsonl


def _seeds(tmp_path):
    rows = [
        {"id": f"o{i}", "query": f"option query {i}", "positive": f"kwo{i} a", "negative": "kb b"}
        for i in range(3)
    ]
    return write_jsonl(tmp_path / "seeds.jsonl", rows)


def _generated(run_cli, tmp_path, server):
    run = tmp_path / "run"
    assert run_cli(*generate_args(server, _seeds(tmp_path), run)).code == 0
    return run


def _one_line(result) -> str:
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2 and len(lines) == 1, result.err
    return lines[0]


def test_a_judge_without_its_key_names_the_judge_option(monkeypatch, run_cli, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeLLMServer() as server:
        run = _generated(run_cli, tmp_path, server)
    line = _one_line(run_cli("validate", run, "--judge-model", "openai/judge", "--quiet"))
    assert "--judge-model openai/judge: missing API key, set OPENAI_API_KEY" in line
    assert "--model openai/judge" not in line.replace("--judge-model", "")


def test_a_judge_refused_by_its_server_names_the_judge_options(monkeypatch, run_cli, tmp_path):
    with FakeLLMServer() as gen, FakeLLMServer(status_for_all=401) as judge:
        run = _generated(run_cli, tmp_path, gen)
        line = _one_line(run_cli(*validate_args(run, judge)))
    assert line.startswith("error: --judge-model openai/judge: AuthenticationError")
    assert "--judge-api-base" in line and "--judge-api-key-env" in line  # how to send a key
    assert "--api-key-env" not in line.replace("--judge-api-key-env", "")


@pytest.mark.parametrize(
    "key",
    [
        "sk-proj-Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0",
        "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",  # letters and `_`: a valid name
        "Xq7Lp2Zr9Kw4Nv8Bt1Hy6Jc3Fd5Gs0Ae",  # a Mistral-style key: a valid name too
    ],
)
def test_a_key_given_where_a_variable_name_belongs_is_refused_unechoed(run_cli, tmp_path, key):
    with FakeLLMServer() as server:
        run = _generated(run_cli, tmp_path, server)
        result = run_cli(*validate_args(run, server, "--judge-api-key-env", key))
        assert server.total_requests == 3  # generate's calls only
    line = _one_line(result)
    assert "--judge-api-key-env: takes the NAME of the environment variable" in line
    assert key not in result.err + result.out


def test_a_recipe_names_its_own_keys(monkeypatch, run_cli, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as server:
        recipe = {
            "out": str(tmp_path / "run"),
            "generate": {"seeds": str(seeds), "model": "openai/fake", "api_base": server.api_base},
            "validation": {"judge_model": "openai/judge"},  # no server of its own: OpenAI
            "limits": {"max_retries": 0},
        }
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
        judged = _one_line(run_cli("run", path, "--quiet"))
        recipe["generate"] = {"seeds": str(seeds), "model": "openai/fake"}
        recipe["validation"]["judge_api_base"] = server.api_base  # only the generator lacks one
        path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
        generated = _one_line(run_cli("run", path, "--quiet"))
    assert "validation.judge_model openai/judge: missing API key" in judged
    assert "generate.model openai/fake: missing API key" in generated


def test_a_generator_key_value_never_reaches_the_manifest(run_cli, tmp_path):
    """`--api-key-env` holding a key instead of a name: refused before the run directory
    (whose manifest records the option) is written, even for a dry run."""
    key = "Xq7Lp2Zr9Kw4Nv8Bt1Hy6Jc3Fd5Gs0Ae"
    run = tmp_path / "run"
    with FakeLLMServer() as server:
        args = generate_args(server, _seeds(tmp_path), run, "--api-key-env", key)
        for extra in ((), ("--dry-run",)):
            line = _one_line(run_cli(*args, *extra))
            assert "--api-key-env: takes the NAME" in line and key not in line
        assert server.total_requests == 0
    assert not (run / "manifest.json").exists()
