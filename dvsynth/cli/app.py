"""The `dvsynth` command line: options -> config -> library call, and nothing more.

Every user mistake surfaces as a `UserError` and ends here in one line on stderr with
exit code 2, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dvsynth import __version__
from dvsynth.cli.judge_options import (
    EscalateApiBaseOption,
    EscalateGoldOption,
    EscalateKeyOption,
    EscalateMarginOption,
    EscalateToOption,
    JudgeProtocolOption,
    JudgeViewsOption,
    TargetPrecisionOption,
    lever_settings,
)
from dvsynth.config import DEFAULT_MODEL, GenerateConfig
from dvsynth.errors import UserError
from dvsynth.seeds.adapters import parse_mapping
from dvsynth.seeds.readers import BUNDLED_SAMPLE

app = typer.Typer(
    name="dvsynth",
    help="Dual-view instruction-following retrieval data by polarity reversal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

BatchOption = Annotated[
    bool,
    typer.Option(
        "--batch",
        help="Send this stage's calls through the provider's batch API (about half the "
        "price; results within 24 h). Exits after submitting; rerun the same command to "
        "collect (or add --wait).",
    ),
]
BatchOutOption = Annotated[
    Path | None,
    typer.Option(
        "--batch-out",
        help="Write the pending calls to this OpenAI batch input file (vllm run-batch reads "
        "it) and call nothing; bring the results back with `dvsynth batch import`.",
    ),
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="With --batch: poll until every batch is collected.")
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Print the calls this command would send and their estimated cost."
    ),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="online (default): async calls from this process; ray: the calls go through a "
        "Ray Data pipeline (HTTP processor with --api-base, else vLLM replicas).",
    ),
]
RayAddressOption = Annotated[
    str,
    typer.Option(
        "--ray-address",
        help="With --engine ray: the cluster (host:port or ray://...); auto: one started "
        "on this machine with `ray start`, else a local one.",
    ),
]
RayProcessorOption = Annotated[
    str,
    typer.Option("--ray-processor", help="auto (http with --api-base, else vllm), http or vllm."),
]
TensorParallelOption = Annotated[
    int, typer.Option("--tensor-parallel", help="vLLM: GPUs per replica.", min=1)
]
ReplicasOption = Annotated[
    int | None,
    typer.Option("--replicas", help="vLLM engines across the cluster, or HTTP actors.", min=1),
]
EngineArgOption = Annotated[
    list[str] | None,
    typer.Option(
        "--engine-arg",
        help="KEY=VALUE passed to vLLM's engine (repeatable), e.g. max_model_len=8192, "
        "tokenizer=<hf repo> for a GGUF file.",
    ),
]
PollOption = Annotated[
    float,
    typer.Option(
        "--poll-interval", help="With --wait: first pause between polls, seconds.", min=0.01
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dvsynth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = None,
) -> None:
    """dvsynth: turn retrieval seeds into dual-view training data."""


@app.command()
def generate(
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Seeds: .jsonl/.parquet/.csv file, a local HF dataset folder, or a Hub id. "
            "Default: the bundled sample (48 seeds, both modes).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help="A litellm model string (openai/gpt-4o-mini, anthropic/..., hosted_vllm/...) "
            "or local/smollm2, the embedded offline model."
        ),
    ] = DEFAULT_MODEL,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory. Default: dvsynth-runs/<seeds>-<model>-<hash>."),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="reverse (seed has an instruction), bootstrap (write both), or auto (per seed)."
        ),
    ] = "auto",
    map_: Annotated[
        str | None,
        typer.Option("--map", help="Column mapping, e.g. query=question,positive=pos_text."),
    ] = None,
    seed_format: Annotated[
        str, typer.Option("--format", help="auto, promptriever or triples.")
    ] = "auto",
    split: Annotated[str, typer.Option(help="Split of a HF dataset source.")] = "train",
    limit: Annotated[int | None, typer.Option(help="Use only the first N seeds.", min=1)] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="LLM requests in flight (default 16; 1 for the local model).", min=1),
    ] = None,
    api_base: Annotated[
        list[str] | None,
        typer.Option(
            help="Base URL of an OpenAI-compatible server (use with openai/<name>); repeat it "
            "to spread the calls over several servers (least busy first, --concurrency each)."
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            help="NAME of the environment variable holding the key for --api-base (only the "
            "name is stored). Default: the provider's own variable (HOSTED_VLLM_API_KEY for "
            "hosted_vllm/); OPENAI_API_KEY only for api.openai.com.",
            show_default=False,
        ),
    ] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            help="Completion token budget per call (default 1024; 512 for the local model).", min=16
        ),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option(help="A Jinja template file replacing the bundled prompt of --mode."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            help="i/N: take only the seeds whose id hashes to i mod N (0-based); auto: i/N "
            "of this task of a Slurm job array (SLURM_ARRAY_TASK_ID / _COUNT) or of a "
            "RANK / WORLD_SIZE launch."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per LLM call.", min=0.1)] = 300.0,
    max_retries: Annotated[
        int, typer.Option(help="Retries of a transient fault (429, 5xx, timeout).", min=0)
    ] = 4,
    rpm: Annotated[
        float | None, typer.Option(help="Requests per minute, at most.", min=0.001)
    ] = None,
    tpm: Annotated[float | None, typer.Option(help="Tokens per minute, at most.", min=1)] = None,
    transport: Annotated[
        str,
        typer.Option(
            help="auto: a lean HTTP client for OpenAI-compatible --api-base servers "
            "(openai/, hosted_vllm/), litellm for the rest; litellm: always litellm; "
            "http: require the lean client."
        ),
    ] = "auto",
    max_cost: Annotated[
        float | None,
        typer.Option(help="Stop cleanly once the run has cost this many USD.", min=0.0001),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad seed row.")] = False,
    resume_changed: Annotated[
        bool,
        typer.Option(
            help="Resume although the seed file changed since the run began (rows already "
            "made keep the old text)."
        ),
    ] = False,
    batch: BatchOption = False,
    batch_out: BatchOutOption = None,
    wait: WaitOption = False,
    dry_run: DryRunOption = False,
    poll_interval: PollOption = 30.0,
    engine: EngineOption = "online",
    ray_address: RayAddressOption = "auto",
    ray_processor: RayProcessorOption = "auto",
    tensor_parallel: TensorParallelOption = 1,
    replicas: ReplicasOption = None,
    engine_arg: EngineArgOption = None,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate",
            help="Then validate the run (rules, judge, dedup) in the same command.",
        ),
    ] = False,
    judge_model: Annotated[
        str | None,
        typer.Option(
            help="With --validate: the judge model (default: the generator, which then "
            "also keeps --api-base and --api-key-env)."
        ),
    ] = None,
    judge_api_base: Annotated[
        list[str] | None,
        typer.Option(help="With --validate: base URL of an OpenAI-compatible judge server."),
    ] = None,
    judge_api_key_env: Annotated[
        str | None,
        typer.Option(help="With --validate: NAME of the variable holding the judge's key."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar or warnings.")] = False,
) -> None:
    """Write complementary instructions for seeds: the dual-view candidates of a run."""
    from dvsynth.cli.stages import generate_reported, validate_reported

    if mode not in ("auto", "reverse", "bootstrap"):
        raise UserError(f"--mode: '{mode}' is not one of auto, reverse, bootstrap")
    if seed_format not in ("auto", "promptriever", "triples"):
        raise UserError(f"--format: '{seed_format}' is not one of auto, promptriever, triples")
    local = model.startswith("local/")
    config = GenerateConfig(
        seeds=str(BUNDLED_SAMPLE) if seeds is None else seeds,
        seed_format=seed_format,
        mapping=parse_mapping(map_),
        split=split,
        mode=mode,
        model=model,
        api_base=(api_base or [None])[0],
        extra_api_bases=(api_base or [])[1:],
        api_key_env=api_key_env,
        temperature=temperature,
        max_tokens=max_tokens or (512 if local else 1024),
        prompt=prompt,
        limit=limit,
        concurrency=concurrency or (1 if local else 16),
        timeout=timeout,
        max_retries=max_retries,
        rpm=rpm,
        tpm=tpm,
        max_cost=max_cost,
        strict=strict,
        resume_changed=resume_changed,
        out=out,
        shard=shard,
        transport=transport,
        batch=batch,
        batch_out=batch_out,
        wait=wait,
        dry_run=dry_run,
        poll_s=poll_interval,
        **_engine_options(
            engine, ray_address, ray_processor, tensor_parallel, replicas, engine_arg
        ),
    )
    judge = None
    if validate:
        from dvsynth.config import ValidateConfig
        from dvsynth.validators.run import preflight

        judge = ValidateConfig.after_generate(
            config, Path(), judge_model, judge_api_base or [], judge_api_key_env
        )
        if not dry_run:
            preflight(judge, config.model)  # a missing judge key fails before generate is paid
    prepared, stats, reporter = generate_reported(config, quiet)
    if judge is not None and (dry_run or stats.waiting):
        reporter.on_notice(
            "--validate: not run, the generation is not finished (a dry run, or rows wait on "
            "a batch); run `dvsynth validate` once it is"
        )
    elif judge is not None:
        validate_reported(judge.model_copy(update={"runs": [prepared.run_dir]}), quiet)


RunDirs = Annotated[
    list[Path], typer.Argument(help="Run directories (shards, or runs of several models).")
]


@app.command("validate")
def validate_command(
    runs: RunDirs,
    judge_model: Annotated[
        str | None,
        typer.Option(help="The judge (any litellm model). Default: the runs' generator."),
    ] = None,
    judge: Annotated[
        bool, typer.Option("--judge/--no-judge", help="--no-judge: rules and dedup only.")
    ] = True,
    judge_api_base: Annotated[
        list[str] | None,
        typer.Option(help="Base URL of an OpenAI-compatible judge server (repeat for several)."),
    ] = None,
    judge_api_key_env: Annotated[
        str | None,
        typer.Option(help="NAME of the environment variable holding the judge's key."),
    ] = None,
    judge_threshold: Annotated[
        float,
        typer.Option(help="P(yes) needed for 'relevant' when the judge returns logprobs."),
    ] = 0.5,
    judge_logprobs: Annotated[
        bool,
        typer.Option(help="Ask for log-probabilities (P(yes)); off: the parsed word only."),
    ] = True,
    judge_max_tokens: Annotated[int, typer.Option(min=1, help="Judge answer budget.")] = 16,
    judge_prompt: Annotated[
        str | None, typer.Option(help="A Jinja template replacing the bundled judge prompt.")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Judge calls in flight (default 16; 1 for local models).", min=1),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per judge call.", min=0.1)] = 300.0,
    max_retries: Annotated[int, typer.Option(help="Retries of a transient fault.", min=0)] = 4,
    rpm: Annotated[float | None, typer.Option(help="Requests per minute.", min=0.001)] = None,
    tpm: Annotated[float | None, typer.Option(help="Tokens per minute.", min=1)] = None,
    transport: Annotated[str, typer.Option(help="auto | litellm | http (see generate).")] = "auto",
    min_words: Annotated[int, typer.Option(help="Rule length: fewest words.", min=0)] = 4,
    max_words: Annotated[int, typer.Option(help="Rule length: most words.", min=1)] = 80,
    leak_span: Annotated[
        int, typer.Option(help="Rule leakage: words in a copied span.", min=2)
    ] = 8,
    leak_similarity: Annotated[
        float, typer.Option(help="Rule leakage: rapidfuzz partial_ratio of a copy.")
    ] = 95.0,
    max_rewording: Annotated[
        float,
        typer.Option(help="Rule rewording: token_set_ratio above which b restates a."),
    ] = 85.0,
    no_rule: Annotated[
        list[str] | None, typer.Option(help="Turn off a built-in rule (repeatable).")
    ] = None,
    validator: Annotated[
        list[str] | None,
        typer.Option(help="An extra rule, module:function(row) -> reason | None (repeatable)."),
    ] = None,
    judge_negatives: Annotated[
        bool,
        typer.Option(
            help="Judge each of the seed's other negatives under instruction b (one call each); "
            "only those found not relevant become view b's extra negatives. Off: view b "
            "carries only doc_a."
        ),
    ] = True,
    instruction_check: Annotated[
        bool,
        typer.Option(
            help="With the judge: one short call per generated instruction, without the "
            "documents: could a user state this need without seeing the candidates?"
        ),
    ] = True,
    dedup: Annotated[bool, typer.Option(help="Drop exact and near duplicates.")] = True,
    near_threshold: Annotated[
        float, typer.Option(help="rapidfuzz ratio (0-100) that makes a near duplicate.")
    ] = 90.0,
    batch: BatchOption = False,
    batch_out: BatchOutOption = None,
    wait: WaitOption = False,
    dry_run: DryRunOption = False,
    poll_interval: PollOption = 30.0,
    engine: EngineOption = "online",
    ray_address: RayAddressOption = "auto",
    ray_processor: RayProcessorOption = "auto",
    tensor_parallel: TensorParallelOption = 1,
    replicas: ReplicasOption = None,
    engine_arg: EngineArgOption = None,
    max_cost: Annotated[
        float | None,
        typer.Option(help="With --batch: refuse to submit above this many USD.", min=0.0001),
    ] = None,
    judge_views: JudgeViewsOption = "all",
    judge_protocol: JudgeProtocolOption = "pointwise",
    escalate_to: EscalateToOption = None,
    escalate_api_base: EscalateApiBaseOption = None,
    escalate_api_key_env: EscalateKeyOption = None,
    escalate_margin: EscalateMarginOption = "0.2",
    gold: EscalateGoldOption = None,
    target_precision: TargetPrecisionOption = 0.95,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Check each pair: rules, an LLM judge on both views (4 judgments), and dedup."""
    from dvsynth.cli.stages import validate_reported
    from dvsynth.config import ValidateConfig

    model = judge_model or ""
    config = ValidateConfig(
        runs=runs,
        judge=judge,
        judge_model=judge_model,
        judge_api_base=(judge_api_base or [None])[0],
        judge_extra_api_bases=(judge_api_base or [])[1:],
        judge_api_key_env=judge_api_key_env,
        judge_threshold=judge_threshold,
        judge_logprobs=judge_logprobs,
        judge_max_tokens=judge_max_tokens,
        concurrency=concurrency or (1 if model.startswith("local/") else 16),
        timeout=timeout,
        max_retries=max_retries,
        rpm=rpm,
        tpm=tpm,
        transport=transport,
        rule_options={
            "length": {"min_words": min_words, "max_words": max_words},
            "leakage": {"span_words": leak_span, "min_similarity": leak_similarity},
            "rewording": {"max_similarity": max_rewording},
        },
        disabled_rules=no_rule or [],
        custom_validators=validator or [],
        judge_negatives=judge_negatives,
        instruction_check=instruction_check,
        dedup=dedup,
        near_threshold=near_threshold,
        batch=batch,
        batch_out=batch_out,
        wait=wait,
        dry_run=dry_run,
        poll_s=poll_interval,
        max_cost=max_cost,
        **_engine_options(
            engine, ray_address, ray_processor, tensor_parallel, replicas, engine_arg
        ),
        **({"judge_prompt": judge_prompt} if judge_prompt is not None else {}),
        **lever_settings(
            judge_views,
            judge_protocol,
            escalate_to,
            escalate_api_base,
            escalate_api_key_env,
            escalate_margin,
            gold,
            target_precision,
        ),
    )
    validate_reported(config, quiet)


