"""A run's pending requests through Ray Data, and their results back into the run.

The driver stays small: it reads the queued requests of each lane from the run's batch
ledger (the same requests, `custom_id`s and state as a provider batch, issue 15), hands
them to Ray in chunks, and commits every result as it streams back, through the same
import path a collected batch takes. Ray schedules, retries failed tasks and moves the
data; dvsynth keeps the state. A chunk is recorded (a `ray` batch) before it starts, so
a killed job's rerun sends again only the requests that have no result yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dvsynth.llm.batch.engine import BatchEngine, CollectReport, ResultSink
from dvsynth.llm.batch.ledger import Queued
from dvsynth.llm.batch.provider import BatchResult
from dvsynth.llm.ray.cluster import connect

RAY_PROVIDER = "ray"
#: Requests handed to Ray at once: bounds the driver's memory at any queue length.
CHUNK = 20_000
#: Rows per Ray block and per HTTP actor call.
ROWS_PER_BLOCK = 16


@dataclass(frozen=True)
class RaySettings:
    """How the Ray engine runs one lane's requests."""

    address: str
    processor: str  # "http" | "vllm"
    model: str  # the litellm model string (http) or the model path / id (vllm)
    api_bases: tuple[str, ...] = ()
    key_env: str | None = None
    timeout: float = 300.0
    concurrency: int = 16  # http: requests in flight per server
    replicas: int | None = None  # http actors, or vLLM engines
    tensor_parallel: int = 1
    engine_args: tuple[tuple[str, Any], ...] = ()
    num_cpus: int | None = None  # a local cluster's size (None: the machine's)


def processor_for(settings: RaySettings) -> Any:
    """A function from a dataset of request rows to a dataset of result rows."""
    if settings.processor == "vllm":
        from dvsynth.llm.ray.vllm_processor import build_vllm_processor

        return build_vllm_processor(
            settings.model.split("/", 1)[-1] if "/" in settings.model else settings.model,
            settings.tensor_parallel,
            settings.replicas or 1,
            dict(settings.engine_args),
        )
    from ray.data import ActorPoolStrategy

    from dvsynth.llm.ray.http_processor import ChatOverHTTP

    servers = max(1, len(settings.api_bases))
    actors = settings.replicas or 2
    per_actor = max(1, settings.concurrency * servers // actors)

    def run(dataset: Any) -> Any:
        return dataset.map_batches(
            ChatOverHTTP,
            batch_size=ROWS_PER_BLOCK,
            fn_constructor_kwargs={
                "model": settings.model,
                "api_bases": list(settings.api_bases),
                "key_env": settings.key_env,
                "timeout": settings.timeout,
                "in_flight": per_actor,
            },
            compute=ActorPoolStrategy(
                size=actors, max_concurrent_calls_per_actor=max(1, per_actor // ROWS_PER_BLOCK)
            ),
            num_cpus=0.25,
        )

    return run


def release_unfinished(engine: BatchEngine) -> int:
    """Chunks a killed job left running: their requests without results go back to the
    queue (results that arrived before the kill were committed and stay)."""
    moved = 0
    for batch in engine.ledger.batches(["running"]):
        if batch.provider == RAY_PROVIDER and batch.stage == engine.stage:
            moved += engine.ledger.release(batch.label)
    return moved


def run_on_ray(engines: list[BatchEngine], settings: RaySettings) -> CollectReport:
    """Every queued request of these engines through Ray; results committed as they come."""
    ray = None
    report = CollectReport()
    for engine in engines:
        release_unfinished(engine)
        while True:
            chunk = _next_chunk(engine)
            if not chunk:
                break
            if ray is None:
                ray = connect(settings.address, settings.num_cpus)
                process = processor_for(settings)
            label = engine.ledger.next_label(engine.run_tag)
            engine.ledger.open_batch(
                label,
                RAY_PROVIDER,
                engine.model,
                engine.stage,
                [r.key for r in chunk],
                state="running",
            )
            rows = [{"custom_id": r.custom_id, "body": r.body} for r in chunk]
            blocks = max(1, len(rows) // ROWS_PER_BLOCK)
            dataset = ray.data.from_items(rows, override_num_blocks=blocks)
            sink = ResultSink(engine)
            for batch in process(dataset).iter_batches(batch_size=None, batch_format="numpy"):
                for custom_id, status, response, error in zip(
                    batch["custom_id"],
                    batch["status"],
                    batch["response"],
                    batch["error"],
                    strict=True,
                ):
                    sink.take(_result(str(custom_id), int(status), response, error))
                sink.flush()  # committed as it streams back: a kill loses no result
            found = engine.finish_batch(label, sink)
            report.add(found)
    return report


def _next_chunk(engine: BatchEngine) -> list[Queued]:
    chunk: list[Queued] = []
    for request in engine.ledger.queued(engine.stage, engine.model):
        chunk.append(request)
        if len(chunk) >= CHUNK:
            break
    return chunk


def _result(custom_id: str, status: int, response: Any, error: Any) -> BatchResult:
    if status == 200 and response:
        return BatchResult(custom_id, response=json.loads(response), status_code=200)
    return BatchResult(
        custom_id, status_code=status or None, error=str(error or "")[:300] or "no answer"
    )
