"""The generation stage: seed -> DualView candidate, by render, call, parse.

Reverse mode keeps the seed's instruction as view a and asks for the complementary
instruction b under which the instruction negative becomes relevant. Bootstrap mode has
no instruction and asks for both in one call. A refusal, an unreadable answer or a
provider fault rejects the row with a reason; only a fatal provider error escapes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dvsynth import __version__
from dvsynth.errors import RowError, UserError
from dvsynth.generate.parse import parse_answer
from dvsynth.llm.client import Completion, LLMClient
from dvsynth.prompts import PromptTemplate
from dvsynth.records import DualView, Mode, Seed, short_hash

ANSWER_TAGS: dict[Mode, tuple[str, ...]] = {
    "reverse": ("new_instruction",),
    "bootstrap": ("instruction_a", "instruction_b"),
}


_clock: list = [None, ""]  # (the second, its ISO text): one format per second, not per row


def utc_now_seconds() -> str:
    """The UTC time to the second, ISO 8601 (`datetime.isoformat(timespec="seconds")`)."""
    now = int(time.time())
    if _clock[0] != now:
        _clock[:] = [now, datetime.fromtimestamp(now, timezone.utc).isoformat()]
    return _clock[1]


def seed_mode(seed: Seed, setting: str) -> Mode:
    """auto: reverse where the seed has an instruction, bootstrap where it has none."""
    if setting == "auto":
        return "reverse" if seed.instruction else "bootstrap"
    return "reverse" if setting == "reverse" else "bootstrap"


def _raw_text(content: Any) -> str:
    """The answer as the row keeps it: its text, or the JSON of content that is not text."""
    return content if isinstance(content, str) else json.dumps(content, default=str)


@dataclass
class Generator:
    """The generate step: a seed in, a candidate row out. Its settings are the run's
    identity (`config.GenerateConfig.identity`): a run directory refuses other ones, so
    `runs.pipeline.run_stage` resumes by seed id alone."""

    client: LLMClient
    templates: Mapping[Mode, PromptTemplate]
    mode_setting: str = "auto"
    name: str = "generate"

    def settings(self) -> dict[str, Any]:
        return {
            "model": self.client.model,
            "mode": self.mode_setting,
            "prompts": {t.name: t.sha256 for t in self.templates.values()},
            "sampling": self._sampling(),
        }

    def _sampling(self) -> dict[str, Any]:
        params = self.client.params
        return {k: params.get(k) for k in ("temperature", "max_tokens", "seed")}

    def describe(self) -> str:
        return f"generator `{self.client.model}`"

    def pair_id(self, seed: Seed, mode: Mode) -> str:
        """Stable per (seed, generator, prompt): reruns agree, runs with other models differ."""
        return short_hash(seed.seed_id, self.client.model, self.templates[mode].sha256)

    async def __call__(self, seed: Seed) -> DualView:
        """One row; an unexpected fault fails it (`internal:<Error>`) instead of the run."""
        try:
            return await self._generate(seed)
        except (UserError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug: the row fails (and is retried), the run goes on
            mode = seed_mode(seed, self.mode_setting)
            detail = f"{type(exc).__name__}: {exc}"[:300]
            return self._row(
                seed,
                mode,
                None,
                reasons=[f"internal:{type(exc).__name__}"],
                error=detail,
                failed=True,
            )

    async def _generate(self, seed: Seed) -> DualView:
        mode = seed_mode(seed, self.mode_setting)
        template = self.templates[mode]
        messages = template.render(
            query=seed.query,
            instruction=seed.instruction or "",
            positive=seed.positive,
            negative=seed.negative,
            other_negatives=seed.other_negatives,
        )
        try:
            completion = await self.client.complete(messages, answer_tags=ANSWER_TAGS[mode])
        except RowError as exc:
            return self._row(
                seed, mode, None, reasons=[exc.reason], error=exc.detail, failed=exc.transient
            )
        if not isinstance(completion.text, str):  # a number, a list: an answer, unreadable
            return self._row(seed, mode, completion, reasons=["generator:unparsable"])
        if completion.finish_reason == "length" and "</answer>" not in completion.text.lower():
            # Cut off by the token budget: whatever follows <answer> may be half a sentence.
            return self._row(seed, mode, completion, reasons=["generator:truncated"])
        parsed = parse_answer(completion.text, ANSWER_TAGS[mode])
        if parsed.refused:
            return self._row(seed, mode, completion, reasons=["generator:none"])
        if not parsed.ok or parsed.fields is None:
            return self._row(seed, mode, completion, reasons=["generator:unparsable"])
        if mode == "reverse":
            instructions = (seed.instruction, parsed.fields["new_instruction"])
        else:
            instructions = (parsed.fields["instruction_a"], parsed.fields["instruction_b"])
        return self._row(seed, mode, completion, instructions=instructions)

    def _row(
        self,
        seed: Seed,
        mode: Mode,
        completion: Completion | None,
        instructions: tuple[str | None, str | None] | None = None,
        reasons: list[str] | None = None,
        error: str | None = None,
        failed: bool = False,
    ) -> DualView:
        """The row; `failed` marks a transient fault (retried by a rerun), other
        reasons a final rejection."""
        template = self.templates[mode]
        # Plain dicts for the nested models: validated in one compiled pass with the row,
        # not through a Python constructor each (issue 18, CPU per row).
        provenance = {
            "generator_model": self.client.model,
            "prompt_name": template.name,
            "prompt_sha256": template.sha256,
            "sampling": self._sampling(),
            "dvsynth_version": __version__,
            "usage": {
                "prompt_tokens": completion.prompt_tokens if completion else 0,
                "completion_tokens": completion.completion_tokens if completion else 0,
            },
            "cost_usd": completion.cost_usd if completion else 0.0,
            "cached": completion.cached if completion else False,
            "latency_s": completion.latency_s if completion else 0.0,
            "created_at": utc_now_seconds(),
        }
        instruction_a, instruction_b = instructions or (seed.instruction, None)
        return DualView(
            pair_id=self.pair_id(seed, mode),
            seed_id=seed.seed_id,
            query=seed.query,
            instruction_a=instruction_a,
            doc_a=seed.positive,
            instruction_b=instruction_b,
            doc_b=seed.negative,
            other_negatives=seed.other_negatives,
            mode=mode,
            status="failed" if failed else "rejected" if reasons else "kept",
            reasons=reasons or [],
            stages=["generate"],
            raw_response=_raw_text(completion.text) if completion else None,
            error=error,
            provenance=provenance,  # type: ignore[arg-type]
        )
