"""The resolved settings of a generation run, and the part of them that defines its data.

`identity()` holds what changes the rows (seeds, model, prompt, sampling); a run
directory refuses a second invocation whose identity differs. How fast or how far a run
goes (concurrency, limit, timeouts) is not identity: changing it resumes the same run.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from dvsynth.seeds import BUNDLED_SAMPLE, SeedFormat, describe_source

ModeSetting = Literal["auto", "reverse", "bootstrap"]
DEFAULT_MODEL = "local/smollm2"
DEFAULT_RUNS_DIR = Path("dvsynth-runs")


class CallSettings(BaseModel):
    """How LLM calls travel (speed, limits, faults), shared by every LLM stage."""

    concurrency: int = Field(16, ge=1)
    timeout: float = Field(300.0, gt=0)
    max_retries: int = Field(4, ge=0)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    transport: str = "auto"  # how calls travel, never what they return: not identity

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of `LLMClient` that these settings fill."""
        return self.model_dump(include=set(CallSettings.model_fields))


class GenerateConfig(CallSettings):
    seeds: str = str(BUNDLED_SAMPLE)
    seed_format: SeedFormat = "auto"
    mapping: dict[str, str] = Field(default_factory=dict)
    split: str = "train"
    mode: ModeSetting = "auto"
    model: str = DEFAULT_MODEL
    api_base: str | None = None
    # The NAME of the environment variable holding the key for --api-base, never the key.
    api_key_env: str | None = None
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(1024, ge=16)
    sampling_seed: int | None = 0
    prompt: str | None = None  # a template file that replaces the mode's bundled prompt
    limit: int | None = Field(None, ge=1)
    shard: str | None = None  # "i/N": this run takes the seeds whose id hashes to i mod N
    max_cost: float | None = Field(None, gt=0)
    strict: bool = False
    out: Path | None = None

    def client_options(self) -> dict[str, Any]:
        """The call settings, and where the generator's own key comes from."""
        return {**super().client_options(), "api_key_env": self.api_key_env}

    def identity(self, prompt_hashes: dict[str, str]) -> dict[str, Any]:
        source = describe_source(self.seeds)
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
