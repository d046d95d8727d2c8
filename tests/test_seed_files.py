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
from tests.conftest import FIXTURES, MSMARCO, generate_args, read_rows


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


# ---------------------------------------------------------------- one bad row is one row


def _csv_rows(n: int) -> list[list[str]]:
    return [[f"s{i}", f"query {i}", f"positive {i}", f"negative {i}"] for i in range(n)]


def _write_csv(path, rows: list[list[str]]) -> None:
    lines = ["id,query,positive,negative", *(",".join(row) for row in rows)]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_a_stray_csv_quote_is_one_bad_row_where_it_starts(tmp_path):
    rows = _csv_rows(1000)
    rows[9][2] = '"He said hi'  # line 11 opens a quoted field that never closes
    rows[500][2] = '"a passage, quoted, over\ntwo lines"'  # a real multi-line field
    rows[700][3] = 'he said "yes'  # a quote inside a field is text, as in RFC 4180 readers
    path = tmp_path / "stray.csv"
    _write_csv(path, rows)
    seeds, errors = read(path)
    assert [e.location for e in errors] == [f"{path}:11"]
    assert 'a quote (") here opens a field' in errors[0].reason
    assert len(seeds) == 999 and "s9" not in {s.seed_id for s in seeds}
    multi = next(s for s in seeds if s.seed_id == "s500")
    assert multi.positive.text == "a passage, quoted, over\ntwo lines"
    assert multi.location == f"{path}:502"  # where the record starts
    assert next(s for s in seeds if s.seed_id == "s701").location == f"{path}:704"


def test_a_csv_quote_that_swallows_more_than_a_field_holds_is_one_bad_row(tmp_path, monkeypatch):
    from dvsynth.seeds import text

    monkeypatch.setattr(text, "MAX_CSV_FIELD", 200)  # the field limit stops the swallowing
    rows = _csv_rows(40)
    rows[2][1] = '"open'
    rows[30][1] = '"and again'
    path = tmp_path / "stray.csv"
    _write_csv(path, rows)
    seeds, errors = read(path)
    assert [e.location for e in errors] == [f"{path}:4", f"{path}:32"]
    assert len(seeds) == 38


def test_a_row_the_adapter_cannot_read_is_a_bad_row_not_a_crash(tmp_path, monkeypatch):
    lines = (FIXTURES / "promptriever.jsonl").read_text(encoding="utf-8").splitlines()
    good = json.loads(lines[0])
    without_id = {k: v for k, v in good.items() if k != "query_id"}
    path = tmp_path / "pr.jsonl"
    path.write_text(
        "".join(json.dumps(r) + "\n" for r in (good, without_id, {**good, "query_id": 7})),
        encoding="utf-8",
    )
    seeds, errors = read(path)
    assert [(e.location, e.reason) for e in errors] == [(f"{path}:2", "query_id: missing or empty")]
    assert [s.seed_id.split("-")[0] for s in seeds] == ["q1", "7"]
    # Whatever an adapter raises on one row is that row's error; the others are read.
    from dvsynth.seeds import adapters

    real = adapters.adapt_promptriever

    def buggy(data, source):
        if data["query_id"] == 7:
            raise KeyError("boom")
        return real(data, source)

    monkeypatch.setattr(adapters, "adapt_promptriever", buggy)
    seeds, errors = read(path)
    assert [e.location for e in errors] == [f"{path}:2", f"{path}:3"]
    assert errors[1].reason == "cannot be read as a seed (KeyError: 'boom')"
    assert len(seeds) == 1


def test_a_promptriever_row_without_query_id_does_not_stop_the_run(run_cli, fake_server, tmp_path):
    good = json.loads((FIXTURES / "promptriever.jsonl").read_text(encoding="utf-8").splitlines()[0])
    rows = [{**good, "query_id": f"q{i}", "only_query": f"query {i}"} for i in range(5)]
    del rows[2]["query_id"]
    seeds = tmp_path / "pr.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for _ in range(2):  # and the rerun goes past it too
        result = run_cli(*generate_args(fake_server, seeds, tmp_path / "run"))
        assert result.code == 0, result.err
        assert "Traceback" not in result.err
    assert len(read_rows(tmp_path / "run")) == 4


