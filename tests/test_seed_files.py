"""Seed files read as what they are: TSV without CSV quoting, bad bytes named by line."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
from itertools import islice
from types import SimpleNamespace

import pytest

from dvsynth.errors import UserError
from dvsynth.records import Seed, SeedError
from dvsynth.seeds import SeedReader, describe_source, iter_raw_rows
from tests.conftest import MSMARCO, generate_args


def read(spec, **kwargs):
    items = list(SeedReader(str(spec), **kwargs))
    return [i for i in items if isinstance(i, Seed)], [i for i in items if isinstance(i, SeedError)]


def _passages(n: int) -> list[str]:
    """Real MS MARCO passages where the shared data is present, else our own sentences."""
    corpus = MSMARCO / "corpus.jsonl"
    if corpus.is_file():
        with corpus.open(encoding="utf-8") as handle:
            texts = [json.loads(line)["text"] for line in islice(handle, n)]
    else:
        texts = [f"Passage {i} about the water cycle and how rain forms." for i in range(n)]
    # MS MARCO's quotes are often unbalanced (cut sentences); these subsets carry none,
    # so put some in: an open quote, a quoted word, a field that starts with a quote.
    texts[1] = f'He said "hi. {texts[1]}'
    texts[2] = f'The so-called "greenhouse" effect. {texts[2]}'
    texts[3] = f'"{texts[3]}'
    return texts


def _tsv(rows: list[list[str]]) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


def test_tsv_quotes_are_text_not_csv_quoting(tmp_path):
    texts = _passages(8)
    header = ["id", "query", "positive", "negative"]
    rows = [[f"s{i}", f"query {i}", texts[i], texts[i + 4]] for i in range(4)]
    path = tmp_path / "seeds.tsv"
    path.write_text(_tsv([header, *rows]), encoding="utf-8")
    seeds, errors = read(path)
    assert errors == []
    assert [(s.seed_id, s.positive.text, s.negative.text) for s in seeds] == [
        (r[0], r[2], r[3]) for r in rows
    ]
    raw = [r.location for r in iter_raw_rows(str(path))]
    assert raw == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    # The same file gzipped reads the same.
    gz = tmp_path / "seeds.tsv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    where = {"source", "location"}
    assert [s.model_dump(exclude=where) for s in read(gz)[0]] == [
        s.model_dump(exclude=where) for s in seeds
    ]


def test_tsv_row_with_the_wrong_number_of_fields_is_a_bad_row(tmp_path):
    path = tmp_path / "seeds.tsv"
    path.write_text(
        _tsv(
            [
                ["query", "positive", "negative"],
                ["q1", "a", "b"],
                ["q2", "a\tstray tab", "b"],
                ["q3", "a"],
                [],
                ["q4", "a", "b"],
            ]
        ),
        encoding="utf-8",
    )
    seeds, errors = read(path)
    assert [s.query for s in seeds] == ["q1", "q4"]
    assert [e.location for e in errors] == [f"{path}:3", f"{path}:4"]
    assert errors[0].reason == "4 tab-separated fields where the header has 3"


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "tsv"])
def test_a_byte_that_is_not_utf8_is_a_bad_row_naming_its_line(tmp_path, suffix):
    good = {"query": "q", "positive": "caf\u00e9 text", "negative": "n"}
    if suffix == "jsonl":
        lines = [json.dumps(good, ensure_ascii=False).encode()] * 3
        lines[1] = lines[1].replace("caf\u00e9".encode(), b"caf\xe9")  # Latin-1, not UTF-8
    else:
        sep = "," if suffix == "csv" else "\t"
        lines = [sep.join(good).encode()] + [sep.join(good.values()).encode()] * 3
        lines[2] = lines[2].replace("caf\u00e9".encode(), b"caf\xe9")
    path = tmp_path / f"bad.{suffix}"
    path.write_bytes(b"\n".join(lines) + b"\n")
    seeds, errors = read(path)
    assert len(seeds) == 2 and all(s.positive.text == "caf\u00e9 text" for s in seeds)
    [error] = errors
    assert error.location == (f"{path}:2" if suffix == "jsonl" else f"{path}:3")
    assert error.reason.startswith("not UTF-8 text (byte 0xe9 at column ")


@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_a_header_that_is_not_utf8_is_one_user_error(tmp_path, suffix):
    path = tmp_path / f"bad.{suffix}"
    sep = b"," if suffix == "csv" else b"\t"
    path.write_bytes(sep.join([b"qu\xe9ry", b"positive", b"negative"]) + b"\nq,a,b\n")
    with pytest.raises(UserError, match=rf"bad\.{suffix}:1: header is not UTF-8 text"):
        read(path)


def _generate(tmp_path, seeds, *extra, quiet: bool = True):
    from dvsynth.testing import FakeLLMServer

    with FakeLLMServer() as server:
        args = generate_args(server, seeds, tmp_path / "run", *extra)
        if not quiet:
            args.remove("--quiet")
        cmd = [sys.executable, "-m", "dvsynth.cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_cli_reports_the_bad_byte_with_file_and_line(tmp_path):
    rows = [{"id": f"s{i}", "query": f"q{i}", "positive": "p", "negative": "n"} for i in range(3)]
    lines = [json.dumps(r).encode() for r in rows]
    lines[1] = lines[1].replace(b'"q1"', b'"q\xff1"')
    seeds = tmp_path / "bad.jsonl"
    seeds.write_bytes(b"\n".join(lines) + b"\n")
    # By default the row is skipped and named, like any bad row; the others are generated.
    result = _generate(tmp_path, seeds, quiet=False)
    assert result.returncode == 0, result.stderr
    assert f"skipped {seeds}:2: not UTF-8 text (byte 0xff at column 25)" in result.stderr
    # --strict stops at it: one line naming file and line, exit 2, no traceback.
    result = _generate(tmp_path, seeds, "--strict")
    assert result.returncode == 2
    assert f"{seeds}:2: not UTF-8 text (byte 0xff" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


class _FakeHub:
    """HfApi's dataset_info, answering with `answer` (a sha, an exception, or a wait)."""

    def __init__(self, answer):
        self.answer = answer
        self.calls: list[tuple] = []

    def __call__(self, *args, **kwargs):
        return self  # stands in for the HfApi class

    def dataset_info(self, repo_id, revision=None, timeout=None, **kwargs):
        self.calls.append((repo_id, revision, timeout))
        if isinstance(self.answer, Exception):
            raise self.answer
        if isinstance(self.answer, threading.Event):
            self.answer.wait(30)
        return SimpleNamespace(sha=self.answer)


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    from dvsynth.seeds import readers as seeds

    def install(answer):
        hub = _FakeHub(answer)
        monkeypatch.setattr(huggingface_hub, "HfApi", hub)
        return hub

    seeds._hub_revision.cache_clear()
    yield install
    seeds._hub_revision.cache_clear()


