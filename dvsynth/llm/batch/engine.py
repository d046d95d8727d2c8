"""One run's batches for one LLM stage: collect what finished, submit what is queued,
write and import OpenAI batch files.

The order of every submission is what makes a kill harmless: the batch is recorded and
its requests assigned to it (committed) before anything is uploaded; the provider's id
is committed as soon as it answers; a batch found recorded but unacknowledged on the
next run is looked up at the provider by its label before its requests are released.
Collection writes each answer to the response cache and its spend to the ledger in one
transaction per slice, and is idempotent: once a request has an answer, any later line
for it (a repeat, an error, an unreadable one) is counted and ignored. A line whose
answer cannot be read (`llm.batch.answers`) is counted and its request sent again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dvsynth.errors import UserError
from dvsynth.llm.batch.answers import Unreadable, read_answer
from dvsynth.llm.batch.ledger import Batch, BatchLedger, Queued
from dvsynth.llm.batch.provider import BatchProvider, BatchResult, BatchStatus, Undecided
from dvsynth.llm.batch.session import is_transient_status
from dvsynth.redact import redact, safe_url

#: A request that expired (or vanished) this many times is failed, not sent again in
#: this invocation; its row is retried by the next run of the command.
MAX_ATTEMPTS = 3
T = TypeVar("T")
SLICE = 1000
FILE_PROVIDER = "file"


@dataclass
class CollectReport:
    """What one collection found, across batches."""

    checked: int = 0  # batches asked for their status
    finished: int = 0  # batches whose results were read now
    still_open: int = 0
    answered: int = 0
    errors: int = 0  # requests the provider refused (final or transient)
    resubmit: int = 0  # expired, missing or transient: queued again
    missing: int = 0  # in the batch, absent from its results
    unknown: int = 0  # result lines whose custom_id this run never sent
    repeated: int = 0  # later lines for requests already answered: ignored
    bad_lines: int = 0  # lines that could not be read (those naming a request: sent again)
    failed_batches: list[str] = field(default_factory=list)  # "label: why"

    def add(self, other: CollectReport) -> None:
        for name, value in asdict(other).items():
            if isinstance(value, list):
                getattr(self, name).extend(value)
            else:
                setattr(self, name, getattr(self, name) + value)


@dataclass
class SubmitReport:
    batches: list[str] = field(default_factory=list)  # labels submitted now
    requests: int = 0
    recovered: int = 0  # batches found at the provider after a lost acknowledgement
    released: int = 0  # requests of batches that never reached the provider, queued again
    undecided: int = 0  # unacknowledged batches the provider cannot tell apart yet: held


class BatchEngine:
    """The batches of one run for one stage and model."""

    def __init__(
        self,
        ledger: BatchLedger,
        stage: str,
        model: str,
        provider: BatchProvider | None = None,
        api_base: str | None = None,
        key_env: str | None = None,
        run_tag: str = "run",
    ) -> None:
        self.ledger = ledger
        self.stage = stage
        self.model = model
        self.provider = provider
        self.api_base = safe_url(api_base) if api_base else None  # as the ledger stores it
        self.key_env = key_env
        self.run_tag = run_tag
        # The ledgers of every run of this command (this one included): a batch another
        # of them holds is never taken for one of this run's (`reconcile`).
        self.peers: list[BatchLedger] = [ledger]
        # Requests whose tries ran out in this invocation: their rows fail now, and the
        # next run of the command (not this one) sends them again.
        self.exhausted: set[str] = set()

    # ------------------------------------------------------------------ collect

    def _mine(self, states: Iterable[str] | None = None) -> list[Batch]:
        return [
            b
            for b in self.ledger.batches(states)
            if b.stage == self.stage and b.model == self.model and b.provider != FILE_PROVIDER
        ]

    async def collect(self) -> CollectReport:
        """Ask every open batch for its state; read the results of those that ended."""
        report = CollectReport()
        assert self.provider is not None
        for batch in self._mine():
            if batch.state in ("collected", "submitting") or batch.remote_id is None:
                continue
            report.checked += 1
            status = await asked("checking " + batch.label, self.provider.status(batch.remote_id))
            self.ledger.set_state(batch.label, status.state, status.counts, status.error)
            if not status.terminal:
                report.still_open += 1
                continue
            why = "absent from the batch's results"
            if status.state == "failed":
                report.failed_batches.append(f"{batch.label}: {status.error or 'failed'}")
                why = f"the batch failed at the provider: {status.error or 'no reason given'}"
            bad_before = int(getattr(self.provider, "bad_lines", 0) or 0)
            sink = ResultSink(self)
            await asked(
                "reading the results of " + batch.label,
                sink.take_all(self.provider.results(batch.remote_id)),
            )
            found = self.finish_batch(batch.label, sink, why)
            found.bad_lines += int(getattr(self.provider, "bad_lines", 0) or 0) - bad_before
            report.add(found)
        return report

    def _missing(
        self, label: str, report: CollectReport, why: str = "absent from the batch's results"
    ) -> None:
        """Requests of a finished batch that got no result line: sent again (`why` is
        what their rows say once their tries run out)."""
        outcomes: list[Any] = []
        for request in list(self.ledger.in_batch(label)):
            report.missing += 1
            self._again(request.key, None, why, report, outcomes)
        self.ledger.record(outcomes, [])

    def finish_batch(
        self, label: str, sink: ResultSink, why: str = "absent from the batch's results"
    ) -> CollectReport:
        """A batch whose results were taken through `sink` (a provider batch or a Ray
        chunk): flush, queue what got no result again, mark it collected."""
        sink.flush()
        self._missing(label, sink.report, why)
        sink.report.finished = 1
        self.ledger.set_state(label, "collected")
        return sink.report

    def _take(
        self,
        result: BatchResult,
        report: CollectReport,
        outcomes: list[Any],
        responses: list[tuple[str, str]],
        answered: set[str],
    ) -> bool:
        """Take one result into `outcomes` / `responses` (`answered`: the keys answered
        in the slice not yet written); False when its custom_id is not this run's."""
        found = self.ledger.by_custom_id(result.custom_id)
        if found is None:
            report.unknown += 1
            return False
        key, state, model = found
        if state == "answered" or key in answered:  # a later line: the answer stands
            report.repeated += 1
            return True
        malformed = result.malformed
        if malformed is None and result.response is not None:
            try:
                completion = read_answer(model, result.response)
            except Unreadable as exc:
                malformed = str(exc)
            else:
                value = {k: v for k, v in asdict(completion).items() if k != "cached"}
                responses.append((key, json.dumps(value)))
                spend = {
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                    "cost_usd": completion.cost_usd,
                }
                outcomes.append((key, "answered", spend, 200, None))
                answered.add(key)
                report.answered += 1
                return True
        if malformed is not None:  # the answer cannot be read: as a garbled online reply
            report.bad_lines += 1
            self._again(key, None, f"unreadable answer: {malformed}", report, outcomes)
            return True
        if result.expired or is_transient_status(result.status_code):
            self._again(key, result.status_code, result.error, report, outcomes)
            return True
        report.errors += 1
        outcomes.append((key, "error", None, result.status_code, result.error))
        return True

    def _again(
        self,
        key: str,
        code: int | None,
        error: str | None,
        report: CollectReport,
        outcomes: list[Any],
    ) -> None:
        """Queue a request for the next batch, unless it has had its tries."""
        if self.ledger.attempts(key) >= MAX_ATTEMPTS:
            self.exhausted.add(key)
            report.errors += 1
            detail = f"no answer after {MAX_ATTEMPTS} batches: {error or 'expired'}"
            outcomes.append((key, "error", None, code, detail))
            return
        report.resubmit += 1
        outcomes.append((key, "queued", None, None, None))

    # ------------------------------------------------------------------ submit

    async def reconcile(self) -> SubmitReport:
        """Batches recorded but never acknowledged (a kill or a fault mid-submission):
        adopt the one the provider holds under the label, else queue the requests again.
        Every batch id that a run of this command holds (`peers`) is known not to be it;
        a provider that cannot tell yet (`Undecided`) leaves the batch held for a rerun."""
        report = SubmitReport()
        assert self.provider is not None
        for batch in self._mine(["submitting"]):
            known = set().union(*(ledger.remote_ids() for ledger in self.peers))
            sample = next((r.custom_id for r in self.ledger.in_batch(batch.label)), None)
            try:
                remote_id = await asked(
                    "looking for " + batch.label,
                    self.provider.find(
                        batch.label,
                        since=batch.created_at - 120,
                        count=batch.requests,
                        known=known,
                        sample=sample,
                    ),
                )
            except Undecided:
                report.undecided += 1
                continue
            if remote_id is not None:
                self.ledger.submitted(batch.label, remote_id)
                report.recovered += 1
            else:
                report.released += self.ledger.release(batch.label)
        return report

    def groups(self, provider: BatchProvider) -> Iterable[list[Queued]]:
        """The queued requests in slices that fit one of the provider's batches each."""
        max_requests, max_bytes = provider.max_requests, provider.max_bytes
        group: list[Queued] = []
        size = 0
        for request in self.ledger.queued(self.stage, self.model):
            line = provider.request_size(request.as_request())
            if group and (len(group) >= max_requests or size + line > max_bytes):
                yield group
                group, size = [], 0
            group.append(request)
            size += line
        if group:
            yield group

    async def submit(self) -> SubmitReport:
        """Send the queued requests, one batch per slice that fits the provider's limits."""
        assert self.provider is not None
        report = await self.reconcile()
        provider = self.provider
        for group in self.groups(provider):  # one batch's requests in memory at a time
            label = self.ledger.next_label(self.run_tag, self.stage)
            self.ledger.open_batch(
                label,
                provider.name,
                self.model,
                self.stage,
                [r.key for r in group],
                api_base=self.api_base,
                key_env=self.key_env,
            )
            try:
                remote_id = await provider.submit([r.as_request() for r in group], label)
            except Exception as exc:
                raise UserError(
                    f"batch: submitting {len(group)} requests failed "
                    f"({type(exc).__name__}: {redact(str(exc))[:300]}); they stay recorded "
                    "under " + label + ": rerun the same command to submit them"
                ) from None
            self.ledger.submitted(label, remote_id)
            report.batches.append(label)
            report.requests += len(group)
        return report

    def open_batches(self) -> list[Batch]:
        return [b for b in self._mine() if b.state != "collected"]

    # ------------------------------------------------------------------ files

    def file_requests(self) -> list[Queued]:
        """Every request without an answer that no provider batch holds: earlier
        `--batch-out` files' open requests come back, so the newest file is the whole
        open set."""
        for batch in self.ledger.batches([FILE_PROVIDER]):
            if batch.stage == self.stage and batch.model == self.model:
                self.ledger.release(batch.label)
        return list(self.ledger.queued(self.stage, self.model))

    def record_file(self, path: Path, requests: list[Queued]) -> None:
        """Record `requests` as sent to the file at `path` (a `file` batch)."""
        if requests:
            self.ledger.open_batch(
                self.ledger.next_label(self.run_tag, self.stage),
                FILE_PROVIDER,
                self.model,
                self.stage,
                [r.key for r in requests],
                state=FILE_PROVIDER,
                path=str(path),
            )


