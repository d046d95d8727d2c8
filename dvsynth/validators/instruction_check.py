"""The instruction check: could a user have written this instruction without the passages?

The meta_language rule catches the usual ways a generator points at the passages it was
shown ("passage B", "the second one"); an LLM reads the phrasings no pattern lists. One
short call per generated instruction, with the query and the instruction only: without
the documents the model cannot be swayed by them, and the call stays cheap. "yes" keeps
the instruction; "no" rejects the row with `check:<field>:not_self_contained`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from dvsynth.llm.client import Completion, LLMClient
from dvsynth.prompts import DEFAULT_CHECK_PROMPT, PromptTemplate
from dvsynth.records import CheckVerdict, DualView
from dvsynth.validators.decide import Answer, Decided, Escalating, Reading, Single
from dvsynth.validators.judge import parse_label, probability_of_yes, take_answer
from dvsynth.validators.rules import generated_instructions
from dvsynth.validators.step import StepOutcome

#: The bundled template, unless a caller passes its own.
DEFAULT_INSTRUCTION_CHECK_PROMPT = DEFAULT_CHECK_PROMPT
#: The question line of the bundled template (the fake test server recognises it).
SIGNATURE = (
    "Is this instruction a self-contained information need that a user could write "
    "without seeing the candidate passages?"
)
ANSWER_CHOICES = ("yes", "no")
#: The first whole-word yes / no ("**Yes**" included); None when there is neither.
parse_answer = parse_label


@dataclass
class CheckOutcome(StepOutcome):
    """What the check said about one pair's generated instructions, and what it cost."""

    verdicts: list[CheckVerdict] = field(default_factory=list)
    calls: int = 0  # calls made, cached ones included


@dataclass
class InstructionCheck(Decided):
    """The check as a validation step (`validators.step.Step`); records its verdicts on
    the row (`checks`)."""

    client: LLMClient
    template: PromptTemplate
    name: str = "check"
    reason_prefix: str = "check"
    decider: Single | Escalating | None = None  # None: `client` alone
    threshold: float = 0.5  # P(yes) that keeps, where a cascade reads log-probabilities

    def settings(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "prompt": self.template.name,
            "prompt_sha256": self.template.sha256,
        }
        if isinstance(self.decider, Escalating):  # the plain check keeps its old hash
            found["escalation"] = self.decider.settings()
            found["threshold"] = self.threshold
        return found

    def describe(self) -> str:
        return (
            f"an LLM instruction check (prompt `{self.template.name}`: is each generated "
            "instruction a need a user could state without seeing the passages?"
            + (f"; {self.decider.describe()}" if isinstance(self.decider, Escalating) else "")
            + ")"
        )

    async def __call__(self, row: DualView) -> CheckOutcome:
        outcome = await self.check(row)
        row.checks = outcome.verdicts
        return outcome

    async def check(self, row: DualView) -> CheckOutcome:
        fields = [(name, text or "") for name, text in generated_instructions(row)]
        results = await asyncio.gather(
            *(self._check_one(row.query, name, text) for name, text in fields),
            return_exceptions=True,
        )
        outcome = CheckOutcome(calls=len(fields))
        for (name, _), result in zip(fields, results, strict=True):
            answered = take_answer(outcome, result, "check")
            if answered is None:
                continue
            verdict, _ = answered
            outcome.verdicts.append(verdict)
            if verdict.ok is None:
                outcome.reasons.append(f"check:{name}:unparsable")
            elif not verdict.ok:
                outcome.reasons.append(f"check:{name}:not_self_contained")
        outcome.reasons = sorted(set(outcome.reasons))
        return outcome

    def _read(self, completion: Completion) -> list[Reading]:
        """The word decides alone for one judge (as before cascades); in a cascade P(yes)
        against the threshold decides where there is one, as for the judge."""
        ok = parse_answer(completion.text)
        probability = probability_of_yes(completion.text, completion.logprobs, completion.tokens)
        if isinstance(self.decider, Escalating) and ok is not None and probability is not None:
            ok = probability >= self.threshold
        return [(ok, probability)]

    async def _check_one(
        self, query: str, name: str, instruction: str
    ) -> tuple[CheckVerdict, Answer]:
        assert self.decider is not None
        messages = self.template.render(query=query, instruction=instruction)
        answer = await self.decider.ask(messages, self._read, ANSWER_CHOICES)
        ok, probability = answer.readings[0]
        verdict = CheckVerdict(
            field=name,  # type: ignore[arg-type]
            ok=ok,
            model=answer.model,
            raw=answer.raw[:200],
            probability=None if probability is None else round(probability, 4),
            escalation=answer.escalations[0] if answer.escalations else None,
        )
        return verdict, answer
