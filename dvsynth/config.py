"""Every command's settings, one pydantic model each: how calls travel (`CallSettings`),
`GenerateConfig` (and the part of it that defines a run's data), `ValidateConfig`.

`identity()` holds what changes the rows (seeds, model, prompt, sampling); a run
directory refuses a second invocation whose identity differs. How fast or how far a run
goes (concurrency, limit, timeouts) is not identity: changing it resumes the same run.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from dvsynth.errors import UserError
from dvsynth.prompts import DEFAULT_CHECK_PROMPT, DEFAULT_JUDGE_PROMPT
from dvsynth.secrets import looks_secret
from dvsynth.seeds.adapters import SeedFormat
from dvsynth.seeds.readers import BUNDLED_SAMPLE, describe_source
from dvsynth.seeds.shards import shard_from_environment

ModeSetting = Literal["auto", "reverse", "bootstrap"]
DEFAULT_MODEL = "local/smollm2"


def _not_a_key(value: str | None) -> str | None:
    """A model name that is a key (pasted into the wrong option) would be stored in the
    run's folder name, identity and manifest; refused before anything is written."""
    if value is not None and looks_secret(value):
        raise ValueError(
            "looks like an API key, not a model name; keys come from the environment "
            "(the provider's variable, or --api-key-env NAME)"
        )
    return value


#: Every option that names a model: never a key.
ModelName = Annotated[str, AfterValidator(_not_a_key)]
DEFAULT_RUNS_DIR = Path("dvsynth-runs")


_Settings = TypeVar("_Settings", bound="CallSettings")


#: Every number a setting holds is finite: `--timeout inf` or `--rpm 1e400` would pass
#: a `gt=0` bound and then fail every call inside the client.
FINITE = ConfigDict(allow_inf_nan=False)


class CallSettings(BaseModel):
    """How LLM calls travel (speed, limits, faults), shared by every LLM stage."""

    model_config = FINITE

    concurrency: int = Field(16, ge=1)
    timeout: float = Field(300.0, gt=0)
    max_retries: int = Field(4, ge=0)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    transport: str = "auto"  # how calls travel, never what they return: not identity
    # Set by a recipe: errors then name its keys (generate.model), not the CLI's options.
    _in_recipe: bool = PrivateAttr(False)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of `LLMClient` that these settings fill."""
        return self.model_dump(include=set(CallSettings.model_fields))

    def option_names(self, role: str) -> Any:
        """How the `role` ("generator" or "judge") client's errors name its options."""
        from dvsynth.llm.options import options_for

        return options_for(role, recipe=self._in_recipe)

    def from_recipe(self: _Settings) -> _Settings:
        """These settings, marked as a recipe's (`option_names`)."""
        self._in_recipe = True
        return self


class EngineSettings(BaseModel):
    """Which engine makes a stage's LLM calls: online (the default), a provider's batch API
    (`batch`), or an OpenAI batch file run elsewhere (`batch_out`). Never the run's
    identity: the same rows come out of every engine."""

    model_config = FINITE

    batch: bool = False
    batch_out: Path | None = None
    wait: bool = False  # with batch: poll until every batch has ended and is collected
    dry_run: bool = False  # print the cost estimate of the pending calls; send nothing
    poll_s: float = Field(30.0, gt=0)  # first pause between status polls (--wait)
    # --engine ray: the pending requests go through a Ray Data pipeline (`llm.ray`).
    engine: Literal["online", "ray"] = "online"
    ray_address: str = "auto"  # an existing cluster; "auto" falls back to a local one
    ray_processor: Literal["auto", "http", "vllm"] = "auto"  # auto: http with --api-base
    tensor_parallel: int = Field(1, ge=1)  # vLLM: GPUs per replica
    replicas: int | None = Field(None, ge=1)  # vLLM engines, or HTTP actors
    engine_args: dict[str, Any] = Field(default_factory=dict)  # passed to vLLM as they are

    @property
    def batched(self) -> bool:
        return self.batch or self.batch_out is not None

    @property
    def calls_online(self) -> bool:
        """Whether this stage sends its calls online from this process (not a dry run,
        no batch, no Ray): what must first settle the batches a run holds."""
        return not (self.dry_run or self.batched or self.engine == "ray")

    def check_engine(self) -> None:
        """Options that contradict each other, as one line each."""
        if self.batch and self.batch_out is not None:
            raise UserError(
                "--batch-out: writes the requests to a file instead of --batch; give one"
            )
        if self.wait and not self.batch:
            raise UserError("--wait: only with --batch (it waits for the provider's batches)")
        if self.engine == "ray" and self.batched:
            raise UserError("--engine ray: runs the calls itself; leave out --batch / --batch-out")
        if self.engine != "ray" and (self.ray_processor != "auto" or self.engine_args):
            raise UserError("--ray-processor / --engine-arg: only with --engine ray")


