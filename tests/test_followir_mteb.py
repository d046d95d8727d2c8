"""FollowIR two ways: mteb's own tasks and evaluation (the leaderboard's numbers) and the
offline --followir-dir reader, on one small fixture laid out as mteb's and as jhu-clsp's
datasets are. The Hub is never reached: sockets are blocked, and mteb's dataset calls
for `mteb/*InstructionRetrieval` are answered from local folders in mteb's layout."""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from types import SimpleNamespace

import pytest

from baselines import evaluate as evaluate_script
from baselines import mteb_followir
from baselines.followir import read_subset
from dvsynth.errors import UserError
from dvsynth.evaluate.gold import BUNDLED_GOLD
from tests.followir_fixture import SUBSET_NAMES, write_followir


@pytest.fixture
def mocked_hub(monkeypatch, no_network, tmp_path):
    """mteb's `datasets` calls for its three FollowIR repos, answered from a local copy of
    the fixture in mteb's layout, and only at the revision mteb pins."""
    import datasets
    import mteb
    from mteb.abstasks import retrieval_dataset_loaders as loaders

    root = write_followir(tmp_path / "hub", layout="mteb")
    local, asked, down = {}, [], set()  # down: (repo, config) pairs the Hub fails on
    for name, task_name in mteb_followir.TASKS.items():
        dataset = mteb.get_task(task_name).metadata.dataset
        local[dataset["path"]] = (str(root / name), dataset["revision"])

    def hub(function, revision_arg: int | None = None):
        def answer(path, *args, **kwargs):
            folder, pinned = local[path]
            revision = kwargs.pop("revision", None)
            if revision_arg is not None and len(args) > revision_arg:
                revision, args = args[revision_arg], args[:revision_arg]
            assert revision == pinned, f"{path} asked at {revision}, mteb pins {pinned}"
            asked.append((path, args[:1]))
            if (path, args[:1]) in down:
                raise ConnectionError(f"Couldn't reach '{path}' on the Hub")
            return function(folder, *args, **kwargs)

        return answer

    monkeypatch.setattr(loaders, "load_dataset", hub(datasets.load_dataset))
    monkeypatch.setattr(loaders, "get_dataset_split_names", hub(datasets.get_dataset_split_names))
    monkeypatch.setattr(
        loaders, "get_dataset_config_names", hub(datasets.get_dataset_config_names, 0)
    )
    for task_name in mteb_followir.TASKS.values():  # each task reads its qrel_diff itself
        module = importlib.import_module(type(mteb.get_task(task_name)).__module__)
        monkeypatch.setattr(module, "load_dataset", hub(datasets.load_dataset))
    return SimpleNamespace(asked=asked, down=down)


def comparable(subset):
    fields = dataclasses.asdict(subset)
    fields.pop("source"), fields.pop("changed")
    changed = {q: sorted(d) for q, d in subset.changed_documents().items() if d}
    return fields, changed


# -- (a) the offline reader: both layouts give the same subsets ---------------------------


@pytest.mark.parametrize("layout", ["mteb", "mteb-jsonl"])
def test_the_reader_gives_the_same_subsets_from_both_layouts(tmp_path, layout):
    jhu = write_followir(tmp_path / "jhu")
    other = write_followir(tmp_path / layout, layout=layout)
    for name in SUBSET_NAMES:
        from_jhu, from_mteb = read_subset(jhu / name, name), read_subset(other / name, name)
        assert from_mteb.changed is not None  # mteb's qrel_diff, not recomputed
        assert len(from_jhu.queries) == 3 and any(from_jhu.changed_documents().values())
        assert comparable(from_mteb) == comparable(from_jhu)


