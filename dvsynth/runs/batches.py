"""The batches of run directories, for `dvsynth batch status | cancel | import`.

A batch records its provider, model, server and the NAME of its key's variable (never
the key), so these commands reach the provider again from the run alone.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError
from dvsynth.llm.batch.engine import FILE_PROVIDER, BatchEngine, CollectReport, ResultSink, age
from dvsynth.llm.batch.ledger import Batch
from dvsynth.llm.batch.openai_format import BadResultLine, parse_result_line
from dvsynth.llm.batch.provider import TERMINAL, BatchProvider
from dvsynth.llm.batch.providers import provider_for
from dvsynth.runs.store import RunStore

#: Batch states in which the provider may still do work.
_DONE = TERMINAL | {"collected", FILE_PROVIDER, "submitting"}


def _stores(runs: list[Path]) -> list[RunStore]:
    if not runs:
        raise UserError("give at least one run directory")
    return RunStore.open_many(runs, writer=True)


def _provider(batch: Batch) -> BatchProvider:
    """The batch API that holds `batch`, rebuilt from what the run recorded."""
    import litellm

    key = os.environ.get(batch.key_env) if batch.key_env else None
    if batch.key_env and not key:
        raise UserError(
            f"batch {batch.label}: it was sent with the key in {batch.key_env}, "
            "which is not set now"
        )
    _, provider, _, _ = litellm.get_llm_provider(batch.model, api_base=batch.api_base)
    return provider_for(batch.model, provider, batch.api_base, key, option="batch")


def _row(run: Path, batch: Batch, note: str | None = None) -> dict[str, Any]:
    return {
        "run": str(run),
        **asdict(batch),
        "age": age(batch.created_at),
        "note": note,
    }


async def _each_open(stores: list[RunStore], act: str) -> list[dict[str, Any]]:
    """Refresh (`act` "status") or cancel every open batch of the runs, first looking up
    at the provider, by label, each batch whose acknowledgement was lost. Cancelling a
    `--batch-out` file drops it: its requests are no longer expected from the file."""
    peers = [store.ledger() for store in stores]
    rows = []
    for store in stores:
        ledger = store.ledger()
        notes, gone = await _resolve_unacknowledged(ledger, peers)
        rows += [_row(store.run_dir, batch, note) for batch, note in gone]
        seen: list[tuple[Batch, str | None]] = []
        for batch in ledger.batches():
            note = notes.get(batch.label)
            if act == "cancel" and batch.provider == FILE_PROVIDER:
                moved = ledger.release(batch.label)
                seen.append((batch, f"dropped: {moved} requests queued again"))
                continue
            if batch.remote_id and batch.state not in _DONE:
                provider = _provider(batch)
                try:
                    if act == "cancel":
                        status = await provider.cancel(batch.remote_id)
                    else:
                        status = await provider.status(batch.remote_id)
                    ledger.set_state(batch.label, status.state, status.counts, status.error)
                except UserError:
                    raise
                except Exception as exc:  # the provider is unreachable: say so, go on
                    note = f"not refreshed: {type(exc).__name__}"
                finally:
                    await provider.aclose()
            seen.append((batch, note))
        current = {b.label: b for b in ledger.batches()}  # as refreshed (a dropped one: as was)
        rows += [_row(store.run_dir, current.get(b.label, b), note) for b, note in seen]
    return rows


async def _resolve_unacknowledged(
    ledger: Any, peers: list[Any]
) -> tuple[dict[str, str], list[tuple[Batch, str]]]:
    """Batches recorded but never acknowledged (a kill mid-create), looked up at their
    provider by label (`BatchEngine.reconcile`). Returns a note per label still held,
    and the batches that never reached the provider (their requests queued again, their
    records gone) with theirs."""
    waiting = [b for b in ledger.batches(["submitting"]) if b.provider != FILE_PROVIDER]
    for stage, model in sorted({(b.stage, b.model) for b in waiting}):
        first = next(b for b in waiting if (b.stage, b.model) == (stage, model))
        provider = _provider(first)
        try:
            engine = BatchEngine(ledger, stage, model, provider)
            engine.peers = peers
            await engine.reconcile()
        finally:
            await provider.aclose()
    current = {b.label: b for b in ledger.batches()}
    notes: dict[str, str] = {}
    gone: list[tuple[Batch, str]] = []
    for batch in waiting:
        now = current.get(batch.label)
        if now is None:
            gone.append((batch, "never reached the provider: its requests queued again"))
        elif now.remote_id:
            notes[batch.label] = "its acknowledgement was lost: found at the provider by label"
        else:
            notes[batch.label] = "not found at the provider yet (it cannot tell it apart): rerun"
    return notes, gone


def batch_status(runs: list[Path], refresh: bool = True) -> dict[str, Any]:
    """Every batch of the runs (refreshed from the provider where open), and each run's
    requests by stage and state."""
    stores = _stores(runs)
    try:
        if refresh:
            batches = asyncio.run(_each_open(stores, "status"))
        else:
            batches = [_row(s.run_dir, b) for s in stores for b in s.ledger().batches()]
        requests = {str(s.run_dir): s.ledger().states() for s in stores}
    finally:
        for store in stores:
            store.close()
    return {"batches": batches, "requests": requests}


def cancel_batches(runs: list[Path]) -> dict[str, Any]:
    """Ask the provider to cancel every open batch of the runs."""
    stores = _stores(runs)
    try:
        batches = asyncio.run(_each_open(stores, "cancel"))
        requests = {str(s.run_dir): s.ledger().states() for s in stores}
    finally:
        for store in stores:
            store.close()
    return {"batches": batches, "requests": requests}


@dataclass
class ImportReport:
    lines: int = 0
    unknown: int = 0  # custom_ids that no run given has sent
    bad_lines: int = 0
    runs: dict[str, CollectReport] = field(default_factory=dict)


def _lines(path: Path) -> Iterator[str]:
    try:
        with Path(path).open(encoding="utf-8") as handle:
            yield from handle
    except FileNotFoundError:
        raise UserError(f"{path}: no such results file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 JSONL results file") from None


def import_results(runs: list[Path], path: Path) -> ImportReport:
    """Read an OpenAI batch output file into the runs, as collection would."""
    if Path(path).is_dir():
        raise UserError(f"{path}: is a folder; the last argument is the results file")
    stores = _stores(runs)
    report = ImportReport()
    try:
        sinks = [ResultSink(BatchEngine(s.ledger(), "", "")) for s in stores]
        for number, line in enumerate(_lines(path), start=1):
            if not line.strip():
                continue
            report.lines += 1
            try:
                result = parse_result_line(line)
            except BadResultLine as exc:
                report.bad_lines += 1
                if report.bad_lines == 1 and report.lines == 1 and number == 1:
                    raise UserError(f"{path}:1: not an OpenAI batch output line ({exc})") from None
                continue
            known = [sink.take(result) for sink in sinks]
            if not any(known):
                report.unknown += 1
        for store, sink in zip(stores, sinks, strict=True):
            sink.flush()
            sink.report.unknown = 0  # counted across runs, above
            report.bad_lines += sink.report.bad_lines  # readable lines, unreadable answers
            report.runs[str(store.run_dir)] = sink.report
    finally:
        for store in stores:
            store.close()
    return report


def settle_before_online(
    stores: list[RunStore], stage: str, on_notice: Callable[[str], None] | None = None
) -> CollectReport:
    """Before `stage` calls online: what the runs' batches hold of it, settled first.

    A provider batch that has ended is collected (its answers finish rows from the
    response cache, as in batch mode); requests queued and never sent are withdrawn (the
    online calls answer them instead, and no later batch sends them too). A batch still
    running, or a `--batch-out` file not imported, holds requests that the online calls
    would pay for a second time: that is refused in one line that names it and says how
    to collect or cancel it. `on_notice` hears what was collected."""
    from dvsynth.llm.ray.engine import RAY_PROVIDER

    report = CollectReport()
    peers = [store.ledger() for store in stores]
    for store in stores:
        ledger = store.ledger()
        held = []
        for batch in _holding(ledger, stage):
            if batch.provider == RAY_PROVIDER:  # a killed Ray job's chunk: never comes back
                ledger.release(batch.label)
            else:
                held.append(batch)
        _refuse_files(store.run_dir, stage, held, ledger)
        if held:
            report.add(asyncio.run(_collect_ended(ledger, stage, held, peers)))
            held = _holding(ledger, stage)
            if held:
                _refuse_open(store.run_dir, stage, held, ledger)
        ledger.withdraw_queued(stage)
    if report.finished and on_notice:
        on_notice(
            f"collected {report.finished} ended batches of this stage first "
            f"({report.answered} answers); the rest is called online"
        )
    return report


async def _collect_ended(
    ledger: Any, stage: str, held: list[Batch], peers: list[Any]
) -> CollectReport:
    """Collect every batch of `held` that has ended, as a --batch run of the stage would
    (finding first, by label, one whose acknowledgement was lost)."""
    report = CollectReport()
    for model in sorted({b.model for b in held}):
        provider = _provider(next(b for b in held if b.model == model))
        try:
            engine = BatchEngine(ledger, stage, model, provider)
            engine.peers = peers
            await engine.reconcile()
            report.add(await engine.collect())
        finally:
            await provider.aclose()
    return report


def _holding(ledger: Any, stage: str) -> list[Batch]:
    """The batches of `stage` that hold requests without an answer."""
    return [b for b in ledger.batches() if b.stage == stage and ledger.holds(b.label)]


def _refuse_files(run: Path, stage: str, held: list[Batch], ledger: Any) -> None:
    for batch in held:
        if batch.provider == FILE_PROVIDER:
            raise UserError(
                f"{run}: {ledger.holds(batch.label)} {stage} requests were written to "
                f"{batch.path} "
                "(--batch-out) and their results are not imported; calling them online "
                f"would pay twice: import them with `dvsynth batch import {run} RESULTS`, "
                f"or drop the file with `dvsynth batch cancel {run}`, then rerun"
            )


def _refuse_open(run: Path, stage: str, held: list[Batch], ledger: Any) -> None:
    first = held[0]
    waiting = sum(ledger.holds(b.label) for b in held)
    where = f"{first.provider} {first.remote_id or 'not acknowledged'}, {first.state}"
    more = f" and {len(held) - 1} more" if len(held) > 1 else ""
    raise UserError(
        f"{run}: {waiting} {stage} requests sit in batch {first.label} ({where}){more}; "
        "calling them online would pay twice: collect them with this command and --batch "
        f"(add --wait to wait), or cancel with `dvsynth batch cancel {run}` and rerun this "
        "command (it collects what the batch finished and calls the rest online)"
    )
