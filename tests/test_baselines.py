"""baselines/: the batch sampler, the pair-aware loss, train.py and evaluate.py."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from baselines import evaluate as evaluate_script
from baselines import train as train_script
from baselines.followir import read_subset
from baselines.pairs import arm_groups, pair_from_gold
from baselines.sampler import DualViewBatchSampler, plan_batches
from dvsynth.evaluate.gold import BUNDLED_GOLD, read_gold
from tests.followir_fixture import write_followir

ROOT = Path(__file__).resolve().parents[1]
MSMARCO_GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"


@pytest.fixture(scope="module")
def minilm():
    from dvsynth.evaluate.embed import load_embedder

    model = load_embedder(None)
    model.eval()
    return model


# -- the batch sampler -------------------------------------------------------------------


def random_groups(rng: random.Random):
    """Pairs (two rows) and singles, their texts drawn from a small pool so that many
    groups share a text."""
    groups, rows, start = [], [], 0
    for _ in range(rng.randint(5, 60)):
        size = rng.choice([1, 2, 2])
        groups.append(list(range(start, start + size)))
        start += size
        rows += [tuple(f"t{rng.randint(0, 80)}" for _ in range(3)) for _ in range(size)]
    texts = [frozenset(t for i in g for t in rows[i]) for g in groups]
    return groups, rows, texts


@pytest.mark.parametrize("seed", range(30))
def test_batches_keep_views_together_and_never_repeat_a_text(seed):
    rng = random.Random(seed)
    groups, rows, texts = random_groups(rng)
    batch_size = rng.choice([2, 4, 6, 16])
    lookahead = rng.choice([1, 3, 1024])  # a small one closes batches short, loses nothing
    batches = plan_batches(groups, texts, batch_size, False, seed, lookahead=lookahead)
    placed = [i for batch in batches for i in batch]
    assert sorted(placed) == list(range(len(rows)))  # every row once per epoch
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    for batch in batches:
        assert 0 < len(batch) <= batch_size
        members = {group_of[i] for i in batch}
        for g in members:  # a group is whole inside its batch
            assert set(groups[g]) <= set(batch)
        seen: dict[str, int] = {}
        for g in members:  # no text shared by two groups of one batch
            for text in texts[g]:
                assert seen.setdefault(text, g) == g, f"{text} twice in a batch"


def test_drop_last_drops_only_the_short_batches():
    groups = [[2 * i, 2 * i + 1] for i in range(7)]
    texts = [frozenset({f"q{i}", f"d{i}"}) for i in range(7)]
    batches = plan_batches(groups, texts, 4, drop_last=True, seed=0)
    assert len(batches) == 3 and all(len(b) == 4 for b in batches)


def test_a_batch_smaller_than_a_pair_is_refused():
    with pytest.raises(ValueError, match="smaller than a pair"):
        plan_batches([[0, 1]], [frozenset({"x"})], 1, drop_last=False, seed=0)


def test_sampler_reads_texts_from_the_dataset_and_reshuffles_per_epoch():
    import datasets

    pairs = [pair_from_gold(g) for g in read_gold(BUNDLED_GOLD)]
    columns, groups = train_script.rows_and_groups(arm_groups(pairs, "dv-add"))
    dataset = datasets.Dataset.from_dict(columns)
    sampler = DualViewBatchSampler(dataset, 8, False, seed=3, groups=groups)
    first = list(sampler)
    assert len(first) == len(sampler)
    for batch in first:
        for g in groups:
            assert set(g) <= set(batch) or not set(g) & set(batch)
        texts = [t for i in batch for t in (columns["anchor"][i],)]
        assert len(texts) == len(set(texts))
    sampler.set_epoch(1)
    assert list(sampler) != first


# -- arms -------------------------------------------------------------------------------


def test_arms_match_the_paper_budgets():
    pairs = [pair_from_gold(g) for g in read_gold(BUNDLED_GOLD)]
    n = len(pairs)
    orig, dv, add = (arm_groups(pairs, arm) for arm in ("orig", "dv", "dv-add"))
    assert sum(map(len, orig)) == n and all(g[0] == p.a for g, p in zip(orig, pairs, strict=True))
    assert sum(map(len, dv)) == 2 * (n // 2) and all(len(g) == 2 for g in dv)
    assert sum(map(len, add)) == 2 * n
    for a, b in add:  # labels swapped between the views
        assert (a.positive, a.negative) == (b.negative, b.positive)


# -- the loss ---------------------------------------------------------------------------


def features(model, texts):
    return model.preprocess(texts)


def test_loss_equals_mnrl_without_copies_and_masks_the_copy_of_the_positive(minilm):
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from baselines.loss import PairAwareMNRLoss

    anchors = ["cheap flights to rome", "history of the roman empire", "rome weather in may"]
    positives = [
        "Budget airlines fly to Rome daily.",
        "Augustus founded the empire.",
        "May is mild.",
    ]
    negatives = ["Trains to Milan.", "The Greek city states.", "Snow in the Alps."]
    loss_ours = PairAwareMNRLoss(minilm, scale=5.0)  # a low scale keeps the loss
    loss_st = MultipleNegativesRankingLoss(minilm, scale=5.0)  # far from 0: clear ratios
    cols = [features(minilm, c) for c in (anchors, positives, negatives)]
    with torch.no_grad():
        assert loss_ours(cols, None).item() == pytest.approx(
            loss_st(cols, None).item(), rel=1e-3, abs=1e-6
        )

        # two views of one pair: row 1's negative is row 0's positive and vice versa
        anchors2 = ["stamp cost postcard", "stamp cost letter in envelope"]
        pos2 = ["A postcard stamp costs 34 cents.", "A letter stamp costs 49 cents."]
        neg2 = [pos2[1], pos2[0]]
        cols = [features(minilm, c) for c in (anchors2, pos2, neg2)]
        q = minilm.encode(anchors2, convert_to_tensor=True, normalize_embeddings=True)
        d = minilm.encode(pos2 + neg2, convert_to_tensor=True, normalize_embeddings=True)
        logits = 5.0 * q @ d.T  # columns: pos0, pos1, neg0 (= pos1), neg1 (= pos0)
        # row 0 keeps pos0, pos1, neg0 and drops neg1 (its own positive again)
        expected = torch.stack(
            [
                -(logits[0, 0] - torch.logsumexp(logits[0, [0, 1, 2]], 0)),
                -(logits[1, 1] - torch.logsumexp(logits[1, [0, 1, 3]], 0)),
            ]
        ).mean()
        assert loss_ours(cols, None).item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-6)
        assert loss_st(cols, None).item() > expected.item()  # plain MNRL pays for the copy


# -- train.py ---------------------------------------------------------------------------


def test_train_on_64_triplets_saves_a_model_that_reloads_and_scores(tmp_path, minilm):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "model"
    code = train_script.main(
        [
            "--data", str(MSMARCO_GOLD), "--arm", "dv-add", "--max-pairs", "32",
            "--out", str(out), "--batch-size", "16", "--max-seq-length", "64",
            "--lr", "1e-4", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "dvsynth_train.json").read_text())
    assert record["rows"] == 64 and record["arm"] == "dv-add" and record["scale"] == 50.0
    trained = SentenceTransformer(str(out), device="cpu")
    pair = next(iter(read_gold(MSMARCO_GOLD)))
    query = f"{pair.query} {pair.instruction_a}"
    scores = trained.similarity(
        trained.encode([query]), trained.encode([pair.doc_a.text, pair.doc_b.text])
    )
    assert scores.shape == (1, 2)
    before = minilm.encode([query])
    assert not (abs(trained.encode([query]) - before) < 1e-6).all()  # the weights moved


def test_train_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    code = train_script.main(["--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "none.jsonl" in err
    code = train_script.main(
        ["--data", str(BUNDLED_GOLD), "--out", str(tmp_path / "m"), "--batch-size", "1"]
    )
    assert code == 2 and "--batch-size" in capsys.readouterr().err
    code = train_script.main(["--data", str(tmp_path / "no-export"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no-export" in err


# -- evaluate.py ------------------------------------------------------------------------


def read_trec(path: Path) -> dict[str, dict[str, float]]:
    runs: dict[str, dict[str, float]] = {}
    ranks: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        qid, q0, doc_id, rank, score, _tag = line.split()
        assert q0 == "Q0"
        runs.setdefault(qid, {})[doc_id] = float(score)
        ranks.setdefault(qid, []).append(int(rank))
    assert all(r == list(range(1, len(r) + 1)) for r in ranks.values())
    return runs


def test_evaluate_end_to_end_on_a_local_followir_folder(tmp_path, capsys):
    from mteb._evaluators.retrieval_metrics import evaluate_p_mrr_change

    folder = write_followir(tmp_path / "followir")
    out = tmp_path / "eval"
    code = evaluate_script.main(
        [
            "--followir-dir",
            str(folder),
            "--out",
            str(out),
            "--gold",
            str(BUNDLED_GOLD),
            "--general",
            "none",
        ]
    )
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    assert "| robust04 | map_at_1000 |" in (out / "results.md").read_text()
    assert report["gold"]["summary"]["pairs"] == len(list(read_gold(BUNDLED_GOLD)))
    for name, metric in (
        ("robust04", "map_at_1000"),
        ("news21", "ndcg_at_5"),
        ("core17", "map_at_1000"),
    ):
        subset = read_subset(folder / name, name)
        og = read_trec(out / "runs" / f"{name}.og.trec")
        changed = read_trec(out / "runs" / f"{name}.changed.trec")
        assert {q: set(d) for q, d in og.items()} == {
            q: set(d) for q, d in subset.top_ranked.items()
        }
        assert "UNRANKED-1" not in subset.corpus
        qrels = {f"{q}-og": v for q, v in subset.qrels_og.items()}
        qrels |= {f"{q}-changed": v for q, v in subset.qrels_changed.items()}
        results = {f"{q}-og": r for q, r in og.items()} | {
            f"{q}-changed": r for q, r in changed.items()
        }
        reference = evaluate_p_mrr_change(qrels, results, subset.changed_documents(), [1, 5, 1000])
        got = report["followir"][name]
        assert got["metric"] == metric and got["queries"] == 3
        assert got["score"] == pytest.approx(100 * reference["og"][metric], abs=0.006)
        assert got["p_mrr"] == pytest.approx(100 * reference["p-MRR"], abs=0.006)
    assert report["followir"]["average"]["subsets"] == 3


def test_evaluate_names_the_missing_file_in_one_line(tmp_path, capsys):
    folder = write_followir(tmp_path / "followir")
    (folder / "news21" / "top_ranked.jsonl").unlink()
    code = evaluate_script.main(
        [
            "--followir-dir",
            str(folder),
            "--out",
            str(tmp_path / "e"),
            "--subsets",
            "news21",
            "--no-gold",
            "--general",
            "none",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert (
        code == 2 and len(err.splitlines()) == 1 and "news21" in err and "top_ranked.jsonl" in err
    )


def test_a_hub_id_loads_its_triplets_config_at_the_version_asked(monkeypatch):
    import datasets

    from baselines.pairs import load_pairs

    rows = {
        "anchor": ["q i1", "q i2"],
        "positive": ["doc one", "doc two"],
        "negative": ["doc two", "doc one"],
        "negatives": [[], []],
        "pair_id": ["p1", "p1"],
        "view": ["a", "b"],
    }
    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None):
        calls.append((path, name, split, revision))
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (pair,) = load_pairs("my-org/dual-view-msmarco", "train", "v1.0.0")
    assert calls == [("my-org/dual-view-msmarco", "triplets", "train", "v1.0.0")]
    assert (pair.a.anchor, pair.a.positive, pair.b.anchor, pair.b.positive) == (
        "q i1",
        "doc one",
        "q i2",
        "doc two",
    )
    rows["view"] = ["a", "a"]
    with pytest.raises(Exception, match="lacks view a or b"):
        load_pairs("my-org/dual-view-msmarco")
