"""The judge's cost levers as options of `validate` and `calibrate` (issue 27): which
views are judged, the protocol, and a cascade to a strong judge. Kept here so that
`cli/app.py` stays thin; the bounds live in `config.ValidateConfig`, where a recipe and
the library meet the same ones."""

from __future__ import annotations

from typing import Annotated, Any

import typer

JudgeViewsOption = Annotated[
    str,
    typer.Option(
        "--judge-views",
        help="all (default): judge both views; generated: in reverse mode take view a (the "
        "seed's own instruction) unjudged and judge only what the generator wrote. "
        "Bootstrap rows are always judged whole.",
    ),
]
JudgeProtocolOption = Annotated[
    str,
    typer.Option(
        "--judge-protocol",
        help="pointwise (default): one call per view and document; joint: one call per "
        "view for both documents (labelled, the order swapped for half the pairs).",
    ),
]
EscalateToOption = Annotated[
    str | None,
    typer.Option(
        "--escalate-to",
        help="A strong judge (any litellm model): --judge-model answers first with "
        "log-probabilities, and this one decides where it is unsure.",
    ),
]
EscalateApiBaseOption = Annotated[
    str | None,
    typer.Option("--escalate-api-base", help="Base URL of an OpenAI-compatible strong judge."),
]
EscalateKeyOption = Annotated[
    str | None,
    typer.Option("--escalate-api-key-env", help="NAME of the environment variable with its key."),
]
EscalateMarginOption = Annotated[
    str,
    typer.Option(
        "--escalate-margin",
        help="Escalate when P(yes) lies within this of 0.5 (0 to 0.5, default 0.2), or "
        "auto: the smallest margin whose cascade keeps --target-precision on --gold.",
    ),
]
EscalateGoldOption = Annotated[
    str | None,
    typer.Option(
        "--gold",
        help="With --escalate-margin auto: the gold set the margin is picked on (a JSONL "
        "file, an export-gold folder, a Hub id or 'bundled').",
    ),
]
TargetPrecisionOption = Annotated[
    float,
    typer.Option("--target-precision", help="With --escalate-margin auto: keep precision."),
]


def lever_settings(
    views: str,
    protocol: str,
    escalate_to: str | None,
    escalate_api_base: str | None,
    escalate_api_key_env: str | None,
    margin: str,
    gold: str | None,
    target_precision: float,
) -> dict[str, Any]:
    """The options as `ValidateConfig` fields (checked there)."""
    return {
        "judge_views": views,
        "judge_protocol": protocol,
        "escalate_to": escalate_to,
        "escalate_api_base": escalate_api_base,
        "escalate_api_key_env": escalate_api_key_env,
        "escalate_margin": margin,
        "escalate_gold": gold,
        "target_precision": target_precision,
    }
