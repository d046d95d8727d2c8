"""The stage contract: a validation step is a name, its settings and a function over a row.

`Validator` applies the steps in order. Each step may annotate the row (verdicts, checks)
and returns a `StepOutcome`: final reasons (a verdict: the row is rejected), transient
faults (the row failed and the next run retries it), and what its LLM calls cost. The
first step that rejects or fails ends the row's checks. The run's settings hash, `stats`
and the dataset card read the step list (through `describe_steps`), never a hand-kept
copy, so adding a check is one module plus one line in `validators.run.default_steps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from dvsynth.errors import AwaitingBatch
from dvsynth.records import DualView, JudgeSpend, Usage


@dataclass
class StepOutcome:
    """What one step said about one row, and what its calls cost."""

    reasons: list[str] = field(default_factory=list)  # verdicts: the row is rejected
    transient: list[str] = field(default_factory=list)  # faults: a rerun retries the row
    errors: list[str] = field(default_factory=list)  # provider messages, redacted
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None: some call had no known price
    cached_calls: int = 0
    # The same spend by model (a cascade's two judges apart): `records.JudgeSpend`.
    by_model: dict[str, JudgeSpend] = field(default_factory=dict)
    # Every call's tokens and cost by model, cached ones too: what the setting costs
    # without a cache (calibrate scores several settings on one cache).
    worth: dict[str, JudgeSpend] = field(default_factory=dict)

    def add(self, other: StepOutcome) -> None:
        """Add another step's spend (reasons stay each step's own)."""
        self._spend(other.prompt_tokens, other.completion_tokens, other.cost_usd)
        self.cached_calls += other.cached_calls
        for mine, theirs in ((self.by_model, other.by_model), (self.worth, other.worth)):
            for model, spend in theirs.items():
                _merge(mine.setdefault(model, JudgeSpend()), spend)

    def add_call(self, completion: Any, model: str | None = None) -> None:
        """Add one LLM call's spend; a cached answer was paid before and only counts."""
        if model:
            _take(self.worth.setdefault(model, JudgeSpend()), completion, paid=True)
            _take(self.by_model.setdefault(model, JudgeSpend()), completion, not completion.cached)
        if completion.cached:
            self.cached_calls += 1
            return
        self._spend(completion.prompt_tokens, completion.completion_tokens, completion.cost_usd)

    def _spend(self, prompt: int, completion: int, cost: float | None) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cost_usd = None if cost is None or self.cost_usd is None else self.cost_usd + cost


def _plus(total: float | None, cost: float | None) -> float | None:
    return None if total is None or cost is None else total + cost


def _take(spend: JudgeSpend, completion: Any, paid: bool) -> None:
    """One call into `spend`: counted; its tokens and cost too when `paid`."""
    spend.calls += 1
    if not paid:
        spend.cached_calls += 1
        return
    spend.prompt_tokens += completion.prompt_tokens
    spend.completion_tokens += completion.completion_tokens
    spend.cost_usd = _plus(spend.cost_usd, completion.cost_usd)


def _merge(into: JudgeSpend, spend: JudgeSpend) -> None:
    into.calls += spend.calls
    into.cached_calls += spend.cached_calls
    into.prompt_tokens += spend.prompt_tokens
    into.completion_tokens += spend.completion_tokens
    into.cost_usd = _plus(into.cost_usd, spend.cost_usd)


@runtime_checkable
class Step(Protocol):
    """A validation step. `name` is the stage recorded on rows; every reason it gives
    starts with `reason_prefix` (rule:, check:, judge:); `settings()` is what changes its
    verdicts (hashed: a change re-validates the run); `describe()` is one phrase for the
    dataset card."""

    name: str
    reason_prefix: str

    def settings(self) -> dict[str, Any]: ...

    def describe(self) -> str: ...

    async def __call__(self, row: DualView) -> StepOutcome: ...


@dataclass
class Validator:
    """The per-row steps, in order; knows nothing of stores, files or terminals."""

    steps: list[Step]

    async def __call__(self, row: DualView) -> tuple[DualView, StepOutcome]:
        """The row through every step; raises `AwaitingBatch` when some step's answers
        are still to come from a batch. Then the later steps still run, so that their
        calls join the same batch (one round, not one per step): a row the check will
        reject may have its judge calls answered in vain, never paid twice."""
        row = row.model_copy(deep=True)
        spent = StepOutcome()
        waiting = False
        for step in self.steps:
            try:
                outcome = await step(row)
            except AwaitingBatch:
                waiting = True
                continue
            if waiting:
                continue
            row.stages.append(step.name)
            spent.add(outcome)
            if outcome.reasons or outcome.transient:
                return _settle(row, outcome, spent), spent
        if waiting:
            raise AwaitingBatch
        return _settle(row, StepOutcome(), spent), spent

    def clients(self) -> list[Any]:
        """The LLM clients of the steps, each once: the runner sets their cache and closes
        them in the event loop that used them."""
        found: dict[int, Any] = {}
        for step in self.steps:
            clients = getattr(step, "clients", None)
            if clients is None:
                client = getattr(step, "client", None)
                clients = [] if client is None else [client]
            found.update((id(c), c) for c in clients)
        return list(found.values())


def _settle(row: DualView, outcome: StepOutcome, spent: StepOutcome) -> DualView:
    """Status and reasons from the step that ended the row (a verdict outranks a fault),
    and the validation's LLM spend on the row's provenance."""
    if outcome.reasons:
        row.status = "rejected"
    elif outcome.transient:
        row.status = "failed"
    row.reasons = [*row.reasons, *outcome.reasons, *outcome.transient]
    if outcome.errors:
        row.error = outcome.errors[0]
    if spent.prompt_tokens or spent.completion_tokens or spent.cached_calls:
        row.provenance.judge_usage = Usage(
            prompt_tokens=spent.prompt_tokens, completion_tokens=spent.completion_tokens
        )
        row.provenance.judge_cost_usd = spent.cost_usd
        row.provenance.judge_spend = dict(sorted(spent.by_model.items())) or None
    return row


def describe_steps(steps: list[Step]) -> list[dict[str, Any]]:
    """The steps as the run records them: name, reason prefix, settings, description."""
    return [
        {
            "name": step.name,
            "reason_prefix": step.reason_prefix,
            "settings": step.settings(),
            "describe": step.describe(),
        }
        for step in steps
    ]
