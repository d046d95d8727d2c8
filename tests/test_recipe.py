"""`dvsynth run RECIPE`: a release as one file, end to end against the fake LLM server
and a recording fake of the Hub; `--until`, kill and resume, refusals, `recipe from-run`."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard

from dvsynth.testing import FakeLLMServer
from tests.conftest import comparable_rows, read_rows, write_jsonl
from tests.test_publish import TOKEN, FakeHfApi, fake_api  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "recipes" / "dual-view-msmarco.yaml"
CLI = [sys.executable, "-m", "dvsynth.cli"]


def _seeds(path: Path, n: int = 16, instructions: bool = False) -> Path:
    """Seeds the fake generator and judge agree on (their `kw` words flip the label)."""
    rows = []
    for i in range(n):
        row = {
            "id": f"r{i:03d}",
            "query": f"recipe query number {i}",
            "positive": f"kwp{i} passage about topic {i}",
            "negative": f"kwn{i} other passage {i}",
            "other_negatives": [f"unrelated passage {i}"],
        }
        if instructions:
            row["instruction"] = f"Only sources from {2000 + i}."
        rows.append(row)
    return write_jsonl(path, rows)


def _recipe(tmp_path: Path, server, seeds: Path, **sections) -> dict:
    recipe = {
        "out": str(tmp_path / "run"),
        "generate": {"seeds": str(seeds), "model": "openai/fake", "api_base": server.api_base},
        "validation": {
            "judge_model": "openai/judge",
            "judge_api_base": server.api_base,
            "near_threshold": 99.5,  # the fake's instructions differ in a few characters
        },
        "limits": {"max_retries": 0, "concurrency": 4},
        "export": {
            "license": "cc-by-4.0",
            "val_share": 0.25,
            "out": str(tmp_path / "export"),
            "seed_dataset": "microsoft/ms_marco",
        },
        "push": {"repo": "me/dual-view", "version": "1.0.0"},
    }
    for name, value in sections.items():
        if value is None:
            recipe.pop(name, None)
        else:
            recipe[name] = {**recipe.get(name, {}), **value}
    return recipe


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def _progress(run: Path) -> dict:
    from dvsynth.runs.store import RunStore

    store = RunStore.open_existing(run)
    try:
        return store.progress() | {"validated": store.validation() is not None}
    finally:
        store.close()


def test_recipe_end_to_end_publishes_with_the_recipe(run_cli, tmp_path, fake_api):  # noqa: F811
    api = fake_api(FakeHfApi(head=None))  # a new repository
    with FakeLLMServer() as server:
        path = _write(
            tmp_path / "release.yaml", _recipe(tmp_path, server, _seeds(tmp_path / "s.jsonl"))
        )
        result = run_cli("run", path, "--quiet")
    assert result.code == 0, result.err
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert f"pushed me/dual-view v1.0.0 with recipe.yaml (sha256 {sha})" in result.out
    # Generated and validated: every row verified before anything was pushed.
    progress = _progress(tmp_path / "run")
    assert progress["validated"] and progress["verified"] == 16 and progress["pending"] == 0
    # One commit holding the recipe's exact bytes, then the tag.
    names = [c[0] for c in api.calls]
    assert names == ["list_repo_refs", "create_repo", "create_commit", "create_tag"]
    assert api.contents["recipe.yaml"] == data
    assert {"README.md", "pairs/train-00000.parquet", "triplets/train-00000.parquet"} <= set(
        api.contents
    )
    # The card and every pair row carry the recipe's sha256.
    card = DatasetCard.load(tmp_path / "export" / "README.md")
    assert card.data.to_dict()["dvsynth_recipe_sha256"] == sha
    assert f"sha256 `{sha}`" in card.text and "dvsynth run recipe.yaml" in card.text
    pairs = [pq.read_table(p) for p in (tmp_path / "export" / "pairs").glob("*.parquet")]
    shas = {s for t in pairs for s in t.column("recipe_sha256").to_pylist()}
    assert shas == {sha} and sum(t.num_rows for t in pairs) == 16
    assert (tmp_path / "export" / "recipe.yaml").read_bytes() == data
    assert TOKEN not in result.out + result.err


def test_export_without_a_recipe_has_no_recipe(run_cli, tmp_path):
    """A plain `dvsynth export` (no recipe): no recipe.yaml, the column is null."""
    with FakeLLMServer() as server:
        path = _write(tmp_path / "r.yaml", _recipe(tmp_path, server, _seeds(tmp_path / "s.jsonl")))
        assert run_cli("run", path, "--until", "validate", "--quiet").code == 0
    out = tmp_path / "plain"
    result = run_cli("export", tmp_path / "run", "--out", out, "--license", "cc-by-4.0")
    assert result.code == 0, result.err
    assert not (out / "recipe.yaml").exists()
    table = pq.read_table(next((out / "pairs").glob("*.parquet")))
    assert set(table.column("recipe_sha256").to_pylist()) == {None}
    assert "dvsynth_recipe_sha256" not in DatasetCard.load(out / "README.md").data.to_dict()


def test_until_generate_stops_after_generate(run_cli, tmp_path):
    with FakeLLMServer() as server:
        path = _write(tmp_path / "r.yaml", _recipe(tmp_path, server, _seeds(tmp_path / "s.jsonl")))
        result = run_cli("run", path, "--until", "generate", "--quiet")
        assert result.code == 0, result.err
        assert server.total_requests == 16  # the generator's calls only: no judge call
        progress = _progress(tmp_path / "run")
        assert not progress["validated"] and progress["pending"] == 16
        assert not (tmp_path / "export").exists()
        generated = {r["seed_id"]: r["instruction_b"] for r in read_rows(tmp_path / "run")}
        # --until validate then goes on from there: the same rows, now verified.
        result = run_cli("run", path, "--until", "validate", "--quiet")
        assert result.code == 0, result.err
    rows = read_rows(tmp_path / "run")
    assert {r["seed_id"]: r["instruction_b"] for r in rows} == generated
    assert _progress(tmp_path / "run")["verified"] == 16
    assert not (tmp_path / "export").exists()


def _row_count(run: Path) -> int:
    try:
        with sqlite3.connect(run / "dvsynth.sqlite", timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_generate_then_rerun_loses_nothing(tmp_path):
    n = 120
    seeds = _seeds(tmp_path / "s.jsonl", n, instructions=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with FakeLLMServer() as server:
        whole = _write(tmp_path / "whole.yaml", _recipe(tmp_path / "w", server, seeds))
        done = subprocess.run(
            [*CLI, "run", whole, "--until", "generate", "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    reference = comparable_rows(read_rows(tmp_path / "w" / "run"))
    assert len(reference) == n

    with FakeLLMServer(latency=0.05) as server:
        killed = _write(tmp_path / "killed.yaml", _recipe(tmp_path / "k", server, seeds))
        command = [*CLI, "run", killed, "--until", "generate", "--quiet"]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run = tmp_path / "k" / "run"
        deadline = time.monotonic() + 120
        while _row_count(run) < 30 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        before = {r["query"] for r in read_rows(run)}
        assert 30 <= len(before) < n
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        for query in before:  # no finished row's call was made again
            assert server.requests_by_query[query] == 1, query
    resumed = comparable_rows(read_rows(run))
    assert resumed == reference
    assert len({r["seed_id"] for r in resumed}) == n


def _one_line_refusal(path: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*CLI, "run", str(path), "--dry-run"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_an_unknown_key_is_one_line_naming_it(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("generate:\n  model: openai/x\n  temprature: 0.7\n", encoding="utf-8")
    err = _one_line_refusal(path).stderr
    assert f"{path}:3: unknown key 'generate.temprature'" in err and "temperature" in err


@pytest.mark.parametrize(
    "text, key",
    [
        (
            "generate:\n  model: openai/x\n  api_key_env: sk-proj-AbCdEfGhIjKlMnOp1234\n",
            "generate.api_key_env",
        ),
        (
            "validation:\n  judge_api_key_env: hf_AbCdEfGhIjKlMnOpQrStU\n",
            "validation.judge_api_key_env",
        ),
        (
            "generate:\n  api_base: https://user:pass1234@host/v1\n",
            "generate.api_base",
        ),
        ("generate:\n  api_key: not-a-variable-name-value\n", "generate.api_key"),
        ("# my key: sk-AbCdEfGhIjKlMnOp1234\ngenerate:\n  model: openai/x\n", "a comment"),
    ],
)
def test_a_secret_value_is_refused_naming_its_key(tmp_path, text, key):
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    done = _one_line_refusal(path)
    assert key in done.stderr
    for secret in ("AbCdEfGhIjKlMnOp", "pass1234", "not-a-variable-name-value"):
        assert secret not in done.stderr + done.stdout  # the value is never echoed


def test_a_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("generate:\n  model: [openai/x\nlimits: {}\n", encoding="utf-8")
    assert f"{path}:3: not valid YAML" in _one_line_refusal(path).stderr
    assert "no such recipe file" in _one_line_refusal(tmp_path / "missing.yaml").stderr


def test_cost_cap_refuses_before_sending_anything(run_cli, tmp_path):
    with FakeLLMServer() as server:
        recipe = _recipe(
            tmp_path,
            server,
            _seeds(tmp_path / "s.jsonl"),
            generate={"model": "openai/gpt-4o-mini"},
            limits={"max_cost": 0.00001},
        )
        result = run_cli("run", _write(tmp_path / "r.yaml", recipe), "--quiet")
        assert server.total_requests == 0
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert "limits.max_cost 1e-05: generate would cost about $" in result.err
    assert "nothing was sent" in result.err
    assert not (tmp_path / "run").exists()


def test_dry_run_prints_plan_estimate_and_push_and_creates_nothing(run_cli, tmp_path):
    with FakeLLMServer() as server:
        recipe = _recipe(
            tmp_path,
            server,
            _seeds(tmp_path / "s.jsonl"),
            generate={"model": "openai/gpt-4o-mini"},
            limits={"max_cost": 100},
        )
        result = run_cli("run", _write(tmp_path / "r.yaml", recipe), "--dry-run")
        assert server.total_requests == 0
    assert result.code == 0, result.err
    out = result.out
    assert "estimate, generate: 16 calls" in out and "online" in out
    assert "cost cap $100: spent so far + generate estimate" in out and "within" in out
    assert "push: me/dual-view tag v1.0.0" in out and "recipe.yaml" in out
    assert "nothing was sent, written or pushed" in out
    assert not (tmp_path / "run").exists() and not (tmp_path / "export").exists()


def test_until_a_stage_the_recipe_lacks_is_one_line(run_cli, tmp_path):
    with FakeLLMServer() as server:
        recipe = _recipe(tmp_path, server, _seeds(tmp_path / "s.jsonl"), push=None)
        result = run_cli("run", _write(tmp_path / "r.yaml", recipe), "--until", "push")
    assert result.code == 2 and "has no export and push section" in result.err


def test_from_run_round_trips_to_the_same_run_identity(run_cli, tmp_path):
    from dvsynth.generate.run import prepare_run
    from dvsynth.recipe.io import load_recipe
    from dvsynth.runs.store import read_manifest

    seeds = _seeds(tmp_path / "s.jsonl")
    with FakeLLMServer() as server:
        made = run_cli(
            "generate",
            "--seeds",
            seeds,
            "--model",
            "openai/fake",
            "--api-base",
            server.api_base,
            "--out",
            tmp_path / "cli-run",
            "--temperature",
            "0.3",
            "--max-tokens",
            "300",
            "--mode",
            "bootstrap",
            "--quiet",
        )
        assert made.code == 0, made.err
        checked = run_cli(
            "validate",
            tmp_path / "cli-run",
            "--judge-model",
            "openai/judge",
            "--judge-api-base",
            server.api_base,
            "--no-rule",
            "rewording",
            "--near-threshold",
            "80",
            "--judge-threshold",
            "0.7",
            "--quiet",
        )
        assert checked.code == 0, checked.err
        result = run_cli("recipe", "from-run", tmp_path / "cli-run", "-o", tmp_path / "back.yaml")
        assert result.code == 0, result.err
        assert "judge_api_base" in result.err  # the note: a run does not record it
        recipe, _ = load_recipe(tmp_path / "back.yaml")
        original = read_manifest(tmp_path / "cli-run")["identity_sha256"]
        assert prepare_run(recipe.generate_config()).manifest["identity_sha256"] == original

        # Run from the recipe (with the judge's server, which runs do not record): the
        # same run resumes and nothing is generated or judged again.
        raw = yaml.safe_load((tmp_path / "back.yaml").read_text())
        raw["validation"]["judge_api_base"] = server.api_base
        before = server.total_requests
        again = run_cli("run", _write(tmp_path / "again.yaml", raw), "--quiet")
        assert again.code == 0, again.err
        assert server.total_requests == before
    assert read_manifest(tmp_path / "cli-run")["identity_sha256"] == original
    assert _progress(tmp_path / "cli-run")["pending"] == 0


def test_flagship_recipe_loads_and_dry_runs_offline(run_cli, monkeypatch):
    from dvsynth.recipe.io import load_recipe

    recipe, _ = load_recipe(FLAGSHIP)
    assert recipe.generate.seeds == "samaya-ai/msmarco-w-instructions"
    assert recipe.generate.mode == "reverse" and recipe.engine.batch
    assert recipe.validation.instruction_check and recipe.validation.judge_negatives
    assert recipe.validation.judge_model != recipe.generate.model
    assert recipe.export.license == "cc-by-nc-4.0" and "Promptriever" in recipe.export.seed_citation
    assert recipe.generate_config().model == recipe.generate.model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    result = run_cli("run", FLAGSHIP, "--dry-run")
    assert result.code == 0, result.err
    assert "push: dvsynth/dual-view-msmarco tag v1.0.0" in result.out
    assert "come from the Hugging Face Hub" in result.out
    assert "nothing was sent, written or pushed" in result.out


def test_names_that_only_resemble_keys_are_accepted():
    from dvsynth.recipe.io import parse_recipe

    text = (
        "generate:\n  seeds: data/hf_msmarco_instructions_v2.jsonl  # hf_ in a path\n"
        "  api_key_env: HF_TOKEN_FOR_SERVER\nvalidation:\n"
        "  custom_validators: [my_sk_learn_rules_module:check]\n"
    )
    recipe = parse_recipe(text.encode())
    assert recipe.generate.api_key_env == "HF_TOKEN_FOR_SERVER"


def test_push_without_export_is_one_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "generate:\n  model: openai/x\npush:\n  repo: me/dv\n  version: 1.0.0\n", encoding="utf-8"
    )
    err = _one_line_refusal(path).stderr
    assert f"{path}:3: push:" in err and "export" in err


@pytest.mark.parametrize(
    "text, line, key",
    [
        ("generate:\n  model: openai/x\n  model: openai/y\n", 3, "generate.model"),
        ("generate:\n  model: openai/x\nlimits: {}\ngenerate: {}\n", 4, "generate"),
        ("validation:\n  rule_options:\n    length: {min_words: 3, min_words: 9}\n", 3,
         "validation.rule_options.length.min_words"),
    ],
)  # fmt: skip
def test_a_duplicate_key_is_one_line_naming_it(tmp_path, text, line, key):
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    err = _one_line_refusal(path).stderr
    assert f"{path}:{line}: duplicate key '{key}'" in err


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_custom_validator_that_cannot_be_imported_fails_before_any_call(
    run_cli, tmp_path, dry_run
):
    with FakeLLMServer() as server:
        recipe = _recipe(
            tmp_path,
            server,
            _seeds(tmp_path / "s.jsonl"),
            validation={"custom_validators": ["no_such_module_dvsynth:check"]},
        )
        path = _write(tmp_path / "r.yaml", recipe)
        result = run_cli("run", path, *(["--dry-run"] if dry_run else ["--quiet"]))
        assert server.total_requests == 0
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert str(path) in result.err and "validation.custom_validators" in result.err
    assert "no_such_module_dvsynth" in result.err
    assert not (tmp_path / "run").exists()
