"""Who answers a yes / no question of the validation: one judge, or a cascade of two.

The judge and the instruction check ask questions whose answers are yes / no words
(one per document, or two in a joint judgment). A `Single` decider sends each question
to its one client. An `Escalating` decider sends it to a cheap client with
log-probabilities first, and to a strong one only where the cheap answer is unsure: a
P(yes) within `margin` of 0.5 (both edges included), an answer without a parsable word,
or one that came without log-probabilities. The strong answer then stands. Either way
the caller gets the readings that decide, every call made (for the bill of each model),
and per reading the `Escalation` record of how it was decided.

A provider that returns no log-probabilities (Anthropic) makes every question escalate:
the cascade then costs more than the strong judge alone (`no_logprobs_provider`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from dvsynth.llm.client import Completion, LLMClient
from dvsynth.records import Escalation

#: (label, P(yes)): the word the judge wrote (None: neither yes nor no) and, where the
#: provider gave log-probabilities for it, the probability that decided it.
Reading = tuple[bool | None, float | None]
#: What a step reads out of one completion: one reading per question it asked.
Reader = Callable[[Completion], list[Reading]]
Why = Literal["margin", "unparsable", "no_logprobs"]

#: Providers whose chat API returns no log-probabilities.
NO_LOGPROBS_PROVIDERS = ("anthropic",)


@dataclass
class Answer:
    """The readings that stand, who gave them, and every call it took."""

    readings: list[Reading]
    model: str
    raw: str
    calls: list[tuple[str, Completion]] = field(default_factory=list)  # (model, completion)
    escalations: list[Escalation] | None = None  # one per reading, from a cascade


def why_escalate(reading: Reading, margin: float) -> Why | None:
    """Why a cheap reading goes to the strong judge, or None when it stands.

    Inclusive at both edges: with margin 0.2, P(yes) 0.3 and 0.7 escalate, 0.29 and 0.71
    do not (the difference is rounded to 9 places, so 0.7 - 0.5 counts as 0.2)."""
    label, probability = reading
    if label is None:
        return "unparsable"
    if probability is None:
        return "no_logprobs"
    return "margin" if round(abs(probability - 0.5), 9) <= margin else None


@dataclass
class Single:
    """One judge decides every question."""

    client: LLMClient

    @property
    def clients(self) -> list[LLMClient]:
        return [self.client]

    @property
    def model(self) -> str:
        return self.client.model

    def settings(self) -> dict[str, Any]:
        return {"model": self.client.model}

    def describe(self) -> str:
        return f"`{self.client.model}`"

    async def ask(
        self, messages: list[dict[str, str]], read: Reader, choices: tuple[str, ...]
    ) -> Answer:
        completion = await self.client.complete(messages, answer_choices=choices)
        return Answer(
            read(completion), self.client.model, completion.text, [(self.model, completion)]
        )


@dataclass
class Escalating:
    """The cheap judge first; the strong one where the cheap one is unsure."""

    cheap: LLMClient
    strong: LLMClient
    margin: float
    picked: dict[str, Any] | None = None  # how `auto` chose the margin (gold, target)

    @property
    def clients(self) -> list[LLMClient]:
        return [self.cheap, self.strong]

    @property
    def model(self) -> str:
        return self.cheap.model

    def settings(self) -> dict[str, Any]:
        found = {"model": self.cheap.model, "escalate_to": self.strong.model, "margin": self.margin}
        if self.picked:
            found["margin_picked_on"] = self.picked
        return found

    def describe(self) -> str:
        return (
            f"`{self.cheap.model}` first, escalated to `{self.strong.model}` (whose verdict "
            f"stands) when P(yes) lies within {self.margin:g} of 0.5, the answer is "
            "unparsable or came without log-probabilities"
        )

    async def ask(
        self, messages: list[dict[str, str]], read: Reader, choices: tuple[str, ...]
    ) -> Answer:
        first = await self.cheap.complete(messages, answer_choices=choices)
        cheap = read(first)
        reasons = [why_escalate(r, self.margin) for r in cheap]
        calls = [(self.cheap.model, first)]
        if not any(reasons):
            records = [
                Escalation(
                    cheap_model=self.cheap.model,
                    cheap_probability=_rounded(p),
                    strong_model=self.strong.model,
                    escalated=False,
                )
                for _, p in cheap
            ]
            return Answer(cheap, self.cheap.model, first.text, calls, records)
        second = await self.strong.complete(messages, answer_choices=choices)
        calls.append((self.strong.model, second))
        strong = read(second)
        why = next(r for r in reasons if r)
        records = [
            Escalation(
                cheap_model=self.cheap.model,
                cheap_probability=_rounded(c[1]),
                strong_model=self.strong.model,
                strong_probability=_rounded(s[1]),
                escalated=True,
                why=reason or why,
            )
            for c, s, reason in zip(cheap, _padded(strong, len(cheap)), reasons, strict=True)
        ]
        return Answer(strong, self.strong.model, second.text, calls, records)


class Decided:
    """What a step that asks through a decider shares: without one, its `client` alone
    decides; `clients` are every model it may call (the runner sets their cache)."""

    client: LLMClient
    decider: Single | Escalating | None

    def __post_init__(self) -> None:
        if self.decider is None:
            self.decider = Single(self.client)

    @property
    def clients(self) -> list[LLMClient]:
        assert self.decider is not None
        return self.decider.clients


def _padded(readings: list[Reading], count: int) -> list[Reading]:
    return (readings + [(None, None)] * count)[:count]


def _rounded(probability: float | None) -> float | None:
    return None if probability is None else round(probability, 4)


def no_logprobs_provider(client: LLMClient) -> bool:
    """Whether this client's provider returns no log-probabilities (every answer of a
    cheap judge there escalates)."""
    try:
        return client.provider()[0] in NO_LOGPROBS_PROVIDERS
    except Exception:  # an unknown provider is refused elsewhere, with its own line
        return False
