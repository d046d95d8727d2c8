"""The batches of run directories, for `dvsynth batch status | cancel | import`.

A batch records its provider, model, server and the NAME of its key's variable (never
the key), so these commands reach the provider again from the run alone.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
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
    rows = []
    for store in stores:
        ledger = store.ledger()
        for batch in ledger.batches():
            note = None
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
            rows.append((store.run_dir, batch.label, note))
    out = []
    for store in stores:
        current = {b.label: b for b in store.ledger().batches()}
        out += [
            _row(run, current[label], note)
            for run, label, note in rows
            if run == store.run_dir and label in current
        ]
    return out


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
            report.runs[str(store.run_dir)] = sink.report
    finally:
        for store in stores:
            store.close()
    return report