def _engine_options(
    engine: str,
    ray_address: str,
    ray_processor: str,
    tensor_parallel: int,
    replicas: int | None,
    engine_arg: list[str] | None,
) -> dict[str, Any]:
    """The engine options as config fields, each checked with a one-line error."""
    if engine not in ("online", "ray"):
        raise UserError(f"--engine: '{engine}' is not one of online, ray")
    if ray_processor not in ("auto", "http", "vllm"):
        raise UserError(f"--ray-processor: '{ray_processor}' is not one of auto, http, vllm")
    args: dict[str, Any] = {}
    for item in engine_arg or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--engine-arg: '{item}' is not KEY=VALUE")
        try:
            args[key.strip()] = json.loads(value)
        except ValueError:
            args[key.strip()] = value  # a plain string: a path, a repo id
    return {
        "engine": engine,
        "ray_address": ray_address,
        "ray_processor": ray_processor,
        "tensor_parallel": tensor_parallel,
        "replicas": replicas,
        "engine_args": args,
    }


from dvsynth.cli.batch import batch_app  # noqa: E402 - the sub-app needs `app` above

app.add_typer(batch_app, name="batch")

from dvsynth.cli.recipe import recipe_app, run_command  # noqa: E402 - a release as one file

app.command("run")(run_command)
app.add_typer(recipe_app, name="recipe")

