"""Tiny local copies of the Hub datasets behind mteb's instruction-following tasks,
a general retrieval task and NanoBEIR, laid out as `hf download --local-dir` leaves a
`push_to_hub` dataset (one folder per config, parquet files, a README `configs:`
block), under ROOT/<dataset id>: what `evaluate.py --data-dir ROOT` reads.

`hub_answered_from(root)` answers `datasets`' Hub calls for those ids from the same
folders, so a test can run mteb (or sentence-transformers) exactly as it runs with the
Hub and compare with the --data-dir run.
"""

from __future__ import annotations

import random
from pathlib import Path

from baselines.mteb_tasks import BENCHMARKS
from tests.followir_fixture import MTEB_CONFIGS, TOPICS, mteb_rows, write_subset_mteb

LANGS = ("fas", "rus", "zho")


def write_configs(folder: Path, configs: dict[str, dict[str, list[dict]]]) -> Path:
    """configs: {config name: {split: rows}} -> parquet files and the README card."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    card = ["---", "configs:"]
    for config, splits in configs.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            path = folder / config / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), path)
            card += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (folder / "README.md").write_text("\n".join([*card, "---", ""]), encoding="utf-8")
    return folder


WORDS = sorted({w for topic in TOPICS for part in topic for w in part.split()})


def corpus_rows(seed: int) -> list[dict]:
    """12 documents of words drawn from all topics: rankings are far from perfect."""
    rng = random.Random(seed)
    rows = []
    for q, (topic, _aspect, _detail) in enumerate(TOPICS):
        for d in range(4):
            words = rng.sample(WORDS, 6) + ([topic] if d % 2 else [])
            rows.append({"_id": f"d{q}-{d}", "title": "", "text": " ".join(words)})
    return rows


def retrieval_configs(kind: str, seed: int = 0) -> dict:
    """A retrieval dataset: `plain` (query, qrels), `instructir` (each query twice with
    other instructions, ids <q>_<n>: mteb's robustness@10 groups on the part before _)
    or `ifir` (ids with v1/v2/v3: IFIR's instruction levels). Labels are drawn at
    random, so no model scores them perfectly."""
    rng = random.Random(seed)
    corpus = corpus_rows(seed)
    ids = [row["_id"] for row in corpus]
    queries, instructions, qrels = [], [], []
    variants = {"plain": [""], "instructir": ["_0", "_1"], "ifir": ["-v1", "-v2", "-v3"]}
    for q, (topic, aspect, detail) in enumerate(TOPICS):
        for n, suffix in enumerate(variants[kind]):
            qid = f"q{q}{suffix}"
            queries.append({"_id": qid, "text": topic})
            want = detail if n % 2 else aspect
            instructions.append({"query-id": qid, "instruction": f"Only documents on {want}."})
            for doc in rng.sample(ids, 5):
                qrels.append({"query-id": qid, "corpus-id": doc, "score": rng.choice([0, 1, 1, 2])})
    configs = {
        "corpus": {"corpus": corpus},
        "queries": {"queries": queries},
        "default": {"test": qrels},
    }
    if kind != "plain":
        configs["instruction"] = {"instruction": instructions}
    return configs


def followir_configs(name: str, seed: int, suffix: str = "") -> dict:
    return {
        f"{config}{suffix}": {MTEB_CONFIGS[config][1]: rows}
        for config, rows in mteb_rows(name, seed).items()
    }


def nanobeir_configs(names: tuple[str, ...] = ("NanoMSMARCO", "NanoSciFact")) -> dict:
    configs: dict = {"corpus": {}, "queries": {}, "qrels": {}}
    for n, split in enumerate(names):
        plain = retrieval_configs("plain", seed=n)
        configs["corpus"][split] = [
            {"_id": r["_id"], "text": f"{r['title']} {r['text']}"}
            for r in plain["corpus"]["corpus"]
        ]
        configs["queries"][split] = [
            {"_id": r["_id"], "text": r["text"]} for r in plain["queries"]["queries"]
        ]
        configs["qrels"][split] = [
            {"query-id": r["query-id"], "corpus-id": r["corpus-id"]}
            for r in plain["default"]["test"]
            if r["score"] > 0
        ]
    return configs


#: dataset id -> writer(folder)
COPIES = {
    "mteb/Robust04InstructionRetrieval": lambda f: write_subset_mteb(f, "robust04", 0),
    "mteb/News21InstructionRetrieval": lambda f: write_subset_mteb(f, "news21", 1),
    "mteb/Core17InstructionRetrieval": lambda f: write_subset_mteb(f, "core17", 2),
    "mteb/InstructIR-mteb": lambda f: write_configs(f, retrieval_configs("instructir")),
    "mteb/scifact": lambda f: write_configs(f, retrieval_configs("plain")),
    "sentence-transformers/NanoBEIR-en": lambda f: write_configs(f, nanobeir_configs()),
    "jhu-clsp/mFollowIR-parquet-mteb": lambda f: write_configs(
        f,
        {
            k: v
            for i, lang in enumerate(LANGS)
            for k, v in followir_configs("m", i, f"-{lang}").items()
        },
    ),
    "jhu-clsp/mFollowIR-cross-lingual-parquet-mteb": lambda f: write_configs(
        f,
        {
            k: v
            for i, lang in enumerate(LANGS)
            for k, v in followir_configs("x", i, f"-{lang}").items()
        },
    ),
}


def write_copies(root: Path, ids: list[str] | None = None) -> Path:
    """ROOT/<dataset id> for each id (default: all of them)."""
    import mteb

    ifir = {}
    for name in BENCHMARKS["ifir"]:
        path = mteb.get_task(name).metadata.dataset["path"]
        ifir[path] = len(ifir)
    writers = dict(COPIES) | {
        path: (lambda f, s=seed: write_configs(f, retrieval_configs("ifir", s)))
        for path, seed in ifir.items()
    }
    for dataset_id in ids or list(writers):
        writers[dataset_id](root / dataset_id)
    return root


def hub_answered_from(monkeypatch, root: Path) -> list[tuple[str, str | None]]:
    """`datasets`' Hub calls for any id with a copy under ROOT are answered from that
    copy (in `datasets` and wherever mteb imported the functions by name); returns the
    (id, revision) asked, for the test to check against mteb's pins."""
    import sys

    import datasets

    asked: list[tuple[str, str | None]] = []

    def answered(function, revision_at: int | None = None):
        def call(path, *args, **kwargs):
            if Path(str(path)).is_absolute() or not (root / str(path)).is_dir():
                return function(path, *args, **kwargs)
            revision = kwargs.pop("revision", None)
            if revision_at is not None and len(args) > revision_at:
                revision, args = args[revision_at], args[:revision_at]
            asked.append((str(path), revision))
            return function(str(root / str(path)), *args, **kwargs)

        return call

    originals = {
        "load_dataset": answered(datasets.load_dataset),
        "get_dataset_split_names": answered(datasets.get_dataset_split_names),
        "get_dataset_config_names": answered(datasets.get_dataset_config_names, 0),
    }
    for name, replacement in originals.items():
        original = getattr(datasets, name)
        monkeypatch.setattr(datasets, name, replacement)
        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("mteb") and (
                getattr(module, name, None) is original
            ):
                monkeypatch.setattr(module, name, replacement)
    return asked
