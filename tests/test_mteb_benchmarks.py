"""evaluate.py's two halves from local copies (--data-dir): the instruction-following
benchmarks (FollowIR, InstructIR, IFIR, mFollowIR) and a general mteb task through
mteb's own tasks, NanoBEIR through sentence-transformers' own evaluator. The Hub is never
reached; the same tasks run with their Hub ids answered from the same copies give the
same numbers at the revisions mteb pins, and FollowIR equals the offline reader."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from baselines import evaluate as evaluate_script
from baselines.mteb_tasks import BENCHMARKS, benchmark_tasks
from tests.followir_fixture import SUBSET_NAMES, write_followir
from tests.mteb_fixture import hub_answered_from, nanobeir_configs, write_copies

ROOT = Path(__file__).resolve().parents[1]
NANO = ["--nanobeir-datasets", "msmarco", "scifact"]
#: one task of each kind, through both --benchmark and --mteb-task, both halves
MIXED = [
    "--benchmark", "followir", "--subsets", "core17", "--benchmark", "instructir",
    "--benchmark", "mfollowir", "--mteb-task", "IFIRAila", "--mteb-task", "SciFact",
    *NANO, "--no-gold",
]  # fmt: skip


def run(out: Path, *args: str) -> dict:
    assert evaluate_script.main(["--out", str(out), *args]) == 0
    return json.loads((out / "results.json").read_text())


def strip_local(entry: dict) -> dict:
    drop = {"local_copy", "local_revision", "result_file"}
    return {k: v for k, v in entry.items() if k not in drop}


def test_local_copies_give_mteb_s_numbers_at_the_pinned_revisions(
    tmp_path, no_network, monkeypatch, capsys
):
    import mteb

    copies = write_copies(tmp_path / "copies")
    local = run(tmp_path / "local", "--data-dir", str(copies), *MIXED)
    asked = hub_answered_from(monkeypatch, copies)
    hub = run(tmp_path / "hub", *MIXED)
    assert not no_network  # nothing tried the network

    names = ["Core17InstructionRetrieval", *BENCHMARKS["instructir"], *BENCHMARKS["mfollowir"]]
    pins = {}
    for name in [*names, "IFIRAila", "SciFact"]:
        dataset = mteb.get_task(name).metadata.dataset
        pins[dataset["path"]] = dataset["revision"]
    assert {path for path, _ in asked} == set(pins) | {"sentence-transformers/NanoBEIR-en"}
    for path, revision in asked:  # mteb asked each dataset at its pin
        assert revision == pins.get(path), path

    entries = [
        *local["benchmarks"]["instructir"].items(),
        *local["benchmarks"]["mfollowir"].items(),
    ]
    entries += list(local["general"]["mteb"].items())
    hub_entries = {**hub["benchmarks"]["instructir"], **hub["benchmarks"]["mfollowir"]}
    hub_entries |= hub["general"]["mteb"]
    for name, got in entries:
        assert "skipped" not in got, got
        assert got["local_copy"] == str(copies / got["dataset"])
        assert strip_local(got) == strip_local(hub_entries[name])
        written = json.loads(Path(got["result_file"]).read_text())  # mteb's own result file
        assert written["task_name"] == name and written["dataset_revision"] == pins[got["dataset"]]
        subsets = {s["hf_subset"]: 100 * s["main_score"] for s in written["scores"]["test"]}
        assert got.get("subsets", {"default": got["main_score"]}) == pytest.approx(
            subsets, abs=0.006
        )
        assert 0 < got["main_score"] < 100  # not a trivial fixture
    assert local["benchmarks"]["instructir"]["InstructIR"]["main_score_name"] == "robustness_at_10"
    assert set(local["benchmarks"]["mfollowir"]["mFollowIR"]["subsets"]) == {"fas", "rus", "zho"}
    cross = local["benchmarks"]["mfollowir"]["mFollowIRCrossLingual"]
    assert set(cross["subsets"]) == {"eng-fas", "eng-rus", "eng-zho"}
    assert cross["main_score_name"] == "p-MRR"
    assert local["general"]["mteb"]["IFIRAila"]["main_score_name"] == "ndcg_at_20"
    assert local["general"]["mteb"]["SciFact"]["main_score_name"] == "ndcg_at_10"

    assert set(local["followir"]) == {"core17", "average"}
    assert strip_local(local["followir"]["core17"]) == strip_local(hub["followir"]["core17"])
    assert local["followir_source"]["data_dir"] == str(copies)
    nano = local["general"]["nano_beir"]
    assert strip_local(nano) == strip_local(hub["general"]["nano_beir"])
    assert set(nano["datasets"]) == {"NanoMSMARCO", "NanoSciFact"}

    summary = local["summary"]
    assert summary["instruction"]["followir"]["score"] == local["followir"]["average"]["p_mrr"]
    assert summary["instruction"]["mfollowir"]["tasks"] == 2
    assert summary["general"]["nano_beir"]["score"] == nano["ndcg_at_10"]
    assert (
        summary["general"]["SciFact"]["score"] == local["general"]["mteb"]["SciFact"]["main_score"]
    )
    md = (tmp_path / "local" / "results.md").read_text()
    assert "| instruction following |" in md and "| nano_beir (2) | nDCG@10 |" in md


def test_each_benchmark_names_mteb_s_tasks_and_main_scores():
    import mteb

    assert list(benchmark_tasks(["all"])) == ["followir", "instructir", "ifir", "mfollowir"]
    assert list(benchmark_tasks(["ifir", "followir", "ifir"])) == ["ifir", "followir"]
    main = {"followir": "p-MRR", "instructir": "robustness_at_10", "ifir": "ndcg_at_20"}
    main["mfollowir"] = "p-MRR"
    for bench, names in BENCHMARKS.items():
        for name in names:
            assert mteb.get_task(name).metadata.main_score == main[bench]


def test_print_downloads_names_every_copy_at_its_pin(capsys):
    import mteb

    code = evaluate_script.main(
        ["--print-downloads", "copies", "--benchmark", "ifir", "--mteb-task", "SciFact"]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 7 + 1 + 1  # IFIR, SciFact, NanoBEIR
    aila = mteb.get_task("IFIRAila").metadata.dataset
    assert (
        f"hf download if-ir/aila --repo-type dataset --revision {aila['revision']} "
        "--local-dir copies/if-ir/aila"
    ) in lines
    assert lines[-1].startswith("hf download sentence-transformers/NanoBEIR-en")
    assert "--revision" not in lines[-1]


def test_every_ifir_task_scores_from_its_copy(tmp_path, no_network):
    copies = write_copies(tmp_path / "copies")
    report = run(tmp_path / "e", "--data-dir", str(copies), "--benchmark", "ifir",
                 "--general", "none", "--no-gold")  # fmt: skip
    ifir = report["benchmarks"]["ifir"]
    assert list(ifir) == list(BENCHMARKS["ifir"]) and "followir" not in report
    assert all(0 < t["main_score"] < 100 for t in ifir.values()), ifir
    assert report["summary"]["instruction"] == {
        "ifir": {
            "metric": "ndcg_at_20",
            "score": pytest.approx(sum(t["main_score"] for t in ifir.values()) / 7, abs=0.01),
            "tasks": 7,
        }
    }


def test_followir_from_a_local_copy_equals_the_offline_reader(tmp_path, no_network):
    copies = write_copies(tmp_path / "copies", [f"mteb/{t}" for t in BENCHMARKS["followir"]])
    via_mteb = run(tmp_path / "mteb", "--data-dir", str(copies), "--general", "none", "--no-gold")
    folder = write_followir(tmp_path / "followir", layout="mteb")
    here = run(tmp_path / "here", "--followir-dir", str(folder), "--general", "none", "--no-gold")
    for name in SUBSET_NAMES:
        a, b = via_mteb["followir"][name], here["followir"][name]
        assert (a["p_mrr"], a["score"], a["metric"]) == (b["p_mrr"], b["score"], b["metric"])
    assert via_mteb["followir"]["average"] == here["followir"]["average"]


def ndcg_at_10(model, split: str) -> float:
    """nDCG@10 with binary gains over the whole corpus, cosine scores: the definition
    sentence-transformers' InformationRetrievalEvaluator uses, written out."""
    configs = nanobeir_configs()
    corpus = configs["corpus"][split]
    queries = configs["queries"][split]
    relevant: dict[str, set[str]] = {}
    for row in configs["qrels"][split]:
        relevant.setdefault(row["query-id"], set()).add(row["corpus-id"])
    docs = model.encode_document([r["text"] for r in corpus], normalize_embeddings=True)
    values = []
    for row in queries:
        if row["_id"] not in relevant:
            continue
        query = model.encode_query([row["text"]], normalize_embeddings=True)[0]
        order = sorted(range(len(corpus)), key=lambda i: -float(docs[i] @ query))[:10]
        gains = [corpus[i]["_id"] in relevant[row["_id"]] for i in order]
        dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
        ideal = sum(1 / math.log2(r + 2) for r in range(min(len(relevant[row["_id"]]), 10)))
        values.append(dcg / ideal)
    return sum(values) / len(values)


