"""`dvsynth export-gold` and `--gold` as a folder or Hub id: offline, the Hub mocked."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

from dvsynth.evaluate.gold import BUNDLED_GOLD, load_gold, read_gold
from dvsynth.publish.gold_dataset import card_metadata
from tests.test_gold import fixture_pairs, write_gold
from tests.test_publish import TOKEN, FakeHfApi

ROOT = Path(__file__).resolve().parents[1]
MSMARCO_GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    """No Hub, and datasets' cache in the test's folder (it was imported already, so
    its config is patched rather than the environment alone)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


@pytest.fixture
def msmarco_head(tmp_path) -> Path:
    """The first 5 msmarco gold pairs, under the file name the repository uses."""
    path = tmp_path / "src" / "msmarco-gold.jsonl"
    path.parent.mkdir()
    lines = MSMARCO_GOLD.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:5]), encoding="utf-8")
    return path


def _summary(result) -> dict:
    assert result.code == 0, result.err
    data = json.loads(result.out)
    data.pop("model")
    return data


def test_export_gold_loads_per_config_and_the_card_counts_the_rows(run_cli, tmp_path, msmarco_head):
    out = tmp_path / "gold-ds"
    result = run_cli(
        "export-gold", out, "--gold", "bundled", "--gold", msmarco_head, "--no-baseline"
    )
    assert result.code == 0, result.err
    pairs = datasets.load_dataset(str(out), "pairs", split="test")
    corrupt = datasets.load_dataset(str(out), "corrupt", split="test")
    sample = list(read_gold(BUNDLED_GOLD))
    head = list(read_gold(msmarco_head))
    assert len(pairs) == len(sample) + len(head) == 53
    assert len(corrupt) == sum(len(p.corrupt) for p in sample + head) == 106
    assert Counter(pairs["gold_set"]) == {"sample": 48, "msmarco": 5}
    # A corrupt row is its pair with instruction_b broken, as calibrate feeds it.
    by_id = {p.gold_id: p for p in sample + head}
    first = corrupt[0]
    gold = by_id[first["gold_id"]]
    assert first["instruction_b"] == gold.corrupt[first["variant"]].instruction_b
    assert first["kind"] == gold.corrupt[first["variant"]].kind
    assert first["doc_b"] == gold.doc_b.model_dump() and first["query"] == gold.query

    card = DatasetCard.load(out / "README.md")
    configs = card.data.to_dict()["configs"]
    assert [c["config_name"] for c in configs] == ["pairs", "corrupt"]
    assert card.data.to_dict()["license"] == "other"  # msmarco carries MS MARCO's terms
    meta = card_metadata(out)
    for name in ("sample", "msmarco"):
        rows = pairs.filter(lambda r, n=name: r["gold_set"] == n)
        bad = corrupt.filter(lambda r, n=name: r["gold_set"] == n)
        counts = meta["sets"][name]
        assert counts["pairs"] == len(rows) and counts["corrupt"] == len(bad)
        assert counts["levers"] == dict(Counter(rows["lever"]))
        assert counts["styles"] == dict(Counter(rows["style"]))
        assert counts["corrupt_kinds"] == dict(Counter(bad["kind"]))
    assert meta["sets"]["all"]["levers"] == dict(Counter(pairs["lever"]))
    assert meta["baseline"] == {"computed": False}
    assert "Not computed" in card.text and "non-commercial research use" in card.text
    assert "| scope | 6 | 1 | 7 |" in card.text  # the lever table: sample, msmarco, all

    # The folder reads back as exactly the records it was written from.
    assert load_gold(str(out)) == sample + head


def test_the_bundled_set_alone_is_apache_and_calibrate_reads_the_folder(run_cli, tmp_path):
    out = tmp_path / "gold-ds"
    assert run_cli("export-gold", out, "--no-baseline").code == 0
    assert DatasetCard.load(out / "README.md").data.to_dict()["license"] == "apache-2.0"
    from_file = run_cli("calibrate", "--no-judge", "--gold", BUNDLED_GOLD, "--json")
    from_folder = run_cli("calibrate", "--no-judge", "--gold", out, "--json")
    assert from_file.code == 0 and from_folder.code == 0, from_folder.err
    # recall per corrupt kind only matches if the corrupt config joined back in order
    assert json.loads(from_folder.out) == json.loads(from_file.out)
    assert json.loads(from_folder.out)["corrupt_variants"] == 96


