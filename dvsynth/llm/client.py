"""One async chat client for every provider, through litellm, with a response cache.

litellm speaks to OpenAI, Anthropic, vLLM and a hundred others with one call shape; the
embedded model plugs into it as a custom provider, so the pipeline never knows which it
talks to. The cache, keyed by (model, messages, sampling), is what makes a rerun after a
kill free: a finished call is never paid twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

# litellm fetches its price table over the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from dvsynth.errors import FatalLLMError, RowError, UserError  # noqa: E402
from dvsynth.redact import redact  # noqa: E402

LOCAL_PREFIX = "local/"


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_s: float
    cached: bool = False


class ResponseCache(Protocol):
    def get_response(self, key: str) -> dict[str, Any] | None: ...

    def put_response(self, key: str, value: dict[str, Any]) -> None: ...


def _litellm():
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True  # providers that lack a parameter (seed) still answer
    return litellm


def cache_key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    payload = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LLMClient:
    """Bounded-concurrency completions with caching; errors sorted into row vs fatal."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = 0,
        concurrency: int = 8,
        timeout: float = 300.0,
        max_retries: int = 2,
        cache: ResponseCache | None = None,
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.params: dict[str, Any] = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
        }
        self.timeout = timeout
        self.max_retries = max_retries
        self.cache = cache
        self._semaphore = asyncio.Semaphore(concurrency)
        self._litellm = _litellm()
        if model.startswith(LOCAL_PREFIX):
            from dvsynth.llm.local import register_local_provider

            register_local_provider(self._litellm)

    def check(self) -> None:
        """Fail fast, before any row, on an unknown provider or a missing API key."""
        litellm = self._litellm
        try:
            litellm.get_llm_provider(self.model)
        except Exception:
            raise UserError(
                f"--model: '{self.model}' names no known provider; use a litellm model string "
                "such as openai/gpt-4o-mini, anthropic/<model>, hosted_vllm/<model>, "
                "or local/smollm2"
            ) from None
        if self.is_local:
            from dvsynth.llm.local import resolve_local_model

            resolve_local_model(self.model)
            return
        if self.api_base:
            return  # self-hosted OpenAI-compatible servers usually need no key
        missing = litellm.validate_environment(self.model).get("missing_keys") or []
        if missing:
            raise UserError(f"--model {self.model}: missing API key, set {', '.join(missing)}")

    @property
    def is_local(self) -> bool:
        return self.model.startswith(LOCAL_PREFIX)

    async def complete(
        self, messages: list[dict[str, str]], answer_tags: tuple[str, ...] = ()
    ) -> Completion:
        """One completion. `answer_tags` lets the embedded model constrain its output format."""
        extra = {"answer_tags": list(answer_tags)} if self.is_local and answer_tags else {}
        key = cache_key(self.model, messages, {**self.params, **extra})
        if self.cache is not None:
            hit = self.cache.get_response(key)
            if hit is not None:
                return Completion(**{**hit, "cached": True})
        async with self._semaphore:
            started = time.perf_counter()
            response = await self._call(messages, extra)
            latency = time.perf_counter() - started
        completion = self._to_completion(response, latency)
        if self.cache is not None:
            self.cache.put_response(
                key, {k: v for k, v in asdict(completion).items() if k != "cached"}
            )
        return completion

    async def _call(self, messages: list[dict[str, str]], extra: dict[str, Any]) -> Any:
        litellm = self._litellm
        kwargs: dict[str, Any] = dict(self.params)
        if extra:
            kwargs["extra_body"] = extra
        if self.api_base:
            kwargs["api_base"] = self.api_base
            if not self.is_local:
                kwargs.setdefault("api_key", os.environ.get("OPENAI_API_KEY") or "not-needed")
        try:
            return await litellm.acompletion(
                model=self.model,
                messages=messages,
                timeout=self.timeout,
                num_retries=self.max_retries,
                **kwargs,
            )
        except (
            litellm.AuthenticationError,
            litellm.PermissionDeniedError,
            litellm.NotFoundError,
        ) as exc:
            raise FatalLLMError(
                f"--model {self.model}: {type(exc).__name__}: {redact(_short(exc))}"
            ) from None
        except Exception as exc:  # any other provider fault is one row's fault
            raise RowError(f"llm:{type(exc).__name__}", redact(_short(exc))) from None

    def _to_completion(self, response: Any, latency: float) -> Completion:
        try:
            text = response.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            raise RowError("llm:malformed_response", "no choices[0].message.content") from None
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=self._cost(response),
            latency_s=round(latency, 4),
        )

    def _cost(self, response: Any) -> float | None:
        """The provider's price for this call, or None when litellm has no price for it."""
        if self.is_local:
            return 0.0
        try:
            return float(self._litellm.completion_cost(completion_response=response))
        except Exception:
            return None


def _short(exc: Exception, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text[:limit]