from dvsynth.cli.view import audit_command, view_command  # noqa: E402 - the web pages

app.command("view")(view_command)
app.command("audit")(audit_command)


@app.command("stats")
def stats_command(
    runs: RunDirs,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
) -> None:
    """Counts by status and reason, acceptance per stage, judge agreement, lengths, cost."""

    from dvsynth.cli.report import print_stats
    from dvsynth.runs.stats import compute_stats

    data = compute_stats(runs)
    if json_output:
        typer.echo(json.dumps(data, indent=2))
    else:
        print_stats(data, Console())


LicenseOption = Annotated[
    str,
    typer.Option(
        "--license",
        help="Hub license id of the dataset (apache-2.0, cc-by-4.0, mit, other, ...); the "
        "seed data keeps its own terms, so pick one compatible with them.",
    ),
]
ValShare = Annotated[
    float, typer.Option(help="Share of queries in the validation split (by query).")
]
SeedDataset = Annotated[
    str | None, typer.Option(help="Hub id of the seed dataset, credited in the card.")
]
SeedCitation = Annotated[
    Path | None, typer.Option(help="A file with the seed dataset's BibTeX, for the card.")
]
Language = Annotated[str, typer.Option(help="Language code of the data.")]
AllowUnvalidated = Annotated[
    bool,
    typer.Option(
        help="Export rows that have not passed every validation stage too, each marked with "
        "the stage it reached (column `stage`), and say so in the card. Off: such a run is "
        "refused."
    ),
]


