"""run_arms.py: every arm trained and evaluated into one comparison table, deltas to
orig, nothing trained twice on a rerun, other settings in the same folder refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from baselines import run_arms
from tests.followir_fixture import write_followir
from tests.mteb_fixture import write_copies

ROOT = Path(__file__).resolve().parents[1]
MSMARCO_GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"
TRAIN = ["--max-pairs", "16", "--batch-size", "8", "--max-seq-length", "32", "--epochs", "1"]


def test_arms_train_evaluate_and_compare_and_a_rerun_trains_nothing(tmp_path, no_network, capsys):
    copies = write_copies(tmp_path / "copies", ["sentence-transformers/NanoBEIR-en"])
    followir = write_followir(tmp_path / "followir")
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(MSMARCO_GOLD.read_text().splitlines(keepends=True)[100:110]))
    out = tmp_path / "arms"
    argv = [
        "--data", str(MSMARCO_GOLD), "--out", str(out), "--arms", "base", "orig", "dv", *TRAIN,
        "--", "--followir-dir", str(followir), "--subsets", "news21", "--data-dir", str(copies),
        "--nanobeir-datasets", "msmarco", "scifact", "--gold", str(gold),
    ]  # fmt: skip
    assert run_arms.main(argv) == 0
    table = json.loads((out / "arms.json").read_text())
    assert list(table["arms"]) == ["base", "orig", "dv"]
    for arm in ("base", "orig", "dv"):
        results = json.loads((out / "eval" / arm / "results.json").read_text())
        scores = table["arms"][arm]["scores"]
        assert scores["followir"] == results["followir"]["average"]["p_mrr"]
        assert scores["general_ndcg_at_10"] == results["general"]["nano_beir"]["ndcg_at_10"]
        orig = table["arms"]["orig"]["scores"]
        assert table["arms"][arm]["delta_to_orig"] == {
            k: round(scores[k] - orig[k], 2) for k in scores if scores[k] is not None
        }
    assert table["arms"]["orig"]["rows"] == 16 and table["arms"]["dv"]["rows"] == 16
    assert table["arms"]["base"]["rows"] == 0
    assert table["arms"]["orig"]["scores"] != table["arms"]["dv"]["scores"]  # trained apart
    md = (out / "arms.md").read_text()
    assert "| arm | rows (general) | FollowIR p-MRR | NanoBEIR nDCG@10 |" in md
    assert "| orig | 16 (0) |" in md and "+0.00 | +0.00 |" in md

    weights = {
        a: (out / "models" / a / "model.safetensors").stat().st_mtime_ns for a in ("orig", "dv")
    }
    results = {a: (out / "eval" / a / "results.json").stat().st_mtime_ns for a in ("orig", "dv")}
    assert run_arms.main(argv) == 0
    for arm in ("orig", "dv"):  # neither trained nor evaluated again
        assert (out / "models" / arm / "model.safetensors").stat().st_mtime_ns == weights[arm]
        assert (out / "eval" / arm / "results.json").stat().st_mtime_ns == results[arm]
    assert json.loads((out / "arms.json").read_text())["arms"].keys() == table["arms"].keys()

    capsys.readouterr()
    assert run_arms.main(["--lr", "1e-4", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained with other settings" in err
    assert str(out / "models" / "orig") in err


def test_bad_arms_options_are_one_line_and_exit_2(tmp_path):
    def run(*args: str) -> tuple[int, list[str]]:
        done = subprocess.run(
            [sys.executable, str(ROOT / "baselines" / "run_arms.py"), "--data", str(MSMARCO_GOLD),
             "--out", str(tmp_path / "o"), *args],
            capture_output=True, text=True, timeout=300,
            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        return done.returncode, [x for x in done.stderr.splitlines() if x.strip()]

    for args, says in (
        (["--arms", "orig", "best"], "argument --arms: invalid choice: 'best'"),
        (["--", "--benchmark", "beir"], "argument --benchmark: invalid choice: 'beir'"),
        (["--", "--model", "x"], "--model after --: run_arms.py sets it per arm"),
        (["--mix", "triples.jsonl"], "--mix triples.jsonl: expected FILE_OR_HUB_ID:SHARE"),
    ):
        code, lines = run(*args)
        assert code == 2 and len(lines) == 1 and says in lines[0], lines
