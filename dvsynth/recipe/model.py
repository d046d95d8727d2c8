"""The recipe: one file that holds every setting of a release (generate, validate, export,
push), so that a published version can be made again from what was published.

Each section is made from the fields of the config model the matching command already
uses (`GenerateConfig`, `ValidateConfig`, `EngineSettings`, `CallSettings`,
`CardOptions`): the same names, types, defaults and bounds, never a second set to keep
in step. The sections only group them:

- `generate`: what `dvsynth generate` reads and which model writes (the run's identity);
- `validation`: what `dvsynth validate` checks, and the judge;
- `engine`: online, provider batch, or Ray; shared by both LLM stages, as with
  `generate --validate`;
- `limits`: concurrency, rate limits, timeouts, and the USD cap of the whole run;
- `export` / `push`: the card's options and the Hub target.

Every model forbids unknown keys, so a typo is an error that names the key, never a
setting silently ignored. Secrets are never part of a recipe: keys are named by the
environment variable that holds them (`api_key_env`), see `recipe.io.check_secrets`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from dvsynth.config import (
    CallSettings,
    CardOptions,
    EngineSettings,
    GenerateConfig,
    ValidateConfig,
)

_FORBID = ConfigDict(extra="forbid", allow_inf_nan=False)  # finite numbers only


def _section(name: str, doc: str, model: type[BaseModel], names: list[str], **extra: Any):
    """A model with `names` taken from `model`'s own fields (annotation, default, bounds)."""
    fields: dict[str, Any] = {}
    for field in names:
        info = model.model_fields[field]
        fields[field] = (info.annotation, copy.copy(info))
    return create_model(name, __config__=_FORBID, __doc__=doc, **fields, **extra)


#: EngineSettings fields that belong to one invocation, not to a release.
_INVOCATION_ONLY = {"dry_run"}
ENGINE_FIELDS = [f for f in EngineSettings.model_fields if f not in _INVOCATION_ONLY]
LIMIT_FIELDS = list(CallSettings.model_fields)
GENERATE_FIELDS = [
    f
    for f in GenerateConfig.model_fields
    if f not in set(ENGINE_FIELDS) | set(LIMIT_FIELDS) | _INVOCATION_ONLY | {"max_cost", "out"}
]
VALIDATE_FIELDS = [
    f
    for f in ValidateConfig.model_fields
    if f not in set(ENGINE_FIELDS) | set(LIMIT_FIELDS) | _INVOCATION_ONLY | {"max_cost", "runs"}
]
CARD_FIELDS = ["license", "language", "pretty_name", "seed_dataset", "seed_citation"]

GenerateSection = _section(
    "GenerateSection",
    "`dvsynth generate`'s settings: seeds and generator.",
    GenerateConfig,
    GENERATE_FIELDS,
)
ValidationSection = _section(
    "ValidationSection",
    "`dvsynth validate`'s settings: rules, checks, judge, dedup.",
    ValidateConfig,
    VALIDATE_FIELDS,
)
EngineSection = _section(
    "EngineSection", "How both LLM stages send their calls.", EngineSettings, ENGINE_FIELDS
)
LimitsSection = _section(
    "LimitsSection",
    "Speed and spending, for both LLM stages; `max_cost` caps the whole run in USD.",
    CallSettings,
    LIMIT_FIELDS,
    max_cost=(float | None, copy.copy(GenerateConfig.model_fields["max_cost"])),
)
ExportSection = _section(
    "ExportSection",
    "`dvsynth export`'s options; `seed_citation` is the BibTeX itself, so the recipe is "
    "whole without the file it came from.",
    CardOptions,
    CARD_FIELDS,
    val_share=(float, Field(0.05, ge=0.0, lt=1.0)),
    out=(Path | None, None),
)
PushSection = _section(
    "PushSection",
    "`dvsynth push`'s target; the version is a new X.Y.Z tag, never reused.",
    CardOptions,
    ["repo", "version"],
    private=(bool, False),
)


class Recipe(BaseModel):
    """A whole release: `dvsynth run RECIPE` makes, checks, exports and pushes it."""

    model_config = _FORBID

    out: Path | None = None  # the run directory; default: generate's own run folder
    generate: GenerateSection = Field(default_factory=GenerateSection)  # type: ignore[valid-type]
    validation: ValidationSection = Field(  # type: ignore[valid-type]
        default_factory=ValidationSection
    )
    engine: EngineSection = Field(default_factory=EngineSection)  # type: ignore[valid-type]
    limits: LimitsSection = Field(default_factory=LimitsSection)  # type: ignore[valid-type]
    export: ExportSection | None = None  # type: ignore[valid-type]
    push: PushSection | None = None  # type: ignore[valid-type]

    # ------------------------------------------------------------------ configs

    def generate_config(self, out: Path | None = None, dry_run: bool = False) -> GenerateConfig:
        """The `GenerateConfig` that `dvsynth generate` with the same options would build."""
        return GenerateConfig(
            **self.generate.model_dump(),
            **self.engine.model_dump(),
            **self.limits.model_dump(),
            out=out or self.out,
            dry_run=dry_run,
        ).from_recipe()

    def validate_config(self, run_dir: Path, dry_run: bool = False) -> ValidateConfig:
        """The `ValidateConfig` of `dvsynth validate RUN` with the same options; the cap
        goes to validate only with a batch engine (online, the runner checks it)."""
        limits = self.limits.model_dump()
        max_cost = limits.pop("max_cost")
        engine = self.engine.model_dump()
        batched = engine["batch"] or engine["batch_out"] is not None
        return ValidateConfig(
            runs=[run_dir],
            **self.validation.model_dump(),
            **engine,
            **limits,
            max_cost=max_cost if batched else None,
            dry_run=dry_run,
        ).from_recipe()

    def card_options(self) -> CardOptions:
        if self.export is None:
            raise ValueError("the recipe has no export section")
        card = self.export.model_dump(include=set(CARD_FIELDS))
        if self.push is not None:
            card.update(repo=self.push.repo, version=self.push.version)
        return CardOptions(**card)

    def stages(self) -> list[str]:
        """The stages this recipe runs, in order: export and push only when it says how."""
        found = ["generate", "validate"]
        if self.export is not None:
            found.append("export")
            if self.push is not None:
                found.append("push")
        return found