def test_nanobeir_is_sentence_transformers_ndcg_at_10(tmp_path, no_network):
    from dvsynth.evaluate.embed import load_embedder

    copies = write_copies(tmp_path / "copies", ["sentence-transformers/NanoBEIR-en"])
    report = run(tmp_path / "e", "--data-dir", str(copies), "--no-followir", *NANO, "--no-gold")
    nano = report["general"]["nano_beir"]
    model = load_embedder(None)
    for split in ("NanoMSMARCO", "NanoSciFact"):
        assert nano["datasets"][split] == pytest.approx(100 * ndcg_at_10(model, split), abs=0.006)
    assert nano["st_primary_metric"] == "NanoBEIR_mean_cosine_ndcg@10"
    assert nano["ndcg_at_10"] == pytest.approx(sum(nano["datasets"].values()) / 2, abs=0.01)


def test_a_missing_copy_is_skipped_in_one_line_naming_its_folder(tmp_path, no_network, capsys):
    copies = write_copies(tmp_path / "copies", ["mteb/InstructIR-mteb"])
    report = run(
        tmp_path / "e", "--data-dir", str(copies), "--benchmark", "instructir",
        "--benchmark", "mfollowir", *NANO, "--no-gold",
    )  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert "skipped" not in report["benchmarks"]["instructir"]["InstructIR"]
    for name in ("mFollowIR", "mFollowIRCrossLingual"):
        assert "no copy of jhu-clsp/mFollowIR" in report["benchmarks"]["mfollowir"][name]["skipped"]
        (line,) = [x for x in err if x.startswith(f"mfollowir {name} skipped")]
        assert str(copies / "jhu-clsp") in line and "hf download" in line
    (line,) = [x for x in err if x.startswith("NanoBEIR skipped")]
    assert str(copies / "sentence-transformers" / "NanoBEIR-en") in line
    assert report["summary"]["instruction"]["mfollowir"] == {
        "metric": None,
        "score": None,
        "tasks": 0,
    }
    assert "| mfollowir (0) |  | skipped |" in (tmp_path / "e" / "results.md").read_text()


