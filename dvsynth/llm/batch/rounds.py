"""The batch round of an LLM stage, for `generate` and `validate` alike.

One round: collect every batch that ended, run the stage's pass (rows whose answers are
all cached finish; the others queue their calls), then submit the queued calls, or
write them to a `--batch-out` file. `--wait` repeats rounds, polling with backoff in
between, until no request is open.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dvsynth.errors import UserError
from dvsynth.llm.batch.engine import (
    BatchEngine,
    CollectReport,
    SubmitReport,
    poll_until_any_done,
)
from dvsynth.llm.batch.openai_format import request_line
from dvsynth.llm.batch.session import BatchSession
from dvsynth.llm.client import LLMClient

if TYPE_CHECKING:
    from dvsynth.runs.spend import Spend


@dataclass
class BatchRound:
    """What the batch engine did in one invocation, for the report."""

    collected: CollectReport = field(default_factory=CollectReport)
    submitted: SubmitReport = field(default_factory=SubmitReport)
    written: int = 0  # requests written to --batch-out
    out: Path | None = None
    open_batches: int = 0  # still running at the provider when the command ended
    open_requests: int = 0  # queued or in a batch, without an answer
    rounds: int = 0
    estimate: Any = None  # the cost estimate checked against --max-cost


@dataclass
class Lane:
    """One run's engine and the pass-level session its clients queue into."""

    engine: BatchEngine
    session: BatchSession


def make_lane(ledger: Any, stage: str, client: LLMClient, provider: Any, run_tag: str) -> Lane:
    engine = BatchEngine(
        ledger,
        stage,
        client.model,
        provider,
        api_base=client.api_base,
        key_env=client.key_variable,
        run_tag=run_tag,
    )
    return Lane(engine, BatchSession(ledger, stage, client.model, retried=engine.exhausted))


async def run_rounds(
    lanes: list[Lane],
    one_pass: Callable[[], Awaitable[None]],
    *,
    out: Path | None,
    wait: bool,
    check_cost: Callable[[list[Lane]], Any] | None = None,
    on_status: Callable[[list[Any]], None] | None = None,
    poll_first_s: float = 5.0,
    ray: Any = None,
) -> BatchRound:
    """Rounds until nothing is left to send (and, with `wait`, nothing left open).

    `ray` (`llm.ray.engine.RaySettings`): the Ray engine runs each round's requests
    itself, committing results as they stream back; rounds go on until none is queued."""
    result = BatchRound(out=out)
    for lane in lanes:  # a batch one run holds is never taken for another's
        lane.engine.peers = [other.engine.ledger for other in lanes]
    if ray is not None:
        return await _ray_rounds(lanes, one_pass, ray, result, check_cost)
    while True:
        result.rounds += 1
        if out is None:
            for lane in lanes:
                result.collected.add(await lane.engine.collect())
        await one_pass()
        for lane in lanes:
            lane.session.flush()
        if out is not None:
            result.written = write_batch_file(lanes, out)
            break
        if check_cost is not None:
            result.estimate = check_cost(lanes)
        for lane in lanes:
            report = await lane.engine.submit()
            result.submitted.batches += report.batches
            result.submitted.requests += report.requests
            result.submitted.recovered += report.recovered
            result.submitted.released += report.released
            result.submitted.undecided += report.undecided
        if not wait or not any(lane.engine.open_batches() for lane in lanes):
            break
        await poll_until_any_done(
            [lane.engine for lane in lanes], on_status, first_delay_s=poll_first_s
        )
    result.open_batches = sum(len(lane.engine.open_batches()) for lane in lanes)
    result.open_requests = sum(lane.engine.ledger.count(lane.engine.stage) for lane in lanes)
    return result


async def _ray_rounds(
    lanes: list[Lane],
    one_pass: Callable[[], Awaitable[None]],
    ray: Any,
    result: BatchRound,
    check_cost: Callable[[list[Lane]], Any] | None,
) -> BatchRound:
    from dvsynth.llm.ray.engine import run_on_ray

    engines = [lane.engine for lane in lanes]
    while True:
        result.rounds += 1
        await one_pass()
        for lane in lanes:
            lane.session.flush()
        waiting = sum(e.ledger.count(e.stage, ("queued",)) for e in engines)
        unfinished = any(b.state == "running" for e in engines for b in e.ledger.batches())
        if not waiting and not unfinished:
            break
        if check_cost is not None:
            result.estimate = check_cost(lanes)
        # Synchronous on purpose: the run's database connection belongs to this thread.
        result.collected.add(run_on_ray(engines, ray))
    result.open_requests = sum(e.ledger.count(e.stage) for e in engines)
    return result


