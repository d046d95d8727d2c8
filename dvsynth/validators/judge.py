"""The LLM judge: does each view admit its own document and exclude the other one?

Four pointwise calls per pair, (view a, view b) x (doc_a, doc_b), so the order in which
documents appear can never bias a verdict. A pair passes only if view a admits doc_a
and excludes doc_b, and view b the reverse. In reverse mode view a is the seed's own
instruction: it is judged like the generated one, because seed instructions (such as
Promptriever's) are themselves noisy; `views="generated"` trusts the seed instead and
judges view b alone (bootstrap rows, with no seed view, are always judged whole).
`protocol="joint"` asks once per view for both documents, labelled 1 and 2, in an order
fixed by the pair id and swapped for half the pairs; a reply that labels one document
only is unparsable for both. Who answers is the `decider` (`validators.decide`): one
judge, or a cheap one that escalates to a strong one where it is unsure.

The verdict is the yes or no the judge wrote; text with neither is unparsable. Where
the provider returns log-probabilities for the token that wrote it, P(yes) there against
`threshold` decides instead. Every verdict is kept on the row.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from dvsynth.errors import AwaitingBatch, RowError, UserError
from dvsynth.llm.client import Completion, LLMClient
from dvsynth.prompts import PromptTemplate
from dvsynth.records import EXPECTED, Doc, DualView, Verdict
from dvsynth.validators.decide import Answer, Decided, Escalating, Reading, Single
from dvsynth.validators.step import StepOutcome

ANSWER_CHOICES = ("yes", "no")
_LABEL = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
#: "1: yes", "**2** - No", "Document 1: yes": a joint judgment's label for one document.
_JOINT_LABEL = re.compile(
    r"(?:document\s*)?\**([12])\**\s*[:.)=-]\s*\**\s*(yes|no)\b", re.IGNORECASE
)


def parse_label(text: str) -> bool | None:
    """The first yes / no the judge wrote, as a whole word ("**Yes**" and "No." count);
    None when the text holds neither, whatever its log-probabilities say."""
    match = _LABEL.search(text or "")
    return None if match is None else match.group(1).lower() == "yes"


def _bare(token: str) -> str:
    """A token without markdown, punctuation or spaces, lower-cased: "**Yes" -> "yes"."""
    return re.sub(r"[\W_]+", "", token).lower()


def probability_of_yes(
    text: str,
    logprobs: list[dict[str, float]] | None,
    tokens: list[str] | None = None,
) -> float | None:
    """P(yes) / (P(yes) + P(no)) among the alternatives at the position where the judge
    produced its verdict word (`parse_label`'s), found by laying `tokens` over `text`.

    None (the word alone decides) when the text has no verdict word, no log-probabilities
    came, the tokens do not spell the text, or the token there is not the word itself.
    A low-probability "Yes" among the alternatives of a leading "**" is not a verdict.
    """
    match = _LABEL.search(text or "")
    if match is None:
        return None
    return _probability_at(text, match.start(1), match.group(1).lower(), logprobs, tokens)


def _probability_at(
    text: str,
    at: int,
    word: str,
    logprobs: list[dict[str, float]] | None,
    tokens: list[str] | None,
) -> float | None:
    """P(yes) among the alternatives of the token that writes `word` at offset `at`."""
    if not logprobs:
        return None
    if tokens is None:  # cached before the produced token was kept: the likeliest one
        tokens = [max(alts, key=alts.__getitem__) if alts else "" for alts in logprobs]
    end = 0
    for token, alternatives in zip(tokens, logprobs, strict=False):
        start, end = end, end + len(token)
        if text[start:end] != token:
            return None
        if end <= at:
            continue
        if _bare(token) != word:
            return None
        mass = {"yes": 0.0, "no": 0.0}
        for alternative, logprob in alternatives.items():
            bare = _bare(alternative)
            if bare in mass:
                mass[bare] += math.exp(logprob)
        total = mass["yes"] + mass["no"]
        return mass["yes"] / total if total > 0 else None
    return None


def parse_joint(
    text: str, logprobs: list[dict[str, float]] | None = None, tokens: list[str] | None = None
) -> list[tuple[bool | None, float | None]]:
    """(label, P(yes)) for documents 1 and 2 of a joint judgment. A reply that does not
    label both exactly once (one only, or one twice with different words) is unparsable
    for both: half an answer is not a judgment of the pair."""
    found: dict[str, list[re.Match[str]]] = {"1": [], "2": []}
    for match in _JOINT_LABEL.finditer(text or ""):
        found[match.group(1)].append(match)
    readings: list[tuple[bool | None, float | None]] = []
    for number in ("1", "2"):
        words = {m.group(2).lower() for m in found[number]}
        if len(words) != 1:
            return [(None, None), (None, None)]
        match = found[number][0]
        word = match.group(2).lower()
        probability = _probability_at(text, match.start(2), word, logprobs, tokens)
        readings.append((word == "yes", probability))
    return readings


def joint_swapped(pair_id: str) -> bool:
    """Whether doc_b comes first in this pair's joint judgments: half the pairs, by a
    stable hash of the pair id, so position bias cannot favour either document."""
    return int(hashlib.sha256(f"joint:{pair_id}".encode()).hexdigest()[:8], 16) % 2 == 1


@dataclass
class JudgeOutcome(StepOutcome):
    """What the judge said about one pair, and what it cost."""

    verdicts: list[Verdict] = field(default_factory=list)
    negatives_b: list[str] | None = None  # other negatives judged not relevant under b


@dataclass
class Judge(Decided):
    """The judge as a validation step (`validators.step.Step`)."""

    client: LLMClient
    template: PromptTemplate
    threshold: float = 0.5
    negatives: bool = True  # also judge each other negative under view b
    max_tokens: int = 16
    logprobs: bool = True
    name: str = "judge"
    reason_prefix: str = "judge"
    views: Literal["all", "generated"] = "all"
    protocol: Literal["pointwise", "joint"] = "pointwise"
    decider: Single | Escalating | None = None  # None: `client` alone
    pointwise_template: PromptTemplate | None = None  # other negatives, with joint

    def settings(self) -> dict[str, Any]:
        assert self.decider is not None
        found: dict[str, Any] = {
            "model": self.client.model,
            "prompt": self.template.name,
            "prompt_sha256": self.template.sha256,
            "threshold": self.threshold,
            "max_tokens": self.max_tokens,
            "logprobs": self.logprobs,
            "negatives": self.negatives,
        }
        # Only what differs from the plain judge, so that runs judged before these
        # levers existed keep their settings hash.
        if self.views != "all":
            found["views"] = self.views
        if self.protocol != "pointwise":
            found["protocol"] = self.protocol
            if self.negatives and self.pointwise_template is not None:
                found["negatives_prompt_sha256"] = self.pointwise_template.sha256
        if isinstance(self.decider, Escalating):
            found["escalation"] = self.decider.settings()
        return found

    def describe(self) -> str:
        assert self.decider is not None
        negatives = (
            "; each other negative judged under view b, kept there only if not relevant"
            if self.negatives
            else "; other negatives not judged, so view b carries none"
        )
        calls = (
            "2 joint judgments per pair (one per view, both documents labelled, their order "
            "swapped for half the pairs)"
            if self.protocol == "joint"
            else "4 pointwise judgments per pair"
        )
        views = (
            "; in reverse mode view a was taken from the seed unjudged (only the generated "
            "view b was judged); bootstrap rows were judged whole"
            if self.views == "generated"
            else ""
        )
        return (
            f"LLM judge {self.decider.describe()} (prompt `{self.template.name}`, {calls}, "
            f"P(yes) threshold {self.threshold} where log-probabilities were "
            f"{'requested' if self.logprobs else 'not used'}, temperature 0, max tokens "
            f"{self.max_tokens}{negatives}{views})"
        )

    async def __call__(self, row: DualView) -> JudgeOutcome:
        """Judge `row` and record the verdicts (and view b's verified negatives) on it."""
        outcome = await self.judge(row)
        row.verdicts = outcome.verdicts
        row.negatives_b = outcome.negatives_b
        prov = row.provenance
        prov.judge_model = self.client.model
        prov.judge_prompt_name = self.template.name
        prov.judge_prompt_sha256 = self.template.sha256
        prov.judge_threshold = self.threshold
        prov.judge_views = "generated" if self.trusts_view_a(row) else None
        return outcome

    def trusts_view_a(self, row: DualView) -> bool:
        """View a is the seed's own (reverse mode) and `views="generated"` trusts it."""
        return self.views == "generated" and row.mode == "reverse"

    def judged_views(self, row: DualView) -> tuple[str, ...]:
        return ("b",) if self.trusts_view_a(row) else ("a", "b")

    async def judge(self, row: DualView) -> JudgeOutcome:
        """The judgments of the views judged (plus one per other negative under view b,
        when on).

        A provider fault that may pass (rate limit, timeout, 5xx) or a bug here goes to
        `transient`: the row is retried on the next run, with answered calls cached.
        """
        views = self.judged_views(row)
        if self.protocol == "joint":
            jobs: list[tuple[str, str, Doc | None]] = [(view, "both", None) for view in views]
        else:
            jobs = [(view, doc, None) for view in views for doc in ("a", "b")]
        if self.negatives:
            jobs += [("b", "other", other) for other in row.other_negatives]
        results = await asyncio.gather(
            *(self._judge_one(row, view, doc, other) for view, doc, other in jobs),
            return_exceptions=True,
        )
        outcome = JudgeOutcome()
        negatives_b: list[str] = []
        for (_, _, other), result in zip(jobs, results, strict=True):
            answered = take_answer(outcome, result, "judge")
            if answered is None:
                continue
            verdicts, _ = answered
            outcome.verdicts.extend(verdicts)
            for verdict in verdicts:
                if other is not None:
                    if verdict.relevant is False:  # only a clear "no" makes it a negative
                        negatives_b.append(other.doc_id)
                    continue
                view, doc = verdict.view, verdict.doc
                if verdict.relevant is None:
                    outcome.reasons.append(f"judge:view_{view}:doc_{doc}_unparsable")
                elif verdict.relevant != EXPECTED[(view, doc)]:
                    state = "relevant" if verdict.relevant else "not_relevant"
                    outcome.reasons.append(f"judge:view_{view}:doc_{doc}_{state}")
        outcome.reasons = sorted(set(outcome.reasons))
        outcome.transient = sorted(set(outcome.transient))
        outcome.negatives_b = negatives_b if self.negatives else None
        return outcome

    def _read(self, completion: Completion) -> list[Reading]:
        relevant = parse_label(completion.text)
        probability = probability_of_yes(completion.text, completion.logprobs, completion.tokens)
        return [self._decided(relevant, probability)]

    def _read_joint(self, completion: Completion) -> list[Reading]:
        readings = parse_joint(completion.text, completion.logprobs, completion.tokens)
        return [self._decided(label, probability) for label, probability in readings]

    def _decided(self, label: bool | None, probability: float | None) -> Reading:
        """P(yes) against the threshold decides where there is one and a word was written."""
        if label is not None and probability is not None:
            label = probability >= self.threshold
        return label, probability

    async def _judge_one(
        self, row: DualView, view: str, doc: str, other: Doc | None = None
    ) -> tuple[list[Verdict], Answer]:
        assert self.decider is not None
        instruction = (row.instruction_a if view == "a" else row.instruction_b) or ""
        if doc == "both":
            order = ("b", "a") if joint_swapped(row.pair_id) else ("a", "b")
            return await self.ask_joint(row, view, order)
        else:
            document: Doc = other or (row.doc_a if doc == "a" else row.doc_b)
            template = self.template
            if other is not None and self.protocol == "joint":
                template = self.pointwise_template or self.template
            messages = template.render(query=row.query, instruction=instruction, document=document)
            answer = await self.decider.ask(messages, self._read, ANSWER_CHOICES)
            docs = [doc]
        return self._verdicts(view, docs, other, answer, "pointwise"), answer

    async def ask_joint(
        self, row: DualView, view: str, order: tuple[str, str]
    ) -> tuple[list[Verdict], Answer]:
        """One joint judgment of `view`, the documents in `order` (("a", "b"): doc_a is
        document 1); calibrate asks both orders to measure position bias."""
        assert self.decider is not None
        instruction = (row.instruction_a if view == "a" else row.instruction_b) or ""
        first, second = (row.doc_a if d == "a" else row.doc_b for d in order)
        messages = self.template.render(
            query=row.query, instruction=instruction, first=first, second=second
        )
        answer = await self.decider.ask(messages, self._read_joint, ANSWER_CHOICES)
        return self._verdicts(view, list(order), None, answer, "joint"), answer

    def _verdicts(
        self, view: str, docs: list[str], other: Doc | None, answer: Answer, protocol: str
    ) -> list[Verdict]:
        return [
            Verdict(
                view=view,  # type: ignore[arg-type]
                doc=name,  # type: ignore[arg-type]
                doc_id=other.doc_id if other is not None else None,
                relevant=relevant,
                probability=None if probability is None else round(probability, 4),
                model=answer.model,
                raw=answer.raw[:200],
                escalation=answer.escalations[i] if answer.escalations else None,
                protocol=protocol,  # type: ignore[arg-type]
            )
            for i, (name, (relevant, probability)) in enumerate(
                zip(docs, answer.readings, strict=False)
            )
        ]


def take_answer(outcome: Any, result: Any, prefix: str) -> Any:
    """One gathered call's (verdict, completion), its usage added to `outcome`; or None
    after recording its fault there: a provider fault goes to `transient` (retried by a
    rerun) or `reasons` (final), a bug here to `transient`. A fatal error (bad key) and a
    cancellation are raised: the run decides."""
    if isinstance(result, RowError):
        reason = f"{prefix}:{result.reason}"
        (outcome.transient if result.transient else outcome.reasons).append(reason)
        outcome.errors.append(result.detail)
        return None
    if isinstance(result, (UserError, asyncio.CancelledError, AwaitingBatch)):
        raise result
    if isinstance(result, BaseException):  # a bug here fails the row, not the run
        outcome.transient.append(f"{prefix}:internal:{type(result).__name__}")
        outcome.errors.append(f"{type(result).__name__}: {result}"[:300])
        return None
    for model, completion in result[1].calls:
        outcome.add_call(completion, model)
    return result