def test_a_hub_source_is_fingerprinted_and_read_at_its_revision(fake_hub, monkeypatch):
    import datasets

    hub = fake_hub("9f" * 20)
    assert describe_source("some-org/seeds") == {
        "kind": "hub",
        "id": "some-org/seeds",
        "revision": "9f" * 20,
    }
    loaded = []

    def fake_load_dataset(path, split=None, streaming=False, revision=None, **kwargs):
        loaded.append((path, split, revision))
        return iter([{"query": "q", "positive": "p", "negative": "n"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    seeds, _ = read("some-org/seeds")
    assert loaded == [("some-org/seeds", "train", "9f" * 20)]  # the data the manifest names
    assert [c[0] for c in hub.calls] == ["some-org/seeds"]  # looked up once per process
    assert hub.calls[0][2] is not None  # never without a timeout


def test_an_unreachable_hub_records_no_revision_and_does_not_stall(fake_hub, monkeypatch):
    from dvsynth.seeds import readers as seeds

    fake_hub(ConnectionError("no route to host"))
    assert describe_source("some-org/seeds") == {
        "kind": "hub",
        "id": "some-org/seeds",
        "revision": None,
        "revision_error": "revision not resolved (ConnectionError)",
    }
    seeds._hub_revision.cache_clear()
    monkeypatch.setattr(seeds, "HUB_TIMEOUT_S", 0.2)
    never = threading.Event()
    fake_hub(never)
    started = time.monotonic()
    found = describe_source("other-org/seeds")
    never.set()
    assert time.monotonic() - started < 5
    assert found["revision"] is None and "no answer within 0.2s" in found["revision_error"]