def test_a_folder_in_neither_layout_is_one_clear_line(tmp_path, capsys):
    folder = tmp_path / "followir"
    (folder / "news21" / "stuff").mkdir(parents=True)
    with pytest.raises(UserError, match="jhu-clsp's files .* or mteb's config folders"):
        read_subset(folder / "news21", "news21")
    code = evaluate_script.main(
        ["--followir-dir", str(folder), "--out", str(tmp_path / "e"), "--no-gold"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert str(folder / "robust04") in err and "is not a folder" in err
    code = evaluate_script.main(
        ["--followir-dir", str(folder), "--out", str(tmp_path / "e"), "--subsets", "news21"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert str(folder / "news21") in err and "qrel_diff/" in err and "top_ranked.jsonl" in err


def test_an_mteb_folder_missing_a_config_names_it(tmp_path, capsys):
    folder = write_followir(tmp_path / "followir", layout="mteb")
    for path in (folder / "core17" / "qrel_diff").iterdir():
        path.unlink()
    (folder / "core17" / "qrel_diff").rmdir()
    code = evaluate_script.main(
        ["--followir-dir", str(folder), "--out", str(tmp_path / "e"), "--subsets", "core17"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "core17" in err and "qrel_diff/" in err


# -- (b) mteb's evaluation equals the offline path ---------------------------------------


def test_mteb_evaluation_equals_the_offline_path_on_the_same_fixture(
    tmp_path, mocked_hub, no_network, capsys
):
    import mteb

    out = tmp_path / "via-mteb"
    assert evaluate_script.main(["--out", str(out), "--no-gold"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["followir_source"] == {"evaluation": "mteb", "mteb_version": mteb.__version__}
    asked = {path for path, _ in mocked_hub.asked}
    assert asked == {f"mteb/{task}" for task in mteb_followir.TASKS.values()}
    assert ("mteb/Core17InstructionRetrieval", ("qrel_diff",)) in mocked_hub.asked

    offline = {}
    for layout in ("jhu", "mteb"):
        folder = write_followir(tmp_path / f"offline-{layout}", layout=layout)
        code = evaluate_script.main(
            ["--followir-dir", str(folder), "--out", str(tmp_path / layout), "--no-gold"]
        )
        assert code == 0
        offline[layout] = json.loads((tmp_path / layout / "results.json").read_text())
    assert not no_network

    for name in SUBSET_NAMES:
        got = report["followir"][name]
        task = mteb.get_task(mteb_followir.TASKS[name])
        assert (got["dataset"], got["revision"]) == (
            task.metadata.dataset["path"],
            task.metadata.dataset["revision"],
        )
        written = json.loads(open(got["result_file"]).read())  # mteb's own result file
        assert str(out / "mteb" / "results") in got["result_file"]
        assert written["task_name"] == task.metadata.name
        assert written["dataset_revision"] == task.metadata.dataset["revision"]
        (scores,) = written["scores"]["test"]
        assert scores["main_score"] == pytest.approx(got["mteb_main_score"], abs=1e-6)
        for layout in ("jhu", "mteb"):
            mine = offline[layout]["followir"][name]
            assert mine["metric"] == got["metric"]
            assert mine["p_mrr"] == pytest.approx(100 * scores["main_score"], abs=0.006)
            assert mine["score"] == pytest.approx(100 * scores["og"][got["metric"]], abs=0.006)
            assert (mine["p_mrr"], mine["score"]) == (got["p_mrr"], got["score"])
    assert report["followir"]["average"] == offline["jhu"]["followir"]["average"]
    assert "mteb 2." in (out / "results.md").read_text()


def test_a_task_mteb_fails_on_is_skipped_with_its_message(tmp_path, mocked_hub, capsys):
    # the Hub goes away after the data loaded: mteb reads qrel_diff only when scoring
    mocked_hub.down.add(("mteb/Core17InstructionRetrieval", ("qrel_diff",)))
    out = tmp_path / "eval"
    code = evaluate_script.main(["--out", str(out), "--no-gold", "--subsets", "core17"])
    err = capsys.readouterr().err.strip().splitlines()
    report = json.loads((out / "results.json").read_text())
    assert code == 0 and "Couldn't reach" in report["followir"]["core17"]["skipped"]
    assert [x for x in err if x.startswith("FollowIR core17 skipped: mteb failed")]


# -- (c) no Hub: each task skipped, one line each, no crash ------------------------------


def test_an_unreachable_hub_skips_each_task_and_exits_cleanly(tmp_path, no_network, capsys):
    gold = tmp_path / "gold.jsonl"  # a little to evaluate, so a report is written
    gold.write_text("".join(BUNDLED_GOLD.read_text().splitlines(keepends=True)[:3]))
    out = tmp_path / "eval"
    code = evaluate_script.main(["--out", str(out), "--gold", str(gold)])
    err = capsys.readouterr().err
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    for name, task_name in mteb_followir.TASKS.items():
        assert f"mteb/{task_name}@" in report["followir"][name]["skipped"]
        (line,) = [x for x in err.splitlines() if x.startswith(f"FollowIR {name} skipped")]
        assert task_name in line and line.endswith("pass --data-dir or --followir-dir")
    (line,) = [x for x in err.splitlines() if x.startswith("NanoBEIR skipped")]
    assert "sentence-transformers/NanoBEIR-en" in line and "summary" in report
    assert "average" not in report["followir"] and report["gold"]["summary"]["pairs"] == 3
    code = evaluate_script.main(["--out", str(out), "--no-gold", "--subsets", "core17"])
    assert code == 2  # nothing left to evaluate


def test_without_mteb_installed_each_task_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mteb", None)  # import mteb -> ImportError
    code = evaluate_script.main(["--out", str(tmp_path / "e"), "--no-gold", "--general", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: nothing to evaluate")
    assert len(err) == 4 and all("pip install mteb==" in line for line in err[:3])
