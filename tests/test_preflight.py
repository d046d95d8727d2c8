"""What validate would refuse is refused before a command that generates first pays for
the generation (issue 25: 'fails only after generate was paid')."""

from __future__ import annotations

from tests.conftest import generate_args, write_seeds
from tests.test_recipe import _recipe, _write


def test_generate_validate_without_the_judges_key_calls_nothing(
    run_cli, tmp_path, fake_server, monkeypatch
):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    seeds = write_seeds(tmp_path / "s.jsonl", 4)
    result = run_cli(
        *generate_args(fake_server, seeds, tmp_path / "run"),
        "--validate",
        "--judge-model",
        "anthropic/claude-haiku-4-5",
    )
    assert result.code == 2, result.err
    assert "--judge-model anthropic/claude-haiku-4-5" in result.err
    assert "ANTHROPIC_API_KEY" in result.err
    assert fake_server.total_requests == 0
    assert not (tmp_path / "run").exists()


def test_recipe_without_the_judges_key_calls_nothing(run_cli, tmp_path, fake_server, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    seeds = write_seeds(tmp_path / "s.jsonl", 4)
    recipe = _recipe(tmp_path, fake_server, seeds, push=None)
    recipe["validation"] = {"judge_model": "anthropic/claude-haiku-4-5"}
    result = run_cli("run", _write(tmp_path / "r.yaml", recipe))
    assert result.code == 2, result.err
    assert "ANTHROPIC_API_KEY" in result.err
    assert fake_server.total_requests == 0


def test_until_generate_needs_no_judge(run_cli, tmp_path, fake_server, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    seeds = write_seeds(tmp_path / "s.jsonl", 4)
    recipe = _recipe(tmp_path, fake_server, seeds, push=None)
    recipe["validation"] = {"judge_model": "anthropic/claude-haiku-4-5"}
    result = run_cli("run", _write(tmp_path / "r.yaml", recipe), "--until", "generate")
    assert result.code == 0, result.err
    assert fake_server.total_requests == 4
