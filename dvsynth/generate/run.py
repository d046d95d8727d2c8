"""`dvsynth generate` as a library call: config in, a finished (or resumed) run directory out.

Wires the parts together: the prompt templates, the LLM client (checked before any
row), the run store (created, or resumed when the identity matches), the seed reader,
and the pipeline. Progress and printing are the caller's business, through callbacks.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from dvsynth import __version__
from dvsynth.config import GenerateConfig, identity_hash
from dvsynth.errors import UserError
from dvsynth.generate.step import Generator
from dvsynth.llm.batch.providers import provider_for
from dvsynth.llm.batch.rounds import (
    Lane,
    dry_run,
    make_lane,
    ray_settings,
    refuse_above_cap,
    run_rounds,
)
from dvsynth.llm.client import LLMClient
from dvsynth.prompts import DEFAULT_PROMPTS, PromptTemplate, load_template
from dvsynth.records import DualView, Mode, SeedError
from dvsynth.runs.loop import run_stage_loop
from dvsynth.runs.pipeline import RunStats, run_stage
from dvsynth.runs.store import MANIFEST, RunStore, read_manifest, write_json_atomic
from dvsynth.secrets import redact_values
from dvsynth.seeds.adapters import SeedReader
from dvsynth.seeds.readers import describe_source, estimate_total, source_changes
from dvsynth.seeds.shards import parse_shard, select_shard


@dataclass
class PreparedRun:
    config: GenerateConfig
    run_dir: Path
    templates: dict[Mode, PromptTemplate]
    manifest: dict[str, Any]


def _versions() -> dict[str, str]:
    found = {"dvsynth": __version__, "python": platform.python_version()}
    for package in ("litellm", "datasets", "pydantic", "transformers", "torch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def load_templates(config: GenerateConfig) -> dict[Mode, PromptTemplate]:
    """The template of each mode; `--prompt FILE` replaces the template of the run's mode."""
    templates: dict[Mode, PromptTemplate] = {
        mode: load_template(name)
        for mode, name in DEFAULT_PROMPTS.items()  # type: ignore[misc]
    }
    if config.prompt:
        if config.mode == "auto":
            raise UserError(
                "--prompt: also give --mode reverse or --mode bootstrap, "
                "so it is clear which prompt the file replaces"
            )
        templates[config.mode] = load_template(config.prompt)
    return templates


def prepare_run(config: GenerateConfig) -> PreparedRun:
    """Resolve everything that defines the run, without touching the disk or the network."""
    parse_shard(config.shard)  # a bad --shard fails before anything else
    templates = load_templates(config)
    used = [config.mode] if config.mode != "auto" else list(templates)
    hashes = {f"{mode}:{templates[mode].name}": templates[mode].sha256 for mode in used}
    identity = config.identity(hashes)
    manifest = {
        "dvsynth_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "identity": identity,
        "identity_sha256": identity_hash(identity),
        # Every string as stored (`secrets.redact_values`): URLs without credentials.
        "config": redact_values(config.model_dump(mode="json", exclude={"out"})),
        "prompts": {templates[m].name: templates[m].sha256 for m in used},
        "seed_source": describe_source(config.seeds),
        "versions": _versions(),
    }
    return PreparedRun(config, config.run_dir(identity), templates, manifest)


