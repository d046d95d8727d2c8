"""Helpers for the viewer and audit tests: a validated run with hostile passages, and
pages fetched through aiohttp's test client (no browser, no port of our own)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import generate_args, validate_args, write_jsonl

TOKEN = "test-token"
HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(2)> </textarea>"
CLI = [sys.executable, "-m", "dvsynth.cli"]


def make_run(root: Path, count: int = 30, *validate_extra: str) -> Path:
    """A validated run: judge rejections every tenth seed (3, 13, ...), a hostile
    passage and query in seed 5, a bootstrap-mode run (the seeds have no instruction)."""
    from dvsynth.testing import FakeLLMServer

    rows = []
    for i in range(count):
        pos, neg = f"kwp{i} passage about topic {i}", f"kwn{i} other passage {i}"
        if i % 10 == 3:
            neg += f" kwp{i}"  # view a admits doc_b: the judge rejects the pair
        query = f"query number {i}"
        if i == 5:
            pos += " " + HOSTILE
            query += " " + HOSTILE
        rows.append(
            {
                "id": f"s{i:02d}",
                "query": query,
                "positive": pos,
                "negative": neg,
                "other_negatives": [f"unrelated passage {i} {HOSTILE}"],
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    seeds = write_jsonl(root / "seeds.jsonl", rows)
    run = root / "run"
    with FakeLLMServer() as server:
        done = subprocess.run([*CLI, *generate_args(server, seeds, run)], capture_output=True)
        assert done.returncode == 0, done.stderr
        done = subprocess.run(
            [*CLI, *validate_args(run, server, "--no-dedup", *validate_extra)],
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr
    return run


class Pages:
    """An app behind aiohttp's test client on its own event loop, for one test: the
    same app (and its database connection) answers every request."""

    def __init__(self, app) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = TestClient(TestServer(app), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, str, dict]:
        async def go():
            response = await self.client.request(method, path, data=form)
            return response.status, await response.text(), dict(response.headers)

        return self.loop.run_until_complete(go())

    def get(self, *paths: str) -> list[tuple[int, str, dict]]:
        return [self.request("GET", p) for p in paths]

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@contextmanager
def viewing(*paths: Path) -> Iterator[Pages]:
    """`dvsynth view PATHS` as a test client."""
    from dvsynth.view.server import view_app
    from dvsynth.view.sources import Sources

    sources = Sources(list(paths))
    pages = Pages(view_app(sources, TOKEN))
    try:
        yield pages
    finally:
        pages.close()
        sources.close()


def pair_links(html: str) -> list[tuple[str, str]]:
    """(src, seed id) of every pair link on a page."""
    return re.findall(r'href="/[^"/]+/pair\?[^"]*?src=(\d+)&amp;id=([^"&]+)', html)


@contextmanager
def cli_server(*args: str) -> Iterator[subprocess.Popen]:
    """`dvsynth ARGS` (a serving command) as a child process with text pipes; killed at
    the end if the test left it running."""
    process = subprocess.Popen(
        [*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
