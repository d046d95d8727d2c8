"""Seed readers and adapters on small fixtures written for these tests."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dvsynth.errors import UserError
from dvsynth.records import Seed, SeedError
from dvsynth.seeds import BUNDLED_SAMPLE, SeedReader, parse_mapping
from tests.conftest import FIXTURES, write_jsonl


def read(spec, **kwargs):
    items = list(SeedReader(str(spec), **kwargs))
    return [i for i in items if isinstance(i, Seed)], [i for i in items if isinstance(i, SeedError)]


def test_triples_accept_text_and_objects_and_hash_missing_ids():
    seeds, errors = read(FIXTURES / "triples.jsonl")
    assert errors == []
    assert [s.seed_id for s in seeds[:2]] == ["r1", "b1"]
    reverse, bootstrap, no_id = seeds
    assert reverse.instruction == "Only human laboratory studies; no surveys."
    assert reverse.positive.doc_id == "p1" and reverse.other_negatives[0].doc_id == "o1"
    assert bootstrap.instruction is None
    assert bootstrap.positive.text.startswith("Repot") and len(bootstrap.positive.doc_id) == 16
    # Without an id the seed id is a content hash: the same on every read.
    assert no_id.seed_id == read(FIXTURES / "triples.jsonl")[0][2].seed_id
    assert len(no_id.seed_id) == 16


def test_promptriever_keeps_only_rows_with_instruction_negatives():
    reader = SeedReader(str(FIXTURES / "promptriever.jsonl"))
    seeds = list(reader)
    assert len(seeds) == 1 and reader.filtered == 2
    seed = seeds[0]
    assert isinstance(seed, Seed)
    assert seed.query == "what is a roth ira"
    assert seed.instruction == "Explain it for a teenager opening a first account."
    assert seed.positive.doc_id == "d1"
    assert seed.negative.doc_id == "d2"  # the first instruction negative
    assert [d.doc_id for d in seed.other_negatives] == ["d3"]
    assert seed.seed_id.startswith("q1-")


def test_bad_rows_are_reported_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"query": "ok", "positive": "a", "negative": "b"}\n'
        "not json\n"
        '{"query": "", "positive": "a", "negative": "b"}\n'
        '{"query": "q", "positive": 7, "negative": "b"}\n'
        '{"query": "q", "positive": {"title": "t"}, "negative": "b"}\n'
        "[1, 2]\n",
        encoding="utf-8",
    )
    seeds, errors = read(path)
    assert len(seeds) == 1
    assert [e.location for e in errors] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6)]
    assert "invalid JSON" in errors[0].reason
    assert errors[1].reason.startswith("query:")
    assert "positive: expected text" in errors[2].reason
    assert "positive: missing or empty 'text'" in errors[3].reason


def test_mapping_renames_columns_and_unknown_column_is_a_user_error(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"question": "q1", "pos": "a", "neg": "b"}])
    mapping = parse_mapping("query=question,positive=pos,negative=neg")
    seeds, _ = read(path, mapping=mapping)
    assert seeds[0].query == "q1" and seeds[0].negative.text == "b"
    with pytest.raises(UserError, match=r"column 'nope' \(from --map query=nope\) not found"):
        read(path, mapping={"query": "nope"})
    with pytest.raises(UserError, match=r"no column 'query'.*--map query=<column>"):
        read(path)
    with pytest.raises(UserError, match="unknown field 'title'"):
        parse_mapping("title=x")
    with pytest.raises(UserError, match="is not field=column"):
        parse_mapping("query")


def test_csv_parquet_and_hf_folder_give_the_same_seeds(tmp_path):
    rows = [
        {
            "id": f"s{i}",
            "query": f"query {i}",
            "instruction": "Only 2020 data." if i % 2 else "",
            "positive": f"positive text {i}",
            "negative": f"negative text {i}",
        }
        for i in range(5)
    ]
    with (tmp_path / "s.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    expected, _ = read(write_jsonl(tmp_path / "s.jsonl", rows))
    for spec in ("s.csv", "s.parquet", "hf"):
        seeds, errors = read(tmp_path / spec)
        assert errors == [], spec
        where = {"location"}  # where a row was read differs by format, by design
        assert [s.model_dump(exclude=where) for s in seeds] == [
            {**e.model_dump(exclude=where), "source": str(tmp_path / spec)} for e in expected
        ], spec
    assert expected[1].instruction == "Only 2020 data." and expected[0].instruction is None


def test_reader_streams_lazily(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w") as handle:
        for i in range(10_000):
            handle.write(json.dumps({"query": f"q{i}", "positive": "p", "negative": "n"}) + "\n")
    iterator = iter(SeedReader(str(path)))
    first = next(iterator)
    assert isinstance(first, Seed) and first.query == "q0"


def test_reverse_mode_requires_an_instruction():
    seeds, errors = read(FIXTURES / "triples.jsonl", require_instruction=True)
    assert [s.seed_id for s in seeds] == ["r1"]
    assert len(errors) == 2 and "required by --mode reverse" in errors[0].reason


def test_missing_source_and_unknown_type_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such seed file"):
        read(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="unsupported seed file type"):
        read(tmp_path / "x.txt")


def test_bundled_sample_covers_both_modes_and_all_levers():
    seeds, errors = read(BUNDLED_SAMPLE)
    assert errors == []
    assert len(seeds) >= 40
    assert len({s.seed_id for s in seeds}) == len(seeds)
    assert sum(s.instruction is None for s in seeds) >= 8
    assert sum(s.instruction is not None for s in seeds) >= 32
    levers = {json.loads(line)["lever"] for line in BUNDLED_SAMPLE.read_text().splitlines()}
    assert levers >= {
        "scope",
        "time",
        "geography",
        "audience",
        "format",
        "source",
        "methodology",
        "exclusion",
    }


def test_folder_of_data_files_is_read_file_by_file(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    rows = [{"query": f"q{i}", "positive": "p", "negative": "n"} for i in range(3)]
    write_jsonl(folder / "train.jsonl", rows)
    seeds, errors = read(folder)
    assert errors == [] and [s.query for s in seeds] == ["q0", "q1", "q2"]


def test_hub_id_is_streamed_with_the_split(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, split=None, streaming=False, **kwargs):
        calls.append((path, split, streaming))
        return iter([{"query": "from the hub", "positive": "p", "negative": "n"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    seeds, errors = read("some-org/some-seeds", split="dev")
    assert calls == [("some-org/some-seeds", "dev", True)]
    assert seeds[0].query == "from the hub" and errors == []

    def unreachable(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(UserError, match="some-org/x: cannot open Hugging Face Hub dataset"):
        read("some-org/x")