CreditReviewers = Annotated[
    bool,
    typer.Option(
        "--credit-reviewers",
        help="Name the people who audited the runs (`dvsynth audit`) in the card; off: "
        "only how many there were.",
    ),
]


def _card_options(
    license_: str,
    version: str,
    repo: str,
    language: str,
    seed_dataset,
    seed_citation,
    credit_reviewers: bool = False,
):
    from dvsynth.config import CardOptions

    return CardOptions(
        credit_reviewers=credit_reviewers,
        license=license_,
        version=version,
        repo=repo,
        language=language,
        seed_dataset=seed_dataset,
        seed_citation=CardOptions.read_citation(seed_citation),
    )


@app.command("export")
def export_command(
    runs: RunDirs,
    out: Annotated[Path, typer.Option(help="The dataset folder to write (replaced).")],
    license_: LicenseOption,
    val_share: ValShare = 0.05,
    version: Annotated[str, typer.Option(help="Version named in the card.")] = "unreleased",
    repo: Annotated[
        str, typer.Option(help="The Hub repo the card's code examples load.")
    ] = "ORG/NAME",
    language: Language = "en",
    seed_dataset: SeedDataset = None,
    seed_citation: SeedCitation = None,
    allow_unvalidated: AllowUnvalidated = False,
    credit_reviewers: CreditReviewers = False,
) -> None:
    """Write a dataset folder (pairs, triplets, rejected; train/validation) with its card."""
    from dvsynth.publish.dataset import export_dataset

    options = _card_options(
        license_, version, repo, language, seed_dataset, seed_citation, credit_reviewers
    )
    report = export_dataset(runs, out, options, val_share, allow_unvalidated=allow_unvalidated)
    for config, splits in report.rows.items():
        counts = ", ".join(f"{split} {n}" for split, n in splits.items())
        typer.echo(f"{config}: {counts}")
    typer.echo(
        f"wrote {len(report.files)} files to {out}; load with "
        f"datasets.load_dataset('{out}', 'triplets')"
    )


