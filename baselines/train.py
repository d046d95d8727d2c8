"""Train a retriever on dual-view data: sentence-transformers' trainer, MNRL at scale 50
(temperature 0.02) with the pair's other document as hard negative, both views of a pair
in one batch.

    python baselines/train.py --data DATA --arm orig|dv|dv-add --out DIR [--model NAME]
        [--rows N] [--mix FILE_OR_HUB_ID:SHARE]

DATA is a `dvsynth export` folder, a Hub dataset id (its `triplets` config) or a gold-set
JSONL file. `--rows N --mix SOURCE:SHARE` trains on N rows, a SHARE of them general
triples from SOURCE (a JSONL/CSV/TSV/Parquet file or a Hub dataset with anchor or query,
positive, negative columns; MS MARCO triples, say) and the rest the arm's: the paper's
matched-budget arms (baselines/mix.py). The default model is the bundled
all-MiniLM-L6-v2 on CPU; on a GPU machine pass any model name (the paper:
Alibaba-NLP/gte-multilingual-mlm-base).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python baselines/train.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.cli import Parser  # noqa: E402
from baselines.mix import Mix, budget_groups, parse_mix  # noqa: E402
from baselines.pairs import ARMS, TrainPair, View, load_pairs  # noqa: E402
from dvsynth.errors import UserError  # noqa: E402


@dataclass
class TrainConfig:
    arm: str = "dv"
    model: str | None = None  # None: the bundled all-MiniLM-L6-v2
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup: float = 0.1  # share of the steps
    scale: float = 50.0
    max_seq_length: int | None = None
    seed: int = 0
    trust_remote_code: bool = False
    bf16: bool = False  # mixed precision on a GPU that supports it
    budget: int | None = None  # rows in all (--rows); None: the arm's own row count
    mix: Mix | None = None  # general triples at a share of the budget


def rows_and_groups(
    groups: Sequence[Sequence[View]],
) -> tuple[dict[str, list[str]], list[list[int]]]:
    """Columns for a datasets.Dataset (anchor, positive, negative) and, for each group, its
    row indices: a pair's views are adjacent rows, as in the export's triplets config."""
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    index_groups = []
    for group in groups:
        start = len(columns["anchor"])
        for view in group:
            columns["anchor"].append(view.anchor)
            columns["positive"].append(view.positive)
            columns["negative"].append(view.negative)
        index_groups.append(list(range(start, start + len(group))))
    return columns, index_groups


def train(pairs: Sequence[TrainPair], config: TrainConfig, out: Path, quiet: bool = False) -> Path:
    """Fine-tune on the arm's rows and save the model to `out` (reload it with
    SentenceTransformer(out)); returns `out`."""
    import datasets
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )

    from baselines.loss import PairAwareMNRLoss
    from baselines.sampler import DualViewBatchSampler
    from dvsynth.evaluate.embed import load_embedder

    if not pairs:
        raise UserError("--data: no training pairs")
    if config.bf16:
        import torch

        if not torch.cuda.is_available():
            raise UserError("--bf16: needs a CUDA GPU; leave it out on CPU")
    if config.batch_size < 2:
        raise UserError("--batch-size: at least 2 (a batch holds both views of a pair)")
    groups, counts = budget_groups(pairs, config.arm, config.seed, config.budget, config.mix)
    columns, index_groups = rows_and_groups(groups)
    model = load_embedder(config.model, config.trust_remote_code)
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup,
        seed=config.seed,
        batch_sampler=functools.partial(DualViewBatchSampler, groups=index_groups),
        save_strategy="no",
        report_to="none",
        logging_strategy="no" if quiet else "steps",
        logging_steps=10,
        disable_tqdm=quiet,
        dataloader_drop_last=False,
        bf16=config.bf16,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_dict(columns),
        loss=PairAwareMNRLoss(model, scale=config.scale),
    )
    trainer.train()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    record = {**asdict(config), "pairs": len(pairs), **counts, "rows": len(columns["anchor"])}
    (out / "dvsynth_train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out


def add_options(parser: Parser) -> None:
    """The data and training options, shared with run_arms.py."""
    parser.add_argument("--data", required=True, help="export folder, Hub id, or gold JSONL")
    parser.add_argument("--split", default="train", help="split of an export folder or Hub id")
    parser.add_argument("--revision", help="Hub dataset version, e.g. v1.0.0")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--model", help="model name or path (default: bundled MiniLM)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--scale", type=float, default=50.0, help="MNRL scale (1/temperature)")
    parser.add_argument("--max-seq-length", type=int)
    parser.add_argument("--max-pairs", type=int, help="use the first N pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, help="training rows in all (default: the arm's)")
    parser.add_argument("--mix", metavar="FILE_OR_HUB_ID:SHARE", help="general triples' share")
    parser.add_argument("--mix-config", help="config of a Hub --mix dataset (e.g. triplet)")
    parser.add_argument("--mix-split", default="train", help="split of a Hub --mix dataset")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="for models with their own code"
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")


def config_from(args, arm: str = "dv") -> TrainConfig:
    """The parsed options as a TrainConfig; a bad --mix is a UserError."""
    mix = parse_mix(args.mix, args.mix_config, args.mix_split) if args.mix else None
    return TrainConfig(
        arm=arm,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        scale=args.scale,
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        trust_remote_code=args.trust_remote_code,
        bf16=args.bf16,
        budget=args.rows,
        mix=mix,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    add_options(parser)
    parser.add_argument("--arm", choices=ARMS, default="dv")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = config_from(args, args.arm)
        pairs = load_pairs(args.data, args.split, args.revision)[: args.max_pairs]
        out = train(pairs, config, args.out, quiet=args.quiet)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mixed = f", {config.mix.share:.0%} general from {config.mix.source}" if config.mix else ""
    print(f"saved {out} ({config.arm}: {len(pairs)} pairs{mixed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
