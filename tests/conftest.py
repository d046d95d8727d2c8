"""Shared fixtures: the fake OpenAI-compatible server and an in-process CLI runner."""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dvsynth.testing import FakeLLMServer

FIXTURES = Path(__file__).parent / "fixtures"
MSMARCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "msmarco-1743"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def fake_server():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def batch_server():
    """The fake server with a fake of OpenAI's Files + Batches API on it: (server, fake)."""
    from dvsynth.fakes.openai_batches import FakeOpenAIBatches

    server = FakeLLMServer()
    fake = FakeOpenAIBatches(server, polls_to_complete=1)
    with server:
        yield server, fake


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `dvsynth ARGS` in this process through the real entry point; return its exit."""
    from dvsynth.cli import main

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["dvsynth", *map(str, args)])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def generate_args(server, seeds, out, *extra, model: str = "openai/fake") -> list[str]:
    """`dvsynth generate` arguments for a run against the fake server, quiet."""
    return [
        "generate",
        "--seeds",
        str(seeds),
        "--model",
        model,
        "--api-base",
        server.api_base,
        "--out",
        str(out),
        "--quiet",
        *map(str, extra),
    ]


def validate_args(run, server, *extra, judge: str = "openai/judge") -> list[str]:
    """`dvsynth validate` arguments for a judge on the fake server, quiet, no retries."""
    return [
        "validate",
        str(run),
        "--judge-model",
        judge,
        "--judge-api-base",
        server.api_base,
        "--max-retries",
        "0",
        "--quiet",
        *map(str, extra),
    ]


def read_rows(run_dir: Path) -> list[dict]:
    """The committed rows of a run directory, straight from its SQLite file."""
    with sqlite3.connect(run_dir / "dvsynth.sqlite") as db:
        return [json.loads(r) for (r,) in db.execute("SELECT record FROM rows ORDER BY ordinal")]


def comparable_rows(rows: list[dict]) -> list[dict]:
    """Rows without what differs between two identical runs (time, latency, cache), by seed."""
    for row in rows:
        for key in ("created_at", "latency_s", "cached"):
            row["provenance"].pop(key)
    return sorted(rows, key=lambda r: r["seed_id"])


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_seeds(path: Path, count: int) -> Path:
    """`count` distinct reverse-mode seeds (ids s0..), for runs that must last a while."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            row = {
                "id": f"s{i}",
                "query": f"effects of caffeine on sleep, case {i}",
                "instruction": "Only human laboratory studies; no surveys.",
                "positive": {
                    "doc_id": f"p{i}",
                    "text": f"In a sleep laboratory {i} adults slept less.",
                },
                "negative": {
                    "doc_id": f"n{i}",
                    "text": f"An online survey of {i} coffee drinkers.",
                },
            }
            f.write(json.dumps(row) + "\n")
    return path


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Offline as a machine without the Hub is: any connection attempt fails and is
    recorded; the datasets cache is empty."""
    import datasets
    import huggingface_hub

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb-cache"))
    return attempts