@app.command("push")
def push_command(
    runs: RunDirs,
    repo: Annotated[str, typer.Option(help="Hub dataset repo, ORG/NAME.")],
    version: Annotated[str, typer.Option(help="X.Y.Z; tagged vX.Y.Z, never reused.")],
    license_: LicenseOption,
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            help="Print the operations; no upload, and no folder left behind (the export "
            "is built in a temporary folder; `dvsynth export` writes one to look at)."
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the export (default dvsynth-export/...).")
    ] = None,
    val_share: ValShare = 0.05,
    language: Language = "en",
    seed_dataset: SeedDataset = None,
    seed_citation: SeedCitation = None,
    allow_unvalidated: AllowUnvalidated = False,
    credit_reviewers: CreditReviewers = False,
) -> None:
    """Export, then upload data and card in one commit and tag it vX.Y.Z."""
    from dvsynth.publish.hub import check_target, push_dataset

    check_target(repo, version)
    folder = out or Path("dvsynth-export") / f"{repo.replace('/', '--')}-v{version}"
    options = _card_options(
        license_, version, repo, language, seed_dataset, seed_citation, credit_reviewers
    )

    def show(plan) -> None:
        prefix = "would " if dry_run else ""
        for line in plan.describe():
            typer.echo(f"{prefix}{line}")

    plan = push_dataset(
        runs,
        folder,
        options,
        private=private,
        dry_run=dry_run,
        val_share=val_share,
        on_plan=show,
        allow_unvalidated=allow_unvalidated,
    )
    if not dry_run:
        typer.echo(
            f"pushed {plan.repo} {plan.tag}: load_dataset('{plan.repo}', 'triplets', "
            f"revision='{plan.tag}')"
        )