def write_batch_file(lanes: list[Lane], out: Path) -> int:
    """Every lane's open requests in one OpenAI batch input file, written before the
    requests are recorded as sent to it (a kill in between only rewrites the file).
    With no request open, no file is written; returns how many requests it holds."""
    chosen = [(lane, lane.engine.file_requests()) for lane in lanes]
    seen: set[str] = set()
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--batch-out {out}: is a folder; give a file name such as requests.jsonl")
    if not any(requests for _, requests in chosen):
        return 0
    # Written through a link (the link stays), and never over a device or FIFO: the
    # atomic replace below would otherwise swap the link, or `/dev/full`, for a file.
    target = Path(os.path.realpath(out))
    if target.exists() and not target.is_file():
        raise UserError(f"--batch-out {out}: not a regular file; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=target.parent, prefix=target.name, suffix=".tmp", delete=False
    ) as handle:
        for _, requests in chosen:
            for request in requests:
                if request.custom_id in seen:  # the same call in two runs: one answer
                    continue
                seen.add(request.custom_id)
                handle.write(request_line(request.as_request()) + "\n")
    Path(handle.name).replace(target)
    for lane, requests in chosen:
        lane.engine.record_file(out, requests)
    return len(seen)


def _open_messages(lanes: list[Lane], include_new: bool) -> Iterator[tuple[str, list[Any]]]:
    """(model, messages) of every call that would be sent now: queued in the ledgers,
    and (`include_new`) queued by the pass but not recorded (a dry run records nothing)."""
    for lane in lanes:
        engine = lane.engine
        if include_new:
            for body in lane.session.new_bodies():
                yield engine.model, body["messages"]
        for request in engine.ledger.queued(engine.stage, engine.model):
            yield engine.model, json.loads(request.body)["messages"]


def estimate_open(lanes: list[Lane], mean: tuple[float, str], include_new: bool) -> Any:
    """The cost estimate of the calls that would be sent now (`llm.cost.estimate`)."""
    from dvsynth.llm.cost import estimate

    models = list(dict.fromkeys(lane.engine.model for lane in lanes))
    if len(models) <= 1:  # one model: streamed, as every stage but a cascade has
        calls = (messages for _, messages in _open_messages(lanes, include_new))
        return estimate(models[0] if models else "", calls, mean[0], mean[1])
    by_model: dict[str, list[list[Any]]] = {model: [] for model in models}
    for model, messages in _open_messages(lanes, include_new):
        by_model[model].append(messages)
    parts = [estimate(m, iter(found), mean[0], mean[1]) for m, found in by_model.items()]
    return _combined([p for p in parts if p.calls] or parts[:1])


def _combined(parts: list[Any]) -> Any:
    """Estimates of several models (a judge cascade's two) as one: calls, tokens and
    USD summed (unknown if any part's price is), the models named together."""
    from dataclasses import replace

    def total(name: str) -> float | None:
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else sum(values)

    return replace(
        parts[0],
        calls=sum(p.calls for p in parts),
        prompt_tokens=sum(p.prompt_tokens for p in parts),
        completion_tokens=sum(p.completion_tokens for p in parts),
        online_usd=total("online_usd"),
        batch_usd=total("batch_usd"),
        model=" + ".join(p.model for p in parts),
        fallback_calls=sum(p.fallback_calls for p in parts),
    )


async def dry_run(
    lanes: list[Lane], one_pass: Callable[[], Awaitable[None]], mean: tuple[float, str]
) -> Any:
    """Run the pass with every uncached call held back (nothing sent, nothing queued);
    return the estimate of what it would send."""
    for lane in lanes:
        lane.session.dry = True
    await one_pass()
    return estimate_open(lanes, mean, include_new=True)


def refuse_above_cap(
    lanes: list[Lane],
    cap: float,
    spent: Callable[[], Spend],
    mean: tuple[float, str],
    option: str,
) -> Any:
    """Before a submission: what the runs spent (`runs.spend`, open batches at their
    estimate) plus the estimate at the batch rate must fit under the cap. Nothing to
    submit is never refused, however much was spent."""
    found = estimate_open(lanes, mean, include_new=False)
    cost = found.batch_usd
    if not found.calls or cost is None:
        return found
    paid = spent()
    if paid.total_usd + cost > cap:
        raise UserError(
            f"{option} {cap:g}: submitting {found.calls} requests would cost about "
            f"${cost:.4f} at the batch rate, on top of {paid.describe()}; nothing was "
            f"submitted (the requests stay queued: raise {option} and rerun)"
        )
    return found


def ray_settings(config: Any, client: LLMClient) -> Any:
    """The Ray engine's settings from a stage's config (`config.EngineSettings`) and the
    client whose model, servers and key variable it uses."""
    from dvsynth.llm.ray.engine import RaySettings

    processor = config.ray_processor
    if processor == "auto":
        processor = "http" if client.api_bases else "vllm"
    if processor == "http" and not client.api_bases:
        raise UserError("--ray-processor http: needs at least one --api-base")
    return RaySettings(
        address=config.ray_address,
        processor=processor,
        model=client.model,
        api_bases=tuple(client.api_bases),
        key_env=client.key_variable,
        timeout=config.timeout,
        concurrency=config.concurrency,
        replicas=config.replicas,
        tensor_parallel=config.tensor_parallel,
        engine_args=tuple(sorted(config.engine_args.items())),
    )
