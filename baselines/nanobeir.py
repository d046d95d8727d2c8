"""General retrieval with the sentence-transformers ecosystem's quick suite: NanoBEIR
(13 BEIR datasets cut to 50 queries and ~5k documents each), scored by
sentence-transformers' own `NanoBEIREvaluator`, so the nDCG@10 here is the number a
model card or a training log shows.

Offline, `--data-dir DIR` holds a copy of `sentence-transformers/NanoBEIR-en` at
DIR/sentence-transformers/NanoBEIR-en (`hf download sentence-transformers/NanoBEIR-en
--repo-type dataset --local-dir ...`); the evaluator reads it as its `dataset_id`.
sentence-transformers pins no revision, so results.json records the copy's own one when
`hf download` left it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

from baselines.mteb_tasks import local_revision, skip
from dvsynth.errors import UserError

DATASET_ID = "sentence-transformers/NanoBEIR-en"


def names() -> list[str]:
    from sentence_transformers.sentence_transformer.evaluation.nano_beir import (
        DATASET_NAME_TO_HUMAN_READABLE,
    )

    return list(DATASET_NAME_TO_HUMAN_READABLE)


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """The evaluator draws tqdm bars on stderr, where this script's one-line messages go."""
    from sentence_transformers.sentence_transformer.evaluation import nano_beir

    bar = nano_beir.tqdm
    nano_beir.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        nano_beir.tqdm = bar


def load(datasets: Sequence[str] | None, data_dir: Path | None, batch_size: int = 32):
    """(the evaluator with its data loaded, facts) or (None, the reason it was skipped).
    Unknown dataset names are one line (exit 2), before anything loads."""
    from sentence_transformers.sentence_transformer.evaluation import NanoBEIREvaluator

    known = names()
    unknown = [n for n in datasets or () if n.lower() not in known]
    if unknown:
        choices = ", ".join(known)
        raise UserError(f"--nanobeir-datasets {unknown[0]}: not a NanoBEIR dataset ({choices})")
    facts: dict = {"dataset": DATASET_ID, "revision": None}
    source = DATASET_ID
    if data_dir is not None:
        folder = data_dir / DATASET_ID
        if not folder.is_dir():
            reason = (
                f"no copy of {DATASET_ID} at {folder} (hf download {DATASET_ID} "
                f"--repo-type dataset --local-dir {folder})"
            )
            return None, skip("NanoBEIR", reason, "download it first")
        source = str(folder)
        facts |= {"local_copy": source, "revision": local_revision(folder)}
    try:
        with _no_progress_bars():
            evaluator = NanoBEIREvaluator(
                dataset_names=[n.lower() for n in datasets] if datasets else None,
                dataset_id=source,
                batch_size=batch_size,
                write_csv=False,
            )
    except Exception as exc:  # offline, or a copy without a split asked for
        cause = exc.__cause__ or exc
        first = str(cause).strip().splitlines()[0][:160] if str(cause).strip() else ""
        reason = f"{exc} ({type(cause).__name__}: {first})" if cause is not exc else str(exc)
        return None, skip("NanoBEIR", reason[:300], "pass --data-dir or --general none")
    return evaluator, facts


def evaluate(model, evaluator, facts: dict) -> dict:
    """Mean nDCG@10 over the datasets (the evaluator's primary metric) and each
    dataset's, x100 rounded; `st_*` keep sentence-transformers' unrounded values."""
    with _no_progress_bars():
        results = evaluator(model)
    primary = evaluator.primary_metric  # e.g. NanoBEIR_mean_cosine_ndcg@10
    metric = primary.removeprefix(f"{evaluator.name}_")
    per_dataset = {
        ir.name: round(100 * results[f"{ir.name}_{metric}"], 2) for ir in evaluator.evaluators
    }
    return {
        "metric": metric,
        "ndcg_at_10": round(100 * results[primary], 2),
        "st_primary_metric": primary,
        "st_score": results[primary],
        "datasets": per_dataset,
        **facts,
    }