def generate_run(
    config: GenerateConfig,
    *,
    on_row: Callable[[DualView, RunStats], None] | None = None,
    on_bad_seed: Callable[[SeedError], None] | None = None,
    on_start: Callable[[PreparedRun, int | None], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_batch_status: Callable[[list[Any]], None] | None = None,
    client: LLMClient | None = None,
) -> tuple[PreparedRun, RunStats]:
    """Generate (or resume) a run; returns the prepared run and what this call did.

    With `config.batch` / `batch_out` the calls go through a batch (`llm.batch.rounds`);
    with `config.dry_run` nothing is sent and `stats.estimate` holds the cost estimate."""
    config.check_engine()
    prepared = prepare_run(config)
    if client is None:
        client = LLMClient(
            config.model,
            api_base=config.api_base,
            extra_api_bases=config.extra_api_bases,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            seed=config.sampling_seed,
            **config.client_options(),
            options=config.option_names("generator"),
        )
    client.check(require_key=not config.dry_run)
    provider = _provider(config, client)  # a model without a batch API fails here
    if config.max_cost is not None and not client.price_known() and on_notice:
        on_notice(
            f"--max-cost: litellm has no price for {config.model}; its cost shows as unknown "
            "and cannot be capped"
        )
    reader = SeedReader(
        config.seeds,
        config.seed_format,
        config.mapping,
        config.split,
        require_instruction=config.mode == "reverse",
    )
    reader.check()
    if config.dry_run and not prepared.run_dir.exists():
        scratch = tempfile.TemporaryDirectory(prefix="dvsynth-dry-run-")
        store = RunStore.open(Path(scratch.name) / "run", prepared.manifest)  # leaves no trace
    else:
        store = RunStore.open(prepared.run_dir, prepared.manifest)
    try:
        _check_source(config, store.run_dir, prepared.manifest, on_notice)
        if config.calls_online:  # what a batch holds is never called online too
            from dvsynth.runs.batches import settle_before_online

            settle_before_online([store], GENERATE, on_notice)
    except BaseException:
        store.close()
        raise
    client.cache = store.cache
    shard = parse_shard(config.shard)
    if on_start:
        total = estimate_total(config.seeds)
        if total is not None and shard is not None:
            total = -(-total // shard.count)  # about 1/N of the rows
        if total is not None and config.limit is not None:
            total = min(total, config.limit)
        on_start(prepared, total if total is not None else config.limit)

    step = Generator(client, prepared.templates, config.mode)
    stats = RunStats()

    async def one_pass() -> None:
        stats.merge(
            await run_stage(
                select_shard(reader, shard),
                step,
                store,
                concurrency=config.concurrency,
                limit=config.limit,
                strict=config.strict,
                # A dry run prices every call it would send, cap or not.
                max_cost=None if config.batched or config.dry_run else config.max_cost,
                on_row=None if config.dry_run else on_row,
                on_bad_seed=on_bad_seed,
                commit=not config.dry_run,
            )
        )

    async def stage() -> None:
        try:
            if config.dry_run or config.batched or config.engine == "ray":
                lane = make_lane(store.ledger(), GENERATE, client, provider, tag)
                client.batch = lane.session
                if config.dry_run:
                    stats.estimate = await dry_run([lane], one_pass, _mean_tokens(store, config))
                    return
                stats.batch = await run_rounds(
                    [lane],
                    one_pass,
                    out=config.batch_out,
                    wait=config.wait,
                    check_cost=_cost_cap(config, store, _mean_tokens(store, config)),
                    on_status=on_batch_status,
                    poll_first_s=config.poll_s,
                    ray=ray_settings(config, client) if config.engine == "ray" else None,
                )
            else:
                await one_pass()
        finally:
            await client.aclose()

    tag = prepared.manifest["identity_sha256"][:8]
    try:
        run_stage_loop(stage())
    finally:
        store.close()
    stats.filtered = reader.filtered
    return prepared, stats


GENERATE = "generate"


def _check_source(
    config: GenerateConfig,
    run_dir: Path,
    manifest: dict[str, Any],
    on_notice: Callable[[str], None] | None,
) -> None:
    """Refuse to resume from a seed source that changed since the run began (its rows
    were made from the old contents), unless `--resume-changed`: then warn, and record
    the source as it is now, so the next rerun compares with this one."""
    recorded = read_manifest(run_dir)
    before = recorded.get("seed_source") or {}
    changes = source_changes(before, manifest["seed_source"])
    if not changes:
        return
    what = f"{config.seeds}: changed since this run began ({'; '.join(changes)})"
    if not config.resume_changed:
        raise UserError(
            f"{what}; rows already made keep the old contents. Rerun with --resume-changed "
            "to resume anyway, or choose another --out for a new run"
        )
    if on_notice:
        on_notice(f"{what}; resuming (--resume-changed): rows already made keep the old contents")
    if not config.dry_run:
        earlier = [*recorded.get("seed_source_earlier", []), before]
        updated = {
            **recorded,
            "seed_source": manifest["seed_source"],
            "seed_source_earlier": earlier,
        }
        write_json_atomic(run_dir / MANIFEST, updated)


def _provider(config: GenerateConfig, client: LLMClient) -> Any:
    """The provider's batch API for --batch; none for --batch-out files or a dry run."""
    if not config.batch:
        return None
    provider, _ = client.provider()
    return provider_for(config.model, provider, config.api_base, client.api_key)


def _mean_tokens(store: RunStore, config: GenerateConfig) -> tuple[float, str]:
    """Completion tokens per call for estimates: the run's mean so far, else --max-tokens."""
    mean = store.ledger().mean_completion_tokens(GENERATE) or store.mean_completion_tokens()
    if mean:
        return mean, "run mean"
    return float(config.max_tokens), "--max-tokens"


def _cost_cap(
    config: GenerateConfig, store: RunStore, mean: tuple[float, str]
) -> Callable[[list[Lane]], Any] | None:
    if config.max_cost is None:
        return None
    return lambda lanes: refuse_above_cap(lanes, config.max_cost, store.spend, mean, "--max-cost")
