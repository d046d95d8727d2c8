"""The records that cross every boundary: seeds in, dual-view pairs out.

Pydantic models so that a malformed row fails where it enters, with the field named,
and so that every stage, the store and the exporters agree on one shape.
"""

from __future__ import annotations

import hashlib
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

Mode = Literal["reverse", "bootstrap"]
#: kept and rejected are verdicts; failed is a transient fault (rate limit, timeout,
#: 5xx, an internal error) that the next run of the same command tries again.
Status = Literal["kept", "rejected", "failed"]


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
    location: str = ""  # where the row was read ("seeds.jsonl:12"), for reports only

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


class JudgeSpend(BaseModel):
    """What one judge model's calls on a row cost (cached calls were paid before)."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None: some call had no known price


class Escalation(BaseModel):
    """How a cascade decided one verdict: the cheap judge's P(yes), and the strong one's
    when the cheap one was unsure (`why`: margin, unparsable or no_logprobs)."""

    cheap_model: str
    cheap_probability: float | None
    strong_model: str
    strong_probability: float | None = None
    escalated: bool
    why: Literal["margin", "unparsable", "no_logprobs"] | None = None


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
    # Per judge model (a cascade has two): calls, tokens and cost of this row's validation.
    judge_spend: dict[str, JudgeSpend] | None = None
    # "generated": view a (the seed's own, reverse mode) was taken unjudged.
    judge_views: Literal["all", "generated"] | None = None


#: (view, doc) -> should the doc be relevant under the view?
EXPECTED: dict[tuple[str, str], bool] = {
    ("a", "a"): True,
    ("a", "b"): False,
    ("b", "b"): True,
    ("b", "a"): False,
}


class Verdict(BaseModel):
    """One judgment: is `doc` relevant under `view`? Filled in by the validate stage.

    doc "other" is one of the seed's other negatives (`doc_id` names it), judged under
    view b before it may serve as a negative of that view.
    """

    view: Literal["a", "b", "original"]
    doc: Literal["a", "b", "other"]
    doc_id: str | None = None
    relevant: bool | None
    probability: float | None = None
    model: str  # the judge whose verdict stands (a cascade's strong one when escalated)
    raw: str | None = None
    escalation: Escalation | None = None  # set when a cascade judged
    protocol: Literal["pointwise", "joint"] = "pointwise"


class CheckVerdict(BaseModel):
    """The instruction check on one generated instruction: could a user have written it
    without seeing the candidates? ok None: the answer was unparsable."""

    field: Literal["instruction_a", "instruction_b"]
    ok: bool | None
    model: str
    raw: str | None = None
    probability: float | None = None
    escalation: Escalation | None = None


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
    stages: list[str] = Field(default_factory=list)  # the stages the row went through
    # Set by the run store when the row is read: True once the row passed every stage of
    # its run's validation under the run's current validation settings (`validation`).
    verified: bool = False
    validation: str | None = None
    verdicts: list[Verdict] = Field(default_factory=list)
    checks: list[CheckVerdict] = Field(default_factory=list)
    # doc_ids of other_negatives that the judge found not relevant under instruction_b:
    # only these may serve as view b's extra negatives (None: not judged).
    negatives_b: list[str] | None = None
    raw_response: str | None = None  # the generator's full text, kept to audit rejections
    error: str | None = None  # the provider's error message (secrets redacted)
    provenance: Provenance

    def views(self) -> tuple[View, View]:
        """The pair's two training views, defined once: view a admits doc_a, view b doc_b.

        View a keeps the seed's other negatives (they violate instruction_a by
        construction); view b keeps only those the judge found not relevant under
        instruction_b, so an unverified passage never trains as its negative.
        """
        verified_b = set(self.negatives_b or [])
        others_b = [d for d in self.other_negatives if d.doc_id in verified_b]
        return (
            View("a", self.instruction_a, self.doc_a, self.doc_b, list(self.other_negatives)),
            View("b", self.instruction_b, self.doc_b, self.doc_a, others_b),
        )

    @property
    def stage(self) -> str:
        """'verified', or the last stage the row went through."""
        return "verified" if self.verified else (self.stages[-1] if self.stages else "")


class View(NamedTuple):
    """One side of a pair: under `instruction`, `positive` is relevant and the rest not."""

    name: str
    instruction: str | None
    positive: Doc
    negative: Doc
    other_negatives: list[Doc]

    def anchor(self, query: str) -> str:
        return anchor(query, self.instruction)


def doc_text(doc: Doc) -> str:
    """The passage as a retriever reads it: title, then text."""
    return f"{doc.title}. {doc.text}" if doc.title else doc.text


def anchor(query: str, instruction: str | None) -> str:
    """Query and instruction joined as FollowIR joins them (and training must too)."""
    return f"{query} {instruction or ''}".strip()


class SeedError(BaseModel):
    """A seed row that could not be read: where it is and why, for the summary and the store."""

    location: str
    reason: str