class GenerateConfig(CallSettings, EngineSettings):
    seeds: str = Field(str(BUNDLED_SAMPLE), min_length=1)  # "" is a mistake, not the sample
    seed_format: SeedFormat = "auto"
    mapping: dict[str, str] = Field(default_factory=dict)
    split: str = "train"
    mode: ModeSetting = "auto"
    model: ModelName = DEFAULT_MODEL
    api_base: str | None = None
    extra_api_bases: list[str] = Field(default_factory=list)  # more servers, spread over
    # The NAME of the environment variable holding the key for --api-base, never the key.
    api_key_env: str | None = None
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(1024, ge=16)
    sampling_seed: int | None = 0
    prompt: str | None = Field(
        None, min_length=1
    )  # a template file that replaces the mode's bundled prompt
    limit: int | None = Field(None, ge=1)
    shard: str | None = None  # "i/N": this run takes the seeds whose id hashes to i mod N
    max_cost: float | None = Field(None, gt=0)
    strict: bool = False
    # Resume although the seed source changed since the run began (size, mtime, revision).
    resume_changed: bool = False
    out: Path | None = None

    @field_validator("shard")
    @classmethod
    def _resolve_auto_shard(cls, value: str | None) -> str | None:
        """`auto` becomes this task's i/N (Slurm array or RANK / WORLD_SIZE) here, so the
        run's identity and folder name hold the shard itself."""
        return shard_from_environment() if value == "auto" else value

    def client_options(self) -> dict[str, Any]:
        """The call settings, and where the generator's own key comes from."""
        return {**super().client_options(), "api_key_env": self.api_key_env}

    def identity(self, prompt_hashes: dict[str, str]) -> dict[str, Any]:
        source = describe_source(self.seeds, content=False)
        return {
            "seeds": source.get("path") or source.get("id"),
            "seed_format": self.seed_format,
            "mapping": dict(sorted(self.mapping.items())),
            "split": self.split,
            "mode": self.mode,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "sampling_seed": self.sampling_seed,
            "prompts": dict(sorted(prompt_hashes.items())),
            "shard": self.shard,
        }

    def run_dir(self, identity: dict[str, Any]) -> Path:
        """--out, or dvsynth-runs/<seeds>-<model>-<hash>: the same options find the same run."""
        if self.out is not None:
            return self.out
        stem = Path(str(identity["seeds"])).name.split(".")[0] or "seeds"
        model = self.model.rsplit("/", 1)[-1]
        shard = f"-shard{self.shard.replace('/', 'of')}" if self.shard else ""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{stem}-{model}{shard}").strip("-")
        return DEFAULT_RUNS_DIR / f"{slug}-{identity_hash(identity)[:8]}"


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


_FORBID = ConfigDict(extra="forbid", allow_inf_nan=False)