def test_a_copy_at_another_revision_is_said_and_recorded(tmp_path, no_network, capsys):
    import mteb

    copies = write_copies(tmp_path / "copies", ["mteb/InstructIR-mteb"])
    meta = copies / "mteb/InstructIR-mteb/.cache/huggingface/download/README.md.metadata"
    meta.parent.mkdir(parents=True)
    pinned = mteb.get_task("InstructIR").metadata.dataset["revision"]
    for revision, warned in (("0" * 40, True), (pinned, False)):
        meta.write_text(f"{revision}\netag\n1700000000.0\n")
        report = run(
            tmp_path / "e", "--data-dir", str(copies), "--benchmark", "instructir",
            "--general", "none", "--no-gold",
        )  # fmt: skip
        got = report["benchmarks"]["instructir"]["InstructIR"]
        assert got["local_revision"] == revision and got["revision"] == pinned
        err = capsys.readouterr().err
        assert ("numbers are not the leaderboard's" in err) == warned


@pytest.mark.parametrize(
    "args, names",
    [
        (["--data-dir", "/nonexistent/copies"], "--data-dir: /nonexistent/copies is not a folder"),
        (["--mteb-task", "NoSuchTask"], "--mteb-task NoSuchTask: not an mteb task"),
        (["--benchmark", "beir"], "argument --benchmark: invalid choice: 'beir'"),
        (["--general", "full"], "argument --general: invalid choice: 'full'"),
        (["--nanobeir-datasets", "msmarco", "imdb"], "--nanobeir-datasets imdb: not a NanoBEIR"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path, args, names):
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "baselines" / "evaluate.py"), "--out", str(tmp_path), *args,
         "--no-gold", "--no-followir"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and names in lines[0]
