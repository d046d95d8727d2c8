"""The LLM judge: does each view admit its own document and exclude the other one?

Four pointwise calls per pair, (view a, view b) x (doc_a, doc_b), so the order in which
documents appear can never bias a verdict. A pair passes only if view a admits doc_a
and excludes doc_b, and view b the reverse. In reverse mode view a is the seed's own
instruction: it is judged like the generated one, because seed instructions (such as
Promptriever's) are themselves noisy.

Where the provider returns log-probabilities, the verdict is P(yes) at the answer token
against `threshold`; otherwise it is the parsed word. Every verdict is kept on the row.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field

from dvsynth.errors import RowError, UserError
from dvsynth.llm.client import Completion, LLMClient
from dvsynth.prompts import PromptTemplate
from dvsynth.schema import Doc, DualView, Verdict

ANSWER_CHOICES = ("yes", "no")
_LABEL = re.compile(r"\b(yes|no)\b", re.IGNORECASE)

#: (view, doc) -> should the doc be relevant under the view?
EXPECTED: dict[tuple[str, str], bool] = {
    ("a", "a"): True,
    ("a", "b"): False,
    ("b", "b"): True,
    ("b", "a"): False,
}


def parse_label(text: str) -> bool | None:
    """The first standalone yes / no in the answer; None when there is neither."""
    match = _LABEL.search(text or "")
    return None if match is None else match.group(1).lower() == "yes"


def probability_of_yes(logprobs: list[dict[str, float]] | None) -> float | None:
    """P(yes) / (P(yes) + P(no)) at the first position whose alternatives hold either."""
    for alternatives in logprobs or []:
        mass = {"yes": 0.0, "no": 0.0}
        for token, logprob in alternatives.items():
            word = token.strip().lower()
            if word in mass:
                mass[word] += math.exp(logprob)
        if mass["yes"] + mass["no"] > 0:
            return mass["yes"] / (mass["yes"] + mass["no"])
    return None


@dataclass
class JudgeOutcome:
    """What the judge said about one pair, and what it cost."""

    verdicts: list[Verdict]
    reasons: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    cached_calls: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Judge:
    client: LLMClient
    template: PromptTemplate
    threshold: float = 0.5

    async def __call__(self, row: DualView) -> JudgeOutcome:
        jobs = [(view, doc) for view in ("a", "b") for doc in ("a", "b")]
        results = await asyncio.gather(
            *(self._judge_one(row, view, doc) for view, doc in jobs), return_exceptions=True
        )
        outcome = JudgeOutcome(verdicts=[], reasons=[])
        for (view, doc), result in zip(jobs, results, strict=True):
            if isinstance(result, RowError):
                outcome.reasons.append(f"judge:{result.reason}")
                outcome.errors.append(result.detail)
                continue
            if isinstance(result, (UserError, asyncio.CancelledError)):
                raise result  # fatal (bad key) or cancelled: the run decides
            if isinstance(result, BaseException):  # a bug here rejects the row, not the run
                outcome.reasons.append(f"judge:internal:{type(result).__name__}")
                outcome.errors.append(f"{type(result).__name__}: {result}"[:300])
                continue
            verdict, completion = result
            outcome.verdicts.append(verdict)
            _add_usage(outcome, completion)
            if verdict.relevant is None:
                outcome.reasons.append(f"judge:view_{view}:doc_{doc}_unparsable")
            elif verdict.relevant != EXPECTED[(view, doc)]:
                state = "relevant" if verdict.relevant else "not_relevant"
                outcome.reasons.append(f"judge:view_{view}:doc_{doc}_{state}")
        outcome.reasons = sorted(set(outcome.reasons))
        return outcome

    async def _judge_one(self, row: DualView, view: str, doc: str) -> tuple[Verdict, Completion]:
        instruction = row.instruction_a if view == "a" else row.instruction_b
        document: Doc = row.doc_a if doc == "a" else row.doc_b
        messages = self.template.render(
            query=row.query, instruction=instruction or "", document=document
        )
        completion = await self.client.complete(messages, answer_choices=ANSWER_CHOICES)
        probability = probability_of_yes(completion.logprobs)
        if probability is not None:
            relevant: bool | None = probability >= self.threshold
        else:
            relevant = parse_label(completion.text)
        verdict = Verdict(
            view=view,  # type: ignore[arg-type]
            doc=doc,  # type: ignore[arg-type]
            relevant=relevant,
            probability=None if probability is None else round(probability, 4),
            model=self.client.model,
            raw=completion.text[:200],
        )
        return verdict, completion


def _add_usage(outcome: JudgeOutcome, completion: Completion) -> None:
    if completion.cached:
        outcome.cached_calls += 1
        return
    outcome.prompt_tokens += completion.prompt_tokens
    outcome.completion_tokens += completion.completion_tokens
    if completion.cost_usd is None or outcome.cost_usd is None:
        outcome.cost_usd = None
    else:
        outcome.cost_usd += completion.cost_usd
