"""`dvsynth stats`: what a set of runs holds, stage by stage, as plain data.

One streaming pass over the rows (at their latest stage) gives counts by status and
reason, acceptance per stage, how often the judge agrees with the labels the generator
intended, instruction lengths, and tokens and cost for the generator and the judge.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dvsynth.records import EXPECTED, DualView
from dvsynth.runs.dirs import iter_runs, recorded_validations

GENERATE = "generate"
_WORD = re.compile(r"\w+")


def format_cost(usd: float, unknown: int) -> str:
    """Cost with the share we could not price said out loud, never silently as $0."""
    if unknown and usd == 0:
        return "unknown"
    text = f"${usd:.4f}"
    return f"{text} + {unknown} rows unpriced" if unknown else text


def reason_family(reason: str) -> str:
    """`dedup:near:<pair_id>` -> `dedup:near`: ids make every reason unique otherwise."""
    parts = reason.split(":")
    return ":".join(parts[:2]) if parts[0] == "dedup" else reason


def recorded_stages(run_dirs: Sequence[Path]) -> dict[str, str]:
    """stage -> reason prefix, in order: generate, then the validation steps the runs
    recorded (`validators.step.describe_steps`), then dedup where it ran."""
    stages = {GENERATE: ""}
    for recorded in recorded_validations(run_dirs):
        recorded = recorded or {}
        steps = recorded.get("steps") or []  # a run validated by an older dvsynth: none
        if recorded.get("dedup"):
            steps = [*steps, recorded["dedup"]]
        for step in steps:
            stages.setdefault(step["name"], step["reason_prefix"])
    return stages


def _distribution(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "count": len(ordered),
        "min": ordered[0],
        "p10": at(0.10),
        "median": statistics.median(ordered),
        "p90": at(0.90),
        "max": ordered[-1],
        "mean": round(statistics.fmean(ordered), 2),
    }


class _Spend:
    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.unpriced_rows = 0

    def add(self, prompt: int, completion: int, cost: float | None) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        if cost is None:
            self.unpriced_rows += 1
        else:
            self.cost_usd += cost

    def merge(self, other: _Spend) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        self.unpriced_rows += other.unpriced_rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced_rows": self.unpriced_rows,
        }


class StatsCollector:
    """The counts of `dvsynth stats`, fed one row at a time, so an export that already
    streams the rows gets them in the same pass."""

    def __init__(self, stages: dict[str, str] | None = None) -> None:
        """`stages`: stage -> reason prefix (`recorded_stages` of the runs)."""
        self.stages = stages or {GENERATE: ""}
        self._stage_of_prefix = {prefix: stage for stage, prefix in self.stages.items() if prefix}
        self.status: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.entered: Counter[str] = Counter()
        self.passed: Counter[str] = Counter()
        self.modes: Counter[str] = Counter()
        self.lengths: dict[str, list[int]] = {"instruction_a": [], "instruction_b": []}
        self.agree_judgments = self.judgments = self.agree_pairs = self.judged_pairs = 0
        self.pending_validation = 0
        self.verified = 0
        self.failed: Counter[str] = Counter()  # transient faults by stage: retried on rerun
        self.unverified_stages: Counter[str] = Counter()  # kept rows not yet verified
        self.negatives = {"view_a": 0, "view_b": 0, "judged": 0}
        self.generator, self.judge = _Spend(), _Spend()
        self.judges: dict[str, _Spend] = {}  # by judge model (a cascade's two apart)
        self.judge_calls: Counter[str] = Counter()
        self.questions = self.escalated = 0  # a cascade's judgments and checks
        self.escalated_why: Counter[str] = Counter()
        self.view_a_unjudged = 0  # rows whose view a was taken from the seed unjudged

    def add(self, row: DualView) -> None:
        self.status[row.status] += 1
        self.modes[row.mode] += 1
        if row.status == "failed":  # not a verdict: the next run tries it again
            self.failed[self._stage_of(row.reasons[0]) if row.reasons else GENERATE] += 1
            return
        self.reasons.update(reason_family(r) for r in row.reasons)
        failed_at = {self._stage_of(r) for r in row.reasons}
        for stage in self.stages:
            if stage in row.stages:
                self.entered[stage] += 1
                self.passed[stage] += stage not in failed_at
        if row.status == "kept" and not row.verified:
            self.pending_validation += 1
            self.unverified_stages[row.stage] += 1
        self.verified += row.verified
        pair_verdicts = [v for v in row.verdicts if v.doc != "other"]
        trusted_a = row.provenance.judge_views == "generated"
        self.view_a_unjudged += trusted_a
        if pair_verdicts:
            self.judged_pairs += 1
            agreed = [v.relevant == EXPECTED[(v.view, v.doc)] for v in pair_verdicts]
            self.judgments += len(agreed)
            self.agree_judgments += sum(agreed)
            self.agree_pairs += len(agreed) == (2 if trusted_a else 4) and all(agreed)
        for verdict in [*row.verdicts, *row.checks]:
            if verdict.escalation is not None:
                self.questions += 1
                self.escalated += verdict.escalation.escalated
                if verdict.escalation.why:
                    self.escalated_why[verdict.escalation.why] += 1
        if row.status == "kept":
            _lengths(row, self.lengths)
            view_a, view_b = row.views()
            self.negatives["view_a"] += len(view_a.other_negatives)
            self.negatives["view_b"] += len(view_b.other_negatives)
            self.negatives["judged"] += sum(v.doc == "other" for v in row.verdicts)
        prov = row.provenance
        if not prov.cached:
            self.generator.add(
                prov.usage.prompt_tokens, prov.usage.completion_tokens, prov.cost_usd
            )
        if prov.judge_usage is not None:
            self.judge.add(
                prov.judge_usage.prompt_tokens,
                prov.judge_usage.completion_tokens,
                prov.judge_cost_usd,
            )
        for model, spend in (prov.judge_spend or {}).items():
            self.judge_calls[model] += spend.calls
            self.judges.setdefault(model, _Spend()).add(
                spend.prompt_tokens, spend.completion_tokens, spend.cost_usd
            )

    def merge(self, other: StatsCollector) -> None:
        """Add what `other` (a collector over other rows, with the same stages) counted:
        the viewer counts a run by chunks of rows and adds them up, so a change re-reads
        only its chunk."""
        for name, mine in vars(self).items():
            theirs = getattr(other, name)
            if name in ("stages", "_stage_of_prefix"):
                continue
            if isinstance(mine, Counter):
                mine.update(theirs)
            elif isinstance(mine, _Spend):
                mine.merge(theirs)
            elif isinstance(mine, dict):
                for key, value in theirs.items():
                    if isinstance(value, list):
                        mine[key].extend(value)
                    elif isinstance(value, _Spend):
                        mine.setdefault(key, _Spend()).merge(value)
                    else:
                        mine[key] += value
            else:
                setattr(self, name, mine + theirs)

    def _stage_of(self, reason: str) -> str:
        return self._stage_of_prefix.get(reason.split(":", 1)[0], GENERATE)

    def result(self, run_dirs: Sequence[Path]) -> dict[str, Any]:
        entered, passed = self.entered, self.passed
        judged, judgments = self.judged_pairs, self.judgments
        return {
            "runs": [str(d) for d in run_dirs],
            "rows": sum(self.status.values()),
            "status": dict(self.status),
            "modes": dict(self.modes),
            "reasons": dict(self.reasons.most_common()),
            "stages": {
                stage: {
                    "entered": entered[stage],
                    "passed": passed[stage],
                    "acceptance": round(passed[stage] / entered[stage], 4)
                    if entered[stage]
                    else None,
                }
                for stage in self.stages
            },
            "verified": self.verified,
            "pending_validation": self.pending_validation,
            "unverified_by_stage": dict(self.unverified_stages),
            "failed_will_retry": dict(self.failed),
            "other_negatives_kept": dict(self.negatives),
            "judge_agreement": {
                "pairs_judged": judged,
                "pairs_all_four_agree": self.agree_pairs,
                "pair_agreement": round(self.agree_pairs / judged, 4) if judged else None,
                "judgment_agreement": round(self.agree_judgments / judgments, 4)
                if judgments
                else None,
            },
            "instruction_words_kept": {k: _distribution(v) for k, v in self.lengths.items()},
            "generator": self.generator.as_dict(),
            "judge": self.judge.as_dict(),
            "judges": {
                model: {**spend.as_dict(), "calls": self.judge_calls[model]}
                for model, spend in sorted(self.judges.items())
            },
            "escalation": {
                "questions": self.questions,
                "escalated": self.escalated,
                "share_escalated": round(self.escalated / self.questions, 4)
                if self.questions
                else None,
                "why": dict(self.escalated_why),
            },
            "view_a_unjudged": self.view_a_unjudged,
            "batch": batch_spend(run_dirs),
            "audit": _audits(run_dirs),
            "batch_by_model": batch_spend_by_model(run_dirs),
        }


def _audits(run_dirs: Sequence[Path]) -> dict[str, Any]:
    """Each audited run's figures (`view.audit.summaries`): what people found."""
    from dvsynth.view.audit import summaries

    return summaries(list(run_dirs))