def test_baseline_in_the_card_equals_eval_retriever_on_folder_and_file(run_cli, tmp_path):
    gold = write_gold(tmp_path / "fixture-gold.jsonl", fixture_pairs())
    out = tmp_path / "gold-ds"
    result = run_cli("export-gold", out, "--gold", gold)
    assert result.code == 0, result.err
    from_file = _summary(run_cli("eval-retriever", "--gold", gold, "--json"))
    from_folder = _summary(run_cli("eval-retriever", "--gold", out, "--json"))
    assert from_folder == from_file and from_file["pairs"] == 6
    baseline = card_metadata(out)["baseline"]
    assert baseline["computed"] is True and "all-MiniLM-L6-v2" in baseline["model"]
    assert baseline["scores"]["fixture"] == from_file  # set name: the file's stem
    assert baseline["scores"]["all"] == from_file
    text = (out / "README.md").read_text()
    assert f"| fixture | 6 | {from_file['accuracy_view_a']} |" in text


def test_a_hub_id_loads_through_datasets_at_its_revision(run_cli, tmp_path, monkeypatch):
    out = tmp_path / "gold-ds"
    assert run_cli("export-gold", out, "--no-baseline").code == 0
    real = datasets.load_dataset
    calls = []

    def hub(path, name=None, revision=None, **kwargs):  # the Hub repo is the local folder
        calls.append((path, name, revision))
        assert path == "me/dv-gold", path
        return real(str(out), name, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", hub)
    from_hub = run_cli("calibrate", "--no-judge", "--gold", "me/dv-gold@v1.0.0", "--json")
    from_file = run_cli("calibrate", "--no-judge", "--json")
    assert from_hub.code == 0, from_hub.err
    assert json.loads(from_hub.out) == json.loads(from_file.out)
    assert calls == [("me/dv-gold", "pairs", "v1.0.0"), ("me/dv-gold", "corrupt", "v1.0.0")]


def test_an_unreachable_hub_id_is_one_line(run_cli, monkeypatch):
    def unreachable(path, name=None, **kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    result = run_cli("eval-retriever", "--gold", "me/dv-gold")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: --gold me/dv-gold: cannot load config 'pairs' (ConnectionError: Couldn't "
        "reach 'me/dv-gold' on the Hub second line)"
    ]


@pytest.mark.parametrize(
    "value, message",
    [
        ("no-such-gold", "--gold no-such-gold: not a gold JSONL file"),
        ("missing/gold.jsonl", "--gold missing/gold.jsonl: cannot read"),
    ],
)
def test_a_bad_gold_value_exits_2_with_one_line(value, message):
    done = subprocess.run(
        [sys.executable, "-m", "dvsynth.cli", "eval-retriever", "--gold", value],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_a_folder_that_is_not_a_gold_export_is_one_line(run_cli, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    result = run_cli("calibrate", "--no-judge", "--gold", tmp_path)
    assert result.code == 2 and "folder is not a gold dataset" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_the_same_gold_id_twice_is_refused(run_cli, tmp_path):
    out = tmp_path / "gold-ds"
    result = run_cli("export-gold", out, "--gold", "bundled", "--gold", BUNDLED_GOLD)
    assert result.code == 2 and "gold_id sample-01 appears twice" in result.err
    assert not out.exists()


def test_export_gold_push_commits_data_and_card_and_tags(run_cli, tmp_path, monkeypatch):
    import huggingface_hub

    api = FakeHfApi(files=["corrupt/test-00001.parquet", "triplets/train-00000.parquet"])
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: api)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = tmp_path / "gold-ds"
    args = ["export-gold", out, "--no-baseline", "--push", "me/dv-gold", "--version", "1.0.0"]
    result = run_cli(*args)
    assert result.code == 0, result.err
    names = [c[0] for c in api.calls]
    assert names == ["list_repo_refs", "create_repo", "create_commit", "create_tag"]
    operations = api.calls[2][2]
    added = sorted(op.path_in_repo for op in operations if hasattr(op, "path_or_fileobj"))
    deleted = sorted(op.path_in_repo for op in operations if not hasattr(op, "path_or_fileobj"))
    assert added == ["README.md", "corrupt/test-00000.parquet", "pairs/test-00000.parquet"]
    assert deleted == ["corrupt/test-00001.parquet"]  # a gold config's stale file, nothing else
    assert api.calls[3][2] == "v1.0.0"
    assert "me/dv-gold@v1.0.0" in result.out
    card = (out / "README.md").read_text()
    assert "me/dv-gold" in card and 'revision="v1.0.0"' in card
    assert all(TOKEN not in p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())
    again = run_cli(*args)  # versions are immutable: the same tag is refused, one line
    assert again.code == 2 and "already has tag v1.0.0" in again.err