class ResultSink:
    """Results taken one at a time (a provider batch's, an imported file's lines, a Ray
    chunk's), written to the ledger in slices, one transaction each."""

    def __init__(self, engine: BatchEngine) -> None:
        self.engine = engine
        self.report = CollectReport()
        self._outcomes: list[Any] = []
        self._responses: list[tuple[str, str]] = []
        self._answered: set[str] = set()  # keys answered in the slice not yet written

    def take(self, result: BatchResult) -> bool:
        """Take one result; False when its custom_id is not this run's."""
        known = self.engine._take(
            result, self.report, self._outcomes, self._responses, self._answered
        )
        if len(self._outcomes) >= SLICE:
            self.flush()
        return known

    async def take_all(self, results: AsyncIterator[BatchResult]) -> None:
        """Every result a provider streams back."""
        async for result in results:
            self.take(result)

    def flush(self) -> None:
        self.engine.ledger.record(self._outcomes, self._responses)
        self._outcomes, self._responses = [], []
        self._answered.clear()  # the ledger says `answered` from now on


async def asked(what: str, call: Awaitable[T]) -> T:
    """A provider call; a fault (network, 5xx) ends the command in one line, with
    everything recorded so far kept: the same command picks up from there."""
    try:
        return await call
    except (UserError, Undecided):
        raise
    except Exception as exc:
        raise UserError(
            f"batch: {what} failed at the provider ({type(exc).__name__}: "
            f"{redact(str(exc))[:300]}); nothing is lost: rerun the same command"
        ) from None


async def poll_until_any_done(
    engines: list[BatchEngine],
    on_status: Callable[[list[tuple[Batch, BatchStatus]]], None] | None = None,
    first_delay_s: float = 5.0,
    max_delay_s: float = 300.0,
    sleep: Callable[[float], Any] | None = None,
) -> None:
    """Wait, with backoff, until some open batch of these engines has ended."""
    sleep = sleep or asyncio.sleep
    delay = first_delay_s
    while True:
        seen: list[tuple[Batch, BatchStatus]] = []
        for engine in engines:
            assert engine.provider is not None
            for batch in engine.open_batches():
                if batch.remote_id is None:
                    continue
                status = await asked(
                    "checking " + batch.label, engine.provider.status(batch.remote_id)
                )
                engine.ledger.set_state(batch.label, status.state, status.counts, status.error)
                seen.append((batch, status))
        if on_status:
            on_status(seen)
        if not seen or any(status.terminal for _, status in seen):
            return
        await sleep(delay)
        delay = min(max_delay_s, delay * 1.5)


def age(created_at: float) -> str:
    seconds = max(0, int(time.time() - created_at))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