GoldOption = Annotated[
    str | None,
    typer.Option(
        "--gold",
        help="Gold pairs: a JSONL file, a folder written by `dvsynth export-gold`, a Hub "
        "dataset id ORG/NAME[@REVISION], or `bundled` (the default: the bundled sample set).",
    ),
]


@app.command("export-gold")
def export_gold_command(
    out: Annotated[Path, typer.Argument(help="The dataset folder to write (replaced).")],
    gold: Annotated[
        list[str] | None,
        typer.Option(
            "--gold",
            help="A gold set to include (repeatable): JSONL file, export-gold folder, Hub id "
            "or `bundled` (the default), e.g. benchmarks/gold/msmarco-gold.jsonl.",
        ),
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline/--no-baseline",
            help="Score the bundled all-MiniLM-L6-v2 on the pairs (eval-retriever's code) and "
            "put the numbers in the card; --no-baseline: the card says they were not computed.",
        ),
    ] = True,
    license_: Annotated[
        str | None,
        typer.Option(
            "--license",
            help="Hub license id for the card (default: apache-2.0 for the bundled set "
            "alone, else other; the card gives each set's terms).",
        ),
    ] = None,
    push: Annotated[
        str | None,
        typer.Option("--push", help="Then upload to this Hub dataset repo, ORG/NAME."),
    ] = None,
    version: Annotated[
        str, typer.Option(help="X.Y.Z; with --push, tagged vX.Y.Z, never reused.")
    ] = "unreleased",
    private: Annotated[bool, typer.Option(help="With --push: create the repo private.")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="With --push: print the operations; nothing written or uploaded.")
    ] = False,
) -> None:
    """Write the gold sets as a Hub dataset folder (configs pairs, corrupt) with its card."""
    from dvsynth.config import CardOptions
    from dvsynth.publish.gold_dataset import (
        default_license,
        export_gold,
        push_gold,
        read_sources,
    )

    if push:
        from dvsynth.publish.hub import check_target

        check_target(push, version)  # before the (slow) baseline
    pairs = read_sources(gold or [])
    options = CardOptions(
        license=license_ or default_license(pairs),
        version=version,
        repo=push or "ORG/NAME",
    )
    if push:

        def show(plan) -> None:
            for line in plan.describe():
                typer.echo(f"{'would ' if dry_run else ''}{line}")

        plan = push_gold(
            pairs, out, options, baseline=baseline, private=private, dry_run=dry_run, on_plan=show
        )
        if not dry_run:
            target = f"{plan.repo}@{plan.tag}"
            typer.echo(f"pushed {plan.repo} {plan.tag}: dvsynth eval-retriever --gold {target}")
        return
    report = export_gold(pairs, out, options, baseline=baseline)
    typer.echo(f"pairs: {report.rows['pairs']}, corrupt: {report.rows['corrupt']}")
    typer.echo(
        f"wrote {len(report.files)} files to {out}; load with "
        f"datasets.load_dataset('{out}', 'pairs'), or dvsynth eval-retriever --gold {out}"
    )


