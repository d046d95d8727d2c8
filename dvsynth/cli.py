"""The `dvsynth` command line: options -> config -> library call, and nothing more.

Every user mistake surfaces as a `UserError` and ends here in one line on stderr with
exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dvsynth import __version__
from dvsynth.config import DEFAULT_MODEL, GenerateConfig
from dvsynth.errors import UserError
from dvsynth.seeds import BUNDLED_SAMPLE, parse_mapping

app = typer.Typer(
    name="dvsynth",
    help="Dual-view instruction-following retrieval data by polarity reversal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


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
        str | None,
        typer.Option(help="Base URL of an OpenAI-compatible server (use with openai/<name>)."),
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
        typer.Option(help="i/N: take only the seeds whose id hashes to i mod N (0-based)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per LLM call.", min=0.1)] = 300.0,
    max_retries: Annotated[
        int, typer.Option(help="Retries of a transient fault (429, 5xx, timeout).", min=0)
    ] = 4,
    rpm: Annotated[
        float | None, typer.Option(help="Requests per minute, at most.", min=0.001)
    ] = None,
    tpm: Annotated[float | None, typer.Option(help="Tokens per minute, at most.", min=1)] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(help="Stop cleanly once the run has cost this many USD.", min=0.0001),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad seed row.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar or warnings.")] = False,
) -> None:
    """Write complementary instructions for seeds: the dual-view candidates of a run."""
    from dvsynth.generate_run import generate_run
    from dvsynth.reporting import GenerateReporter

    if mode not in ("auto", "reverse", "bootstrap"):
        raise UserError(f"--mode: '{mode}' is not one of auto, reverse, bootstrap")
    if seed_format not in ("auto", "promptriever", "triples"):
        raise UserError(f"--format: '{seed_format}' is not one of auto, promptriever, triples")
    local = model.startswith("local/")
    config = GenerateConfig(
        seeds=seeds or str(BUNDLED_SAMPLE),
        seed_format=seed_format,
        mapping=parse_mapping(map_),
        split=split,
        mode=mode,
        model=model,
        api_base=api_base,
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
        out=out,
        shard=shard,
    )
    reporter = GenerateReporter(quiet=quiet, total=limit)
    with reporter:
        prepared, stats = generate_run(
            config,
            on_row=reporter.on_row,
            on_bad_seed=reporter.on_bad_seed,
            on_start=reporter.on_start,
            on_notice=reporter.on_notice,
        )
    reporter.summary(prepared, stats)


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
    from dvsynth.mine import MineOptions, mine_seeds

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
    """Console entry point: user errors become one line and exit code 2."""
    try:
        app(standalone_mode=False)
    except UserError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted: finished rows are saved; rerun the same command to resume")
        sys.exit(130)
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
