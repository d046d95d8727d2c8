"""All terminal output: progress bars, warnings and summaries of generate and validate,
and the tables of stats and calibrate.

Kept out of the library, whose calls take callbacks and return plain data, so library
users get no terminal output.
"""

from __future__ import annotations

import shlex
import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dvsynth.records import DualView, SeedError
from dvsynth.runs.pipeline import RunStats
from dvsynth.runs.stats import format_cost
from dvsynth.runs.store import RunStore

if TYPE_CHECKING:  # validators.run pulls numpy and rapidfuzz (dedup): not for generate
    from dvsynth.validators.run import ValidateStats

MAX_WARNINGS = 10
PROGRESS_UPDATE_S = 0.1


def _this_command() -> str:
    """The command line as typed: what to rerun to collect a batch."""
    return " ".join(shlex.quote(a) for a in ["dvsynth", *sys.argv[1:]])


class BatchLines:
    """What generate and validate print about batches and estimates (to stdout, even
    with --quiet: it says how to collect what was paid for)."""

    console: Console
    out: Console
    _waiting: Progress | None = None
    _waiting_task: Any = None

    def on_batch_status(self, seen: list[Any]) -> None:
        """--wait: one progress bar over every open batch's requests."""
        total = sum(status.counts.get("total", 0) or batch.requests for batch, status in seen)
        done = sum(
            sum(status.counts.get(k, 0) for k in ("completed", "failed", "expired", "cancelled"))
            for _, status in seen
        )
        states = ", ".join(sorted({status.state for _, status in seen})) or "none open"
        if self._waiting is None:
            progress = getattr(self, "progress", None)
            if progress is not None:
                progress.stop()
            self._waiting = Progress(
                TextColumn("batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[states]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._waiting.start()
            self._waiting_task = self._waiting.add_task("batch", total=total, states=states)
        self._waiting.update(self._waiting_task, total=total, completed=done, states=states)

    def stop_waiting(self) -> None:
        if self._waiting is not None:
            self._waiting.stop()
            self._waiting = None

    def print_estimate(self, estimate: Any) -> None:
        from dvsynth.llm.cost import format_estimate

        self.out.print(f"dry run, nothing sent: {format_estimate(estimate)}", highlight=False)

    def print_batch(self, round_: Any, waiting: int, runs: str) -> None:
        self.stop_waiting()
        collected = round_.collected
        lines = []
        if collected.finished or collected.answered:
            lines.append(
                f"collected {collected.finished} batches: {collected.answered} answers, "
                f"{collected.errors} errors, {collected.resubmit} to send again "
                f"({collected.missing} missing from results)"
            )
        if collected.unknown or collected.bad_lines or collected.repeated:
            lines.append(
                f"results ignored: {collected.unknown} with ids this run never sent, "
                f"{collected.bad_lines} unreadable lines (their requests are sent again), "
                f"{collected.repeated} later lines for answered requests"
            )
        for failed in collected.failed_batches:
            lines.append(f"batch failed at the provider: {failed}")
        if round_.submitted.recovered or round_.submitted.released:
            lines.append(
                f"found {round_.submitted.recovered} batches sent before an interruption; "
                f"{round_.submitted.released} requests of unsent ones queued again"
            )
        if round_.submitted.undecided:
            lines.append(
                f"{round_.submitted.undecided} batches sent before an interruption cannot be "
                "told apart from others at the provider yet: their requests stay held, "
                "nothing is sent again; rerun once the provider's open batches end"
            )
        if round_.out is not None and not round_.written:
            lines.append(f"nothing is pending: no request to write, {round_.out} not written")
        elif round_.out is not None:
            lines.append(
                f"wrote {round_.written} requests to {round_.out} (OpenAI batch format); run "
                f"them, e.g. `vllm run-batch -i {round_.out} -o results.jsonl --model MODEL`, "
                f"then `dvsynth batch import {runs} results.jsonl` and rerun this command"
            )
        elif round_.submitted.requests:
            lines.append(
                f"submitted {round_.submitted.requests} requests in "
                f"{len(round_.submitted.batches)} batches"
            )
        if round_.estimate is not None:
            from dvsynth.llm.cost import format_estimate

            lines.append(f"estimate checked against --max-cost: {format_estimate(round_.estimate)}")
        if round_.open_batches or (waiting and round_.out is None):
            lines.append(
                f"{waiting} rows wait on {round_.open_batches} open batches: "
                f"`dvsynth batch status {runs}` shows them; rerun `{_this_command()}` to "
                "collect (or add --wait)"
            )
        elif not waiting and round_.out is None and collected.errors:
            lines.append(
                f"{collected.errors} requests ended in an error: their rows are rejected, or "
                "failed and retried by the next run of this command"
            )
        elif not waiting and round_.out is None:
            lines.append("every request of this stage is answered")
        for line in lines:
            self.out.print(line, highlight=False, soft_wrap=True)


class GenerateReporter(BatchLines):
    def __init__(self, quiet: bool = False, total: int | None = None) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.out = Console()
        self.total = total
        self.started = time.perf_counter()
        self.warnings = 0
        self.progress: Progress | None = None
        self.task: Any = None
        self._shown_at = 0.0  # when the bar's numbers were last updated
        self._unshown: RunStats | None = None  # counts newer than the bar's

    def __enter__(self) -> GenerateReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            if self._unshown is not None:
                self._show(self._unshown)
            self.progress.stop()

    def on_start(self, prepared: Any, total: int | None) -> None:
        self.started = time.perf_counter()
        if self.quiet:
            return
        self.console.print(f"run: {prepared.run_dir}  model: {prepared.config.model}")
        self.progress = Progress(
            TextColumn("generate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("kept {task.fields[kept]} rejected {task.fields[rejected]}"),
            TextColumn("tok {task.fields[tokens]}"),
            TextColumn("{task.fields[cost]}"),
            TextColumn("{task.fields[rate]} rows/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "generate", total=total, kept=0, rejected=0, tokens=0, cost="$0", rate="0.0"
        )

    def on_row(self, row: DualView, stats: RunStats) -> None:
        """Update the bar at most PROGRESS_UPDATE_S apart (it redraws 10 times a second
        anyway); at hundreds of rows a second an update per row is CPU for nothing."""
        if self.progress is None:
            return
        now = time.perf_counter()
        if now - self._shown_at < PROGRESS_UPDATE_S:
            self._unshown = stats
            return
        self._show(stats, now)

    def _show(self, stats: RunStats, now: float | None = None) -> None:
        assert self.progress is not None
        self._shown_at = now = now if now is not None else time.perf_counter()
        self._unshown = None
        elapsed = max(now - self.started, 1e-9)
        self.progress.update(
            self.task,
            completed=stats.done_now + stats.already_done,
            kept=stats.kept,
            rejected=stats.rejected,
            tokens=stats.prompt_tokens + stats.completion_tokens,
            cost=format_cost(stats.cost_usd, stats.cost_unknown),
            rate=f"{stats.done_now / elapsed:.1f}",
        )

    def on_notice(self, message: str) -> None:
        """A warning the user should see even with --quiet: it changes what the run means."""
        self.console.print(
            f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True
        )

    def on_bad_seed(self, error: SeedError) -> None:
        self.warnings += 1
        if not self.quiet and self.warnings <= MAX_WARNINGS:
            self.console.print(
                f"[yellow]skipped[/] {error.location}: {error.reason}",
                highlight=False,
                soft_wrap=True,
            )

    def summary(self, prepared: Any, stats: RunStats) -> None:
        if self.progress is not None:
            if self._unshown is not None:
                self._show(self._unshown)
            self.progress.stop()
            self.progress = None
        if stats.estimate is not None:
            self.print_estimate(stats.estimate)
            return
        self._summary(prepared, stats)
        if stats.batch is not None:
            self.print_batch(stats.batch, stats.waiting, str(prepared.run_dir))

    def _summary(self, prepared: Any, stats: RunStats) -> None:
        elapsed = time.perf_counter() - self.started
        store = RunStore.open_existing(prepared.run_dir)
        try:
            totals = store.status_counts()
        finally:
            store.close()
        kept, rejected = totals.get("kept", 0), totals.get("rejected", 0)
        failed = totals.get("failed", 0)
        if stats.duplicates:  # a data problem the user must see, even with --quiet
            self.on_notice(
                f"{stats.duplicates} seed rows reuse an id an earlier row has; they were "
                f"set apart, not generated: {'; '.join(stats.duplicate_locations)}"
                + (" ..." if stats.duplicates > len(stats.duplicate_locations) else "")
            )
        if self.quiet:
            if stats.stopped_by_cost:
                self.out.print("stopped: --max-cost reached", highlight=False)
            self.out.print(
                f"{prepared.run_dir}: {kept} kept, {rejected} rejected, {failed} failed "
                f"({stats.done_now} new in {elapsed:.1f}s)",
                highlight=False,
                soft_wrap=True,
            )
            return
        if self.warnings > MAX_WARNINGS:
            self.console.print(
                f"[yellow]... {self.warnings - MAX_WARNINGS} more bad seed rows "
                "(all listed in the run's seed_errors table)[/]"
            )
        table = Table(title=f"dvsynth generate: {prepared.run_dir}", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("model", prepared.config.model)
        table.add_row(
            "rows in run",
            f"{kept + rejected + failed} ({kept} kept, {rejected} rejected, {failed} failed)",
        )
        table.add_row(
            "this invocation",
            f"{stats.done_now} new ({stats.retried} retried), {stats.already_done} resumed, "
            f"{stats.cached_calls} from cache",
        )
        if stats.waiting:
            table.add_row("waiting on a batch", f"{stats.waiting} rows")
        if failed:
            table.add_row("failed, will retry on rerun", f"{failed} (rate limit, timeout, 5xx)")
        if stats.bad_seeds or stats.filtered or stats.duplicates:
            table.add_row(
                "seeds skipped",
                f"{stats.bad_seeds} bad rows, {stats.filtered} without "
                f"instruction negatives, {stats.duplicates} duplicate ids",
            )
        for reason, count in stats.reasons.most_common():
            table.add_row(f"  rejected: {reason}", str(count))
        table.add_row(
            "tokens", f"{stats.prompt_tokens:,} prompt + {stats.completion_tokens:,} completion"
        )
        table.add_row("cost", format_cost(stats.cost_usd, stats.cost_unknown))
        if stats.stopped_by_cost:
            table.add_row("stopped", "--max-cost reached; rerun with a higher cap to go on")
        rate = stats.done_now / elapsed if elapsed > 0 else 0.0
        table.add_row("time", f"{elapsed:.1f}s ({rate:.2f} rows/s)")
        self.out.print(table)


class ValidateReporter(BatchLines):
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.out = Console()
        self.started = time.perf_counter()
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> ValidateReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_notice(self, message: str) -> None:
        self.console.print(
            f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True
        )

    def on_start(self, pending: int) -> None:
        self.started = time.perf_counter()
        if self.quiet:
            return
        self.progress = Progress(
            TextColumn("validate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rules -{task.fields[rules]} judge -{task.fields[judge]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task("validate", total=pending, rules=0, judge=0)

    def on_row(self, row: DualView, stats: ValidateStats) -> None:
        if self.progress is not None:
            self.progress.update(
                self.task,
                completed=stats.validated,
                rules=stats.rejected_by_rules,
                judge=stats.rejected_by_judge,
            )

    def summary(self, stats: ValidateStats, runs: str = "RUN") -> None:
        self.__exit__()
        if stats.estimate is not None:
            self.print_estimate(stats.estimate)
            return
        self._summary(stats)
        if stats.batch is not None:
            self.print_batch(stats.batch, stats.waiting, runs)

    def _summary(self, stats: ValidateStats) -> None:
        elapsed = time.perf_counter() - self.started
        dedup = stats.dedup_exact + stats.dedup_near
        if self.quiet:
            self.out.print(
                f"validated {stats.validated} rows in {elapsed:.1f}s: "
                f"{stats.rejected_by_rules} failed rules, {stats.rejected_by_check} failed the "
                f"instruction check, {stats.rejected_by_judge} failed the judge, {stats.failed} "
                f"failed (will retry on rerun); {stats.kept} kept after dedup "
                f"({dedup} duplicates)",
                highlight=False,
                soft_wrap=True,
            )
            return
        table = Table(title="dvsynth validate", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("validated now", f"{stats.validated} rows in {elapsed:.1f}s")
        if stats.waiting:
            table.add_row("waiting on a batch", f"{stats.waiting} rows")
        table.add_row("rejected by rules", str(stats.rejected_by_rules))
        table.add_row("rejected by the instruction check", str(stats.rejected_by_check))
        table.add_row("rejected by the judge", str(stats.rejected_by_judge))
        if stats.failed:
            table.add_row("failed, will retry on rerun", str(stats.failed))
        table.add_row("duplicates", f"{stats.dedup_exact} exact, {stats.dedup_near} near")
        table.add_row("kept (all runs)", str(stats.kept))
        for reason, count in stats.reasons.most_common(15):
            table.add_row(f"  {reason}", str(count))
        table.add_row(
            "judge tokens",
            f"{stats.judge_prompt_tokens:,} prompt + {stats.judge_completion_tokens:,} "
            f"completion ({stats.cached_calls} calls from cache)",
        )
        table.add_row("judge cost", format_cost(stats.judge_cost_usd, stats.judge_cost_unknown))
        if stats.questions:
            table.add_row(
                "escalated to the strong judge",
                f"{stats.escalated} of {stats.questions} judgments and checks "
                f"({100 * stats.escalated / stats.questions:.1f}%)",
            )
        self.out.print(table)


def audit_line(audit: dict[str, Any]) -> str:
    """What people found in a run's audit, in one line (`view.audit.summaries`)."""
    flip = audit["pooled"]["true_flip"]
    people = len(audit["reviewers"])
    text = f"{audit['sample']['pairs']} pairs sampled, {people} reviewer{'s' * (people != 1)}"
    if flip["n"]:
        low, high = flip["wilson95"]
        text += (
            f"; true flip {100 * flip['share']:.1f}% of {flip['n']} answered "
            f"(Wilson 95% {100 * low:.1f}-{100 * high:.1f}%)"
        )
    return text


def print_stats(data: dict[str, Any], console: Console) -> None:
    """The `compute_stats` dict as tables."""
    table = Table(title=f"dvsynth stats: {', '.join(data['runs'])}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    status = data["status"]
    table.add_row(
        "rows",
        f"{data['rows']} ({data['verified']} verified, {data['pending_validation']} kept but "
        f"not verified, {status.get('rejected', 0)} rejected, {status.get('failed', 0)} failed)",
    )
    table.add_row("modes", ", ".join(f"{k} {v}" for k, v in sorted(data["modes"].items())))
    if data["pending_validation"]:
        stages = ", ".join(f"{n} at {k}" for k, n in sorted(data["unverified_by_stage"].items()))
        table.add_row("not verified yet", f"{data['pending_validation']} ({stages})")
    for stage, count in sorted(data["failed_will_retry"].items()):
        table.add_row(f"failed at {stage}, will retry on rerun", str(count))
    for stage, numbers in data["stages"].items():
        if numbers["entered"]:
            table.add_row(
                f"stage {stage}",
                f"{numbers['passed']} / {numbers['entered']} passed "
                f"({100 * numbers['acceptance']:.1f}%)",
            )
    agreement = data["judge_agreement"]
    if agreement["pairs_judged"]:
        table.add_row(
            "judge agrees with generator",
            f"{100 * agreement['pair_agreement']:.1f}% of pairs (all 4 judgments), "
            f"{100 * agreement['judgment_agreement']:.1f}% of judgments",
        )
    for name, dist in data["instruction_words_kept"].items():
        if dist:
            table.add_row(
                f"{name} words (kept)",
                f"median {dist['median']:g}, p10 {dist['p10']}, p90 {dist['p90']}, "
                f"min {dist['min']}, max {dist['max']}",
            )
    for who in ("generator", "judge"):
        spend = data[who]
        if spend["prompt_tokens"] or spend["completion_tokens"]:
            table.add_row(
                f"{who} tokens (online)",
                f"{spend['prompt_tokens']:,} prompt + {spend['completion_tokens']:,} completion, "
                f"cost {format_cost(spend['cost_usd'], spend['unpriced_rows'])}",
            )
    judges = data.get("judges", {})
    for model, spend in judges.items() if len(judges) > 1 else ():
        table.add_row(
            f"judge {model}",
            f"{spend['calls']:,} calls, cost "
            + format_cost(spend["cost_usd"], spend["unpriced_rows"]),
        )
    escalation = data.get("escalation") or {}
    if escalation.get("questions"):
        table.add_row(
            "escalated to the strong judge",
            f"{escalation['escalated']:,} of {escalation['questions']:,} judgments and checks "
            f"({100 * escalation['share_escalated']:.1f}%)",
        )
    if data.get("view_a_unjudged"):
        table.add_row(
            "view a unjudged",
            f"{data['view_a_unjudged']:,} rows: taken from the seed (reverse mode)",
        )
    for stage, spend in data.get("batch", {}).items():
        table.add_row(
            f"{stage} tokens (batch)",
            f"{spend['answered']:,} answers, {spend['prompt_tokens']:,} prompt + "
            f"{spend['completion_tokens']:,} completion, "
            f"cost {format_cost(spend['cost_usd'], spend['unpriced'])} at the batch rate"
            + (f"; {spend['open']:,} requests still open" if spend["open"] else ""),
        )
    for run, audit in data.get("audit", {}).items():
        table.add_row(f"audit of {run}", audit_line(audit))
    console.print(table)
    if data["reasons"]:
        reasons = Table(title="rejections by reason")
        reasons.add_column("reason")
        reasons.add_column("rows", justify="right")
        for reason, count in data["reasons"].items():
            reasons.add_row(reason, str(count))
        console.print(reasons)


def print_calibration(data: dict[str, Any], console: Console) -> None:
    """The `calibrate` report as a table."""
    table = Table(title=f"dvsynth calibrate: judge {data['judge_model']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    table.add_row(
        "gold pairs / corrupt variants", f"{data['gold_pairs']} / {data['corrupt_variants']}"
    )
    table.add_row("keep precision", pct(data["keep_precision"]))
    table.add_row("keep recall", pct(data["keep_recall"]))
    table.add_row("false rejects on gold", pct(data["false_reject_rate"]))
    table.add_row("corrupt variants rejected", pct(data["corrupt_recall"]))
    for kind, numbers in data["recall_by_kind"].items():
        table.add_row(
            f"  {kind}",
            f"{pct(numbers['recall'])} of {numbers['variants']} "
            f"(rules {numbers['by_rules']}, check {numbers.get('by_check', 0)}, "
            f"judge {numbers['by_judge']})",
        )
    cost = data["judge_cost_usd"]
    table.add_row(
        "judge, paid now" if data.get("cost_by_model") else "judge",
        f"{data['judge_tokens']:,} tokens, cost {'unknown' if cost is None else f'${cost:.4f}'}",
    )
    for model, spend in (data.get("cost_by_model") or {}).items():
        table.add_row(f"  {model}", _calls_and_cost(spend))
    for name, numbers in (data.get("judges") or {}).items():
        by_model = numbers.get("cost_by_model") or {}
        costs = [spend["cost_usd"] for spend in by_model.values()]
        total = {
            "calls": sum(spend["calls"] for spend in by_model.values()),
            "cost_usd": None if None in costs else sum(costs),
        }
        table.add_row(
            f"{name} ({numbers['judge_model']})",
            f"precision {pct(numbers['keep_precision'])}, recall {pct(numbers['keep_recall'])}, "
            + _calls_and_cost(total)
            + (
                f", {pct(numbers['escalated_share'])} escalated"
                if numbers.get("escalated_share") is not None
                else ""
            ),
        )
    picked = data.get("margin_picked")
    if picked:
        table.add_row("escalate margin (auto)", f"{picked['margin']:g} on {picked['gold']}")
    if data.get("note"):
        table.add_row("note", data["note"])
    bias = data.get("position_bias")
    if bias:
        table.add_row(
            "position bias (joint)",
            f"{pct(bias['share_changed'])} of {bias['compared']} view judgments change "
            "with the order of the documents",
        )
    console.print(table)


def _calls_and_cost(spend: dict[str, Any]) -> str:
    cost = spend["cost_usd"]
    return f"{spend['calls']:,} calls, {'cost unknown' if cost is None else f'${cost:.4f}'}"


def print_batches(data: dict[str, Any], console: Console) -> None:
    """`dvsynth batch status` / `cancel`: one line per batch, then requests by state."""
    if not data["batches"]:
        console.print("no batches in these runs", highlight=False)
    for b in data["batches"]:
        counts = b["counts"] or {}
        done = ", ".join(
            f"{counts[k]} {k}"
            for k in ("completed", "failed", "expired", "cancelled")
            if counts.get(k)
        )
        where = b["remote_id"] or b["path"] or "not acknowledged"
        note = f" ({b['note']})" if b.get("note") else ""
        console.print(
            f"{b['run']}  {b['label']}  {b['stage']}  {b['provider']} {where}  "
            f"{b['state']}{note}  {b['requests']} requests{': ' + done if done else ''}  "
            f"age {b['age']}" + (f"  error: {b['error']}" if b.get("error") else ""),
            highlight=False,
            soft_wrap=True,
        )
    for run, stages in data["requests"].items():
        for stage, states in sorted(stages.items()):
            text = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
            console.print(f"{run} {stage} requests: {text}", highlight=False, soft_wrap=True)


def print_import(report: Any, console: Console) -> None:
    """`dvsynth batch import`: what each run took from the file."""
    console.print(
        f"read {report.lines} result lines: {report.unknown} with ids no run given sent, "
        f"{report.bad_lines} unreadable",
        highlight=False,
    )
    for run, found in report.runs.items():
        console.print(
            f"{run}: {found.answered} answers, {found.repeated} already imported, "
            f"{found.errors} errors, {found.resubmit} to send again; rerun the generate / "
            "validate command to finish the rows",
            highlight=False,
            soft_wrap=True,
        )