@app.command("calibrate")
def calibrate_command(
    judge_model: Annotated[
        str | None, typer.Option(help="The judge to calibrate (any litellm model).")
    ] = None,
    gold: GoldOption = None,
    judge: Annotated[
        bool, typer.Option("--judge/--no-judge", help="--no-judge: score the rules alone.")
    ] = True,
    judge_api_base: Annotated[
        list[str] | None,
        typer.Option(help="Base URL of an OpenAI-compatible judge server (repeat for several)."),
    ] = None,
    judge_api_key_env: Annotated[
        str | None,
        typer.Option(help="NAME of the environment variable holding the judge's key."),
    ] = None,
    judge_threshold: Annotated[float, typer.Option(help="P(yes) for 'relevant'.")] = 0.5,
    judge_logprobs: Annotated[bool, typer.Option(help="Ask for log-probabilities.")] = True,
    judge_prompt: Annotated[
        str | None, typer.Option(help="A Jinja template replacing the bundled judge prompt.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Pairs judged at once.")] = 8,
    timeout: Annotated[float, typer.Option(help="Seconds per judge call.", min=0.1)] = 300.0,
    max_retries: Annotated[int, typer.Option(help="Retries of a transient fault.", min=0)] = 4,
    transport: Annotated[str, typer.Option(help="auto | litellm | http.")] = "auto",
    instruction_check: Annotated[
        bool, typer.Option(help="With the judge: the instruction check, as validate runs it.")
    ] = True,
    judge_views: JudgeViewsOption = "all",
    judge_protocol: JudgeProtocolOption = "pointwise",
    escalate_to: EscalateToOption = None,
    escalate_api_base: EscalateApiBaseOption = None,
    escalate_api_key_env: EscalateKeyOption = None,
    escalate_margin: EscalateMarginOption = "0.2",
    target_precision: TargetPrecisionOption = 0.95,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score the rules and a judge on gold pairs and their labelled corrupt variants; with
    --escalate-to, the cheap judge alone, the strong judge alone and the cascade."""
    from dvsynth.config import ValidateConfig
    from dvsynth.evaluate.calibrate import calibrate
    from dvsynth.evaluate.gold import load_gold

    if judge and not judge_model:
        raise UserError("--judge-model: required (or --no-judge to score the rules alone)")
    pairs = load_gold(gold)
    config = ValidateConfig(
        runs=[],
        judge=judge,
        judge_model=judge_model,
        judge_api_base=(judge_api_base or [None])[0],
        judge_extra_api_bases=(judge_api_base or [])[1:],
        judge_api_key_env=judge_api_key_env,
        judge_threshold=judge_threshold,
        instruction_check=instruction_check,
        judge_negatives=False,  # calibrate scores keep / reject; negatives change neither
        judge_logprobs=judge_logprobs,
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
        transport=transport,
        **({"judge_prompt": judge_prompt} if judge_prompt is not None else {}),
        **lever_settings(
            judge_views,
            judge_protocol,
            escalate_to,
            escalate_api_base,
            escalate_api_key_env,
            escalate_margin,
            (str(gold) if gold is not None else "bundled") if escalate_margin == "auto" else None,
            target_precision,
        ),
    )
    result = calibrate(pairs, config)
    if json_output:
        typer.echo(json.dumps(result, indent=2))
        return
    from dvsynth.cli.report import print_calibration

    print_calibration(result, Console())


@app.command("eval-retriever")
def eval_retriever_command(
    model: Annotated[
        str | None,
        typer.Option(help="sentence-transformers model name or path (default: bundled MiniLM)."),
    ] = None,
    gold: GoldOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Does a retriever follow instructions? Per-view and dual accuracy, p-MRR on gold."""
    from dvsynth.evaluate.eval_retriever import (
        evaluate_pairs,
        sentence_transformer_scorer,
        summarize,
    )
    from dvsynth.evaluate.gold import load_gold

    pairs = load_gold(gold)
    summary = summarize(evaluate_pairs(pairs, sentence_transformer_scorer(model)))
    summary["model"] = model or "all-MiniLM-L6-v2 (bundled)"
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        typer.echo(f"{key:>16}: {value}")


@app.command()
def mine(
    pairs: Annotated[
        Path,
        typer.Option(
            help="(query, positive) pairs: a qrels TSV (qid, pid, score; needs --queries) or a "
            ".jsonl/.csv/.parquet with query and positive columns."
        ),
    ],
    corpus: Annotated[
        Path,
        typer.Option(help="Passages to mine negatives from: BEIR corpus.jsonl (_id, title, text)."),
    ],
    out: Annotated[Path, typer.Option(help="Output seeds file (.jsonl).")],
    queries: Annotated[
        Path | None, typer.Option(help="BEIR queries.jsonl (_id, text), for a qrels --pairs file.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Sentence-transformers model name or path. Default: bundled all-MiniLM-L6-v2."
        ),
    ] = None,
    num_negatives: Annotated[int, typer.Option(min=1, help="Negatives per seed.")] = 4,
    range_min: Annotated[int, typer.Option(min=0, help="Skip the N closest passages.")] = 0,
    range_max: Annotated[int, typer.Option(min=1, help="Consider the N closest passages.")] = 50,
    relative_margin: Annotated[
        float,
        typer.Option(help="Drop negatives scoring within this share of the positive's score."),
    ] = 0.05,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N pairs.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Mine hard negatives: (query, positive) pairs + a corpus -> bootstrap-mode seeds."""
    from dvsynth.config import MineOptions
    from dvsynth.seeds.mine import mine_seeds

    report = mine_seeds(
        MineOptions(
            pairs=pairs,
            corpus=corpus,
            out=out,
            queries=queries,
            model=model,
            num_negatives=num_negatives,
            range_min=range_min,
            range_max=range_max,
            relative_margin=relative_margin,
            batch_size=batch_size,
            limit=limit,
            verbose=not quiet,
        )
    )
    typer.echo(
        f"mined {report.written} seeds from {report.pairs} pairs over {report.corpus_size} "
        f"passages ({report.without_negatives} pairs had no valid negative) -> {out}"
    )


def main() -> None:
    """Console entry point, under the CLI's one error boundary (`cli.boundary`)."""
    from dvsynth.cli.boundary import run_command

    run_command()


if __name__ == "__main__":
    main()