def _no_spend() -> dict[str, Any]:
    keys = ("answered", "prompt_tokens", "completion_tokens", "cost_usd", "unpriced", "open")
    return dict.fromkeys(keys, 0)


def batch_spend(run_dirs: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Per stage, what the runs' batches answered and cost, apart from the online spend
    (`generator`, `judge`), which counts batch answers as cached; and `open`, requests
    still waiting for an answer (their rows are not in the run yet)."""
    from dvsynth.runs.store import RunStore

    total: dict[str, dict[str, Any]] = {}
    for run in run_dirs:
        store = RunStore.open_existing(run)
        try:
            spend = store.ledger().spend()
            states = store.ledger().states()
        finally:
            store.close()
        for stage, by_state in states.items():
            into = total.setdefault(stage, _no_spend())
            into["open"] += by_state.get("queued", 0) + by_state.get("assigned", 0)
        for stage, found in spend.items():
            into = total.setdefault(stage, _no_spend())
            for key, value in found.items():
                into[key] = round(into[key] + value, 6) if key == "cost_usd" else into[key] + value
    return total


def batch_spend_by_model(run_dirs: Sequence[Path]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per stage and model, what the runs' batches answered and cost: the cost of each
    judge of a cascade, which online spend counts on the rows (`judges`)."""
    from dvsynth.runs.store import RunStore

    total: dict[str, dict[str, dict[str, Any]]] = {}
    for run in run_dirs:
        store = RunStore.open_existing(run)
        try:
            found = store.ledger().spend_by_model()
        finally:
            store.close()
        for (stage, model), spend in found.items():
            into = total.setdefault(stage, {}).setdefault(model, dict.fromkeys(spend, 0))
            for key, value in spend.items():
                into[key] = round(into[key] + value, 6) if key == "cost_usd" else into[key] + value
    return total


def compute_stats(run_dirs: Sequence[Path]) -> dict[str, Any]:
    collector = StatsCollector(recorded_stages(run_dirs))
    for row in iter_runs(run_dirs):
        collector.add(row)
    return collector.result(run_dirs)


def _lengths(row: DualView, lengths: dict[str, list[int]]) -> None:
    for name in lengths:
        text = getattr(row, name) or ""
        lengths[name].append(len(_WORD.findall(text)))
