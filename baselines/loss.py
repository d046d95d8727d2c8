"""MultipleNegativesRankingLoss that never scores an anchor against a copy of its own
positive.

With both views of a pair in one batch, view a's positive (doc_a) is also view b's hard
negative, so plain MNRL would count doc_a as a negative of view a's anchor: a false
negative that fights the positive. Candidates whose tokens equal the anchor's positive
are masked out of the softmax (the positive itself stays). Without such copies the loss
is exactly sentence-transformers' MNRL (scale 50 = the paper's temperature 0.02).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import Tensor


def text_ids(columns: list[dict[str, Tensor]]) -> Tensor:
    """One integer per row of each candidate column, equal where the token ids (padding
    stripped) are equal. Computed on the CPU in one transfer per column."""
    vocabulary: dict[tuple[int, ...], int] = {}
    ids = []
    for features in columns:
        tokens = features["input_ids"].cpu()
        mask = features.get("attention_mask", torch.ones_like(tokens)).cpu().bool()
        for row, keep in zip(tokens, mask, strict=True):
            ids.append(vocabulary.setdefault(tuple(row[keep].tolist()), len(vocabulary)))
    return torch.tensor(ids)


def copies_of_positive(ids: Tensor, batch: int) -> Tensor:
    """(batch, candidates) mask, True where a candidate repeats row i's positive (the
    first `batch` candidates are the positives) anywhere but at the positive's own place."""
    mask = ids.unsqueeze(0) == ids[:batch].unsqueeze(1)
    own = torch.arange(batch)
    mask[own, own] = False
    return mask


class PairAwareMNRLoss(MultipleNegativesRankingLoss):
    def __init__(self, model, scale: float = 50.0) -> None:
        super().__init__(model, scale=scale)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)
        embeddings = embed_columns(self.model, features)
        queries, candidates = embeddings[0], torch.cat(embeddings[1:])
        scores = self.similarity_fct(queries, candidates) * self.scale
        mask = copies_of_positive(text_ids(features[1:]), len(queries)).to(scores.device)
        scores = scores.masked_fill(mask, float("-inf"))
        target = torch.arange(len(queries), device=scores.device)
        return torch.nn.functional.cross_entropy(scores, target)
