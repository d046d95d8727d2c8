"""The LLM judge: does each view admit its own document and exclude the other one?

Four pointwise calls per pair, (view a, view b) x (doc_a, doc_b), so the order in which
documents appear can never bias a verdict. A pair passes only if view a admits doc_a
and excludes doc_b, and view b the reverse. In reverse mode view a is the seed's own
instruction: it is judged like the generated one, because seed instructions (such as
Promptriever's) are themselves noisy.

The verdict is the yes or no the judge wrote; text with neither is unparsable. Where
the provider returns log-probabilities for the token that wrote it, P(yes) there against
`threshold` decides instead. Every verdict is kept on the row.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from typing import Any

from dvsynth.errors import AwaitingBatch, RowError, UserError
from dvsynth.llm.client import Completion, LLMClient
from dvsynth.prompts import PromptTemplate
from dvsynth.records import EXPECTED, Doc, DualView, Verdict
from dvsynth.validators.step import StepOutcome

ANSWER_CHOICES = ("yes", "no")
_LABEL = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


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
    if match is None or not logprobs:
        return None
    if tokens is None:  # cached before the produced token was kept: the likeliest one
        tokens = [max(alts, key=alts.__getitem__) if alts else "" for alts in logprobs]
    end = 0
    for token, alternatives in zip(tokens, logprobs, strict=False):
        start, end = end, end + len(token)
        if text[start:end] != token:
            return None
        if end <= match.start():
            continue
        if _bare(token) != match.group(1).lower():
            return None
        mass = {"yes": 0.0, "no": 0.0}
        for alternative, logprob in alternatives.items():
            word = _bare(alternative)
            if word in mass:
                mass[word] += math.exp(logprob)
        total = mass["yes"] + mass["no"]
        return mass["yes"] / total if total > 0 else None
    return None


@dataclass
class JudgeOutcome(StepOutcome):
    """What the judge said about one pair, and what it cost."""

    verdicts: list[Verdict] = field(default_factory=list)
    negatives_b: list[str] | None = None  # other negatives judged not relevant under b


@dataclass
class Judge:
    """The judge as a validation step (`validators.step.Step`)."""

    client: LLMClient
    template: PromptTemplate
    threshold: float = 0.5
    negatives: bool = True  # also judge each other negative under view b
    max_tokens: int = 16
    logprobs: bool = True
    name: str = "judge"
    reason_prefix: str = "judge"

    def settings(self) -> dict[str, Any]:
        return {
            "model": self.client.model,
            "prompt": self.template.name,
            "prompt_sha256": self.template.sha256,
            "threshold": self.threshold,
            "max_tokens": self.max_tokens,
            "logprobs": self.logprobs,
            "negatives": self.negatives,
        }

    def describe(self) -> str:
        negatives = (
            "; each other negative judged under view b, kept there only if not relevant"
            if self.negatives
            else "; other negatives not judged, so view b carries none"
        )
        return (
            f"LLM judge `{self.client.model}` (prompt `{self.template.name}`, 4 pointwise "
            f"judgments per pair, P(yes) threshold {self.threshold} where log-probabilities "
            f"were {'requested' if self.logprobs else 'not used'}, temperature 0, max tokens "
            f"{self.max_tokens}{negatives})"
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
        return outcome

    async def judge(self, row: DualView) -> JudgeOutcome:
        """The four judgments (plus one per other negative under view b, when on).

        A provider fault that may pass (rate limit, timeout, 5xx) or a bug here goes to
        `transient`: the row is retried on the next run, with answered calls cached.
        """
        jobs: list[tuple[str, str, Doc | None]] = [
            (view, doc, None) for view in ("a", "b") for doc in ("a", "b")
        ]
        if self.negatives:
            jobs += [("b", "other", other) for other in row.other_negatives]
        results = await asyncio.gather(
            *(self._judge_one(row, view, doc, other) for view, doc, other in jobs),
            return_exceptions=True,
        )
        outcome = JudgeOutcome()
        negatives_b: list[str] = []
        for (view, doc, other), result in zip(jobs, results, strict=True):
            answered = take_answer(outcome, result, "judge")
            if answered is None:
                continue
            verdict, _ = answered
            outcome.verdicts.append(verdict)
            if other is not None:
                if verdict.relevant is False:  # only a clear "no" makes it a negative
                    negatives_b.append(other.doc_id)
                continue
            if verdict.relevant is None:
                outcome.reasons.append(f"judge:view_{view}:doc_{doc}_unparsable")
            elif verdict.relevant != EXPECTED[(view, doc)]:
                state = "relevant" if verdict.relevant else "not_relevant"
                outcome.reasons.append(f"judge:view_{view}:doc_{doc}_{state}")
        outcome.reasons = sorted(set(outcome.reasons))
        outcome.transient = sorted(set(outcome.transient))
        outcome.negatives_b = negatives_b if self.negatives else None
        return outcome

    async def _judge_one(
        self, row: DualView, view: str, doc: str, other: Doc | None = None
    ) -> tuple[Verdict, Completion]:
        instruction = row.instruction_a if view == "a" else row.instruction_b
        document: Doc = other or (row.doc_a if doc == "a" else row.doc_b)
        messages = self.template.render(
            query=row.query, instruction=instruction or "", document=document
        )
        completion = await self.client.complete(messages, answer_choices=ANSWER_CHOICES)
        relevant = parse_label(completion.text)
        probability = probability_of_yes(completion.text, completion.logprobs, completion.tokens)
        if probability is not None:
            relevant = probability >= self.threshold
        verdict = Verdict(
            view=view,  # type: ignore[arg-type]
            doc=doc,  # type: ignore[arg-type]
            doc_id=other.doc_id if other is not None else None,
            relevant=relevant,
            probability=None if probability is None else round(probability, 4),
            model=self.client.model,
            raw=completion.text[:200],
        )
        return verdict, completion


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
    outcome.add_call(result[1])
    return result