@pytest.mark.parametrize("layout", ["train.jsonl", "data/train-00000-of-00001.jsonl"])
def test_a_folder_reads_its_files_by_the_rule_of_a_file(tmp_path, layout):
    lines = [
        json.dumps({"id": f"s{i}", "query": f"q{i}", "positive": "p", "negative": "n"})
        for i in range(21)
    ]
    lines[4] = lines[4][:-3]  # one bad JSON line
    folder = tmp_path / "folder"
    data = folder / layout
    data.parent.mkdir(parents=True)
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    other = data.with_name(data.name.replace("train", "test"))  # another split
    other.write_text(lines[0] + "\n", encoding="utf-8")
    single = tmp_path / "single.jsonl"
    single.write_text(data.read_text(encoding="utf-8"), encoding="utf-8")
    from_folder, from_file = read(folder), read(single)
    assert [e.location for e in from_folder[1]] == [f"{data}:5"]
    assert [e.reason for e in from_folder[1]] == [e.reason for e in from_file[1]]
    assert [s.seed_id for s in from_folder[0]] == [s.seed_id for s in from_file[0]]
    assert len(from_folder[0]) == 20
    assert [s.seed_id for s in read(folder, split="test")[0]] == ["s0"]
    with pytest.raises(UserError, match=r"folder: no split 'dev' \(splits: train, test\)"):
        read(folder, split="dev")


# ---------------------------------------------------------------- a source with no seed


def _seed_line() -> str:
    return json.dumps({"id": "s0", "query": "q", "positive": "p", "negative": "n"})


ZERO_SEEDS = {
    "empty.jsonl": (b"", "no seed rows"),
    "header.csv": (b"id,query,positive,negative\n", "no seed rows"),
    "blank.jsonl": (b"\n\n  \n", "no seed rows"),
    "bad.jsonl": (b"not json\n{\n", "none of its 2 rows is a valid seed (first: "),
    "nobom16.jsonl": (_seed_line().encode("utf-16-le") + b"\n\x00", "UTF-16 text without a"),
}


@pytest.mark.parametrize("name", sorted(ZERO_SEEDS))
def test_a_source_without_a_seed_is_one_line_and_exit_2(run_cli, fake_server, tmp_path, name):
    content, message = ZERO_SEEDS[name]
    seeds = tmp_path / name
    seeds.write_bytes(content)
    result = run_cli(*generate_args(fake_server, seeds, tmp_path / "run"))
    assert result.code == 2
    assert result.err.startswith(f"error: {seeds}: ")
    assert message in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # no empty run left behind
    assert fake_server.total_requests == 0


@pytest.mark.parametrize(
    "name, encode",
    [
        ("array.json", lambda rows: json.dumps(rows).encode()),  # pandas' orient="records"
        ("pretty.json", lambda rows: json.dumps(rows, indent=2).encode()),
        (
            "utf16.jsonl",
            lambda rows: "".join(json.dumps(r) + "\r\n" for r in rows).encode("utf-16"),
        ),
        ("utf16.csv", lambda rows: _csv_text(rows).encode("utf-16")),
        ("bom8.csv", lambda rows: _csv_text(rows).encode("utf-8-sig")),
    ],
)
def test_a_json_array_and_utf16_files_are_read_as_their_seeds(tmp_path, name, encode):
    rows = [
        {"id": f"s{i}", "query": f"caf\u00e9 {i}", "positive": "p", "negative": "n"}
        for i in range(3)
    ]
    path = tmp_path / name
    path.write_bytes(encode(rows))
    seeds, errors = read(path)
    assert errors == []
    assert [(s.seed_id, s.query) for s in seeds] == [(r["id"], r["query"]) for r in rows]


def _csv_text(rows: list[dict]) -> str:
    return "".join(",".join(r) + "\r\n" for r in [rows[0].keys(), *(r.values() for r in rows)])


def test_a_json_array_with_a_bad_element_names_it_and_reads_the_others(tmp_path):
    path = tmp_path / "array.json"
    good = {"query": "q", "positive": "p", "negative": "n"}
    path.write_text(json.dumps([good, [1, 2], good]), encoding="utf-8")
    seeds, errors = read(path)
    assert len(seeds) == 2
    assert [(e.location, e.reason) for e in errors] == [
        (f"{path}:row 2", "a row must be a JSON object")
    ]
    path.write_text('[\n{"query": "q"},\n{"query": \n]\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"array\.json:4: invalid JSON"):
        read(path)