class LengthRuleOptions(BaseModel):
    """Rule `length` (validators.rules.length): bounds on an instruction's words."""

    model_config = _FORBID
    min_words: int = Field(4, ge=0)
    max_words: int = Field(80, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LengthRuleOptions:
        if self.min_words > self.max_words:
            raise ValueError(
                f"min_words {self.min_words} is above max_words {self.max_words}: "
                "every row would be rejected"
            )
        return self


class LeakageRuleOptions(BaseModel):
    """Rule `leakage`: a span of `span_words` words copied at `min_similarity` (0-100]."""

    model_config = _FORBID
    span_words: int = Field(8, ge=2)
    min_similarity: float = Field(95.0, gt=0.0, le=100.0)


class RewordingRuleOptions(BaseModel):
    """Rule `rewording`: b restates a above `max_similarity` (0-100]."""

    model_config = _FORBID
    max_similarity: float = Field(85.0, gt=0.0, le=100.0)


class RuleOptions(BaseModel):
    """The built-in rules' thresholds, bounded here so that the CLI, a recipe and the
    library refuse the same values; a rule not named keeps its defaults."""

    model_config = _FORBID
    length: LengthRuleOptions | None = None
    leakage: LeakageRuleOptions | None = None
    rewording: RewordingRuleOptions | None = None

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """{rule: the options given} for `validators.rules.build_rules`."""
        return {
            name: options.model_dump(exclude_unset=True)
            for name in type(self).model_fields
            if (options := getattr(self, name)) is not None
        }


def _margin(value: Any) -> float | str:
    """A number from 0 to 0.5, or `auto` (one message for every wrong value)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0.0 <= number <= 0.5:  # nan fails both
        raise ValueError("must be a number from 0 to 0.5, or auto")
    return number


#: `escalate_margin`: checked by its type, so that a recipe's section refuses the same.
Margin = Annotated[float | Literal["auto"], BeforeValidator(_margin)]


class ValidateConfig(CallSettings, EngineSettings):
    """`dvsynth validate` (and `calibrate`): the runs, each step's settings, the judge."""

    runs: list[Path]
    judge: bool = True
    judge_model: ModelName | None = None  # None: the generator's model (with a warning)
    judge_api_base: str | None = None  # never the generator's, unless the caller says so
    judge_extra_api_bases: list[str] = Field(default_factory=list)
    judge_api_key_env: str | None = None  # the NAME of the variable with the judge's key
    judge_prompt: str = Field(DEFAULT_JUDGE_PROMPT, min_length=1)
    judge_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    judge_max_tokens: int = Field(16, ge=1)
    judge_logprobs: bool = True
    rule_options: RuleOptions = Field(default_factory=RuleOptions)
    disabled_rules: list[str] = Field(default_factory=list)
    custom_validators: list[str] = Field(default_factory=list)
    judge_negatives: bool = True  # judge each other negative under view b
    max_cost: float | None = Field(None, gt=0)  # USD cap on batch submissions (--batch)
    instruction_check: bool = True  # one call per generated instruction, with the judge
    check_prompt: str = Field(DEFAULT_CHECK_PROMPT, min_length=1)
    dedup: bool = True
    near_threshold: float = Field(90.0, gt=0.0, le=100.0)
    # Issue 27's levers on the judge's bill (validators.decide, validators.judge).
    # `generated`: in reverse mode view a is the seed's own and is not judged.
    judge_views: Literal["all", "generated"] = "all"
    # `joint`: one call per view for both documents instead of one per document.
    judge_protocol: Literal["pointwise", "joint"] = "pointwise"
    # A cascade: judge_model first, this model where it is unsure (`escalate_margin`).
    escalate_to: ModelName | None = Field(None, min_length=1)
    escalate_api_base: str | None = None
    escalate_api_key_env: str | None = None  # the NAME of the variable with its key
    # |P(yes) - 0.5| <= margin escalates; "auto": the smallest margin whose cascade keeps
    # `target_precision` on `escalate_gold` (resolved before the run, then recorded).
    escalate_margin: Margin = 0.2
    escalate_gold: str | None = Field(None, min_length=1)
    target_precision: float = Field(0.95, gt=0.0, le=1.0)
    # Set when `auto` was resolved: the gold set and target the margin was picked on.
    _margin_picked: dict[str, Any] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _escalation_whole(self) -> ValidateConfig:
        """Escalation settings make sense only together; refused here so that the CLI,
        a recipe and the library refuse the same."""
        if self.escalate_to is None:
            given = [
                name
                for name in ("escalate_api_base", "escalate_api_key_env", "escalate_gold")
                if getattr(self, name) is not None
            ]
            if self.escalate_margin != 0.2:
                given.append("escalate_margin")
            if self.target_precision != 0.95:
                given.append("target_precision")
            if given:
                raise ValueError(f"{given[0]} needs escalate_to (the strong judge)")
            return self
        if not self.judge:
            raise ValueError("escalate_to needs the judge; leave out --no-judge")
        if self.escalate_to == (self.judge_model or "") and (
            self.escalate_api_base == self.judge_api_base
        ):
            raise ValueError("escalate_to is the judge itself; name a stronger judge_model")
        if self.escalate_margin != "auto" and (
            self.escalate_gold is not None or self.target_precision != 0.95
        ):
            raise ValueError(
                "escalate_gold and target_precision pick escalate_margin auto; with a margin "
                "of your own, leave them out"
            )
        if not self.judge_logprobs:
            raise ValueError(
                "escalate_to needs judge_logprobs: without P(yes) every judgment would "
                "go to the strong judge"
            )
        if self.escalate_margin == "auto" and self.escalate_gold is None:
            raise ValueError(
                "escalate_margin auto needs a gold set to pick it on: --gold G "
                "(validation.escalate_gold in a recipe)"
            )
        return self

    @classmethod
    def after_generate(
        cls,
        generated: GenerateConfig,
        run_dir: Path,
        judge_model: str | None,
        judge_api_bases: list[str],
        judge_api_key_env: str | None,
    ) -> ValidateConfig:
        """`generate --validate`: the judge inherits no server and no key from the
        generator, unless no judge is named and the generator judges itself."""
        itself = judge_model is None and not judge_api_bases
        inherited = [generated.api_base, *generated.extra_api_bases] if generated.api_base else []
        bases = judge_api_bases or (inherited if judge_model is None else [])
        return cls(
            runs=[run_dir],
            judge_model=judge_model,
            judge_api_base=bases[0] if bases else None,
            judge_extra_api_bases=bases[1:],
            judge_api_key_env=judge_api_key_env or (generated.api_key_env if itself else None),
            **CallSettings.client_options(generated),
            # the same engine: a batch for the judge too, or its requests in the same file
            **generated.model_dump(include={"batch", "batch_out", "wait", "poll_s"}),
        )


class CardOptions(BaseModel):
    """`dvsynth export` / `push`: what the dataset card says beyond the runs' own records."""

    license: str
    version: str = "unreleased"
    repo: str = "ORG/NAME"
    language: str = "en"
    pretty_name: str | None = None
    seed_dataset: str | None = None  # a Hub id, named in source_datasets and the card
    seed_citation: str | None = None  # BibTeX of the seed dataset
    history: list[dict[str, Any]] = Field(default_factory=list)  # earlier versions
    credit_reviewers: bool = False  # name the audit's reviewers (else only their count)

    @staticmethod
    def read_citation(path: Path | None) -> str | None:
        """The BibTeX in `--seed-citation FILE`; an unreadable file is a one-line error."""
        if path is None:
            return None
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"--seed-citation {path}: cannot read ({exc.strerror})") from None


class MineOptions(BaseModel):
    """`dvsynth mine`: pairs and corpus in, seeds with mined hard negatives out."""

    pairs: Path
    corpus: Path
    out: Path
    queries: Path | None = None
    model: ModelName | None = None
    num_negatives: int = Field(4, ge=1)
    range_min: int = Field(0, ge=0)
    range_max: int = Field(50, ge=1)
    relative_margin: float = 0.05
    batch_size: int = Field(64, ge=1)
    limit: int | None = Field(None, ge=1)
    verbose: bool = True
