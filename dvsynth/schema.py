"""The records that cross every boundary: seeds in, dual-view pairs out.

Pydantic models so that a malformed row fails where it enters, with the field named,
and so that every stage, the store and the exporters agree on one shape.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Mode = Literal["reverse", "bootstrap"]
Status = Literal["kept", "rejected"]


def short_hash(*parts: str, length: int = 16) -> str:
    """A stable hex id from text parts (NUL-joined so that ("ab","c") != ("a","bc"))."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:length]


class Doc(BaseModel):
    """A passage. doc_id falls back to a content hash so that every Doc is addressable."""

    model_config = ConfigDict(extra="forbid")

    doc_id: str
    title: str = ""
    text: str

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty")
        return value


class Seed(BaseModel):
    """One input row. instruction None means bootstrap mode (both instructions generated)."""

    model_config = ConfigDict(extra="forbid")

    seed_id: str
    query: str
    instruction: str | None = None
    positive: Doc
    negative: Doc
    other_negatives: list[Doc] = Field(default_factory=list)
    source: str = ""

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is empty")
        return value

    @field_validator("instruction")
    @classmethod
    def _blank_instruction_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Provenance(BaseModel):
    """Everything needed to say how a row was made, and to reproduce it."""

    generator_model: str
    judge_model: str | None = None
    prompt_name: str
    prompt_sha256: str
    sampling: dict[str, float | int | None] = Field(default_factory=dict)
    dvsynth_version: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None  # None: the provider's price is unknown, never 0
    cached: bool = False
    latency_s: float = 0.0
    created_at: str
    # Filled in by the judge (dvsynth validate); usage and cost are the judge's own.
    judge_prompt_name: str | None = None
    judge_prompt_sha256: str | None = None
    judge_threshold: float | None = None
    judge_usage: Usage | None = None
    judge_cost_usd: float | None = None


class Verdict(BaseModel):
    """One judgment: is `doc` relevant under `view`? Filled in by the validate stage."""

    view: Literal["a", "b", "original"]
    doc: Literal["a", "b"]
    relevant: bool | None
    probability: float | None = None
    model: str
    raw: str | None = None


class DualView(BaseModel):
    """A candidate pair: doc_a is relevant under instruction_a, doc_b under instruction_b."""

    pair_id: str
    seed_id: str
    query: str
    instruction_a: str | None
    doc_a: Doc
    instruction_b: str | None
    doc_b: Doc
    other_negatives: list[Doc] = Field(default_factory=list)
    mode: Mode
    status: Status
    reasons: list[str] = Field(default_factory=list)
    stages: list[str] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    raw_response: str | None = None  # the generator's full text, kept to audit rejections
    error: str | None = None  # the provider's error message (secrets redacted)
    provenance: Provenance


class SeedError(BaseModel):
    """A seed row that could not be read: where it is and why, for the summary and the store."""

    location: str
    reason: str
