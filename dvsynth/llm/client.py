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
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

# litellm fetches its price table over the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# litellm caps its aiohttp pool at 500 connections per host, read once at import; past
# that, calls queue inside litellm (and log a warning each). --concurrency is the cap.
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT", "65536")
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", "0")

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt  # noqa: E402

from dvsynth.errors import FatalLLMError, RowError, UserError  # noqa: E402
from dvsynth.llm.limits import RateLimits  # noqa: E402
from dvsynth.llm.retry import error_kind, wait_retry_after_or_backoff  # noqa: E402
from dvsynth.redact import redact  # noqa: E402

LOCAL_PREFIX = "local/"


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_s: float
    finish_reason: str | None = None
    cached: bool = False


class MalformedResponse(Exception):
    """The provider answered, but not with a completion (garbled or empty body)."""


class CallTimeout(TimeoutError):
    """No answer within --timeout."""


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
        max_retries: int = 4,
        rpm: float | None = None,
        tpm: float | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
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
        self.limits = RateLimits(rpm=rpm, tpm=tpm, max_tokens=max_tokens)
        self._wait = wait_retry_after_or_backoff(backoff_initial_s, backoff_max_s)
        self.cache = cache
        self._price_known: bool | None = None
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

    def price_known(self) -> bool:
        """Whether litellm's price table has this model (else cost shows as unknown)."""
        if self.is_local:
            return True
        try:
            info = self._litellm.get_model_info(self.model)
        except Exception:
            return False
        return bool(info.get("input_cost_per_token") or info.get("output_cost_per_token"))

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
        estimate = self.limits.estimate(messages) if self.limits.active else 0
        async with self._semaphore:
            started = time.perf_counter()
            completion = await self._call_with_retries(messages, extra, estimate)
            completion = replace(completion, latency_s=round(time.perf_counter() - started, 4))
        if self.limits.active:
            await self.limits.settle(
                estimate, completion.prompt_tokens, completion.completion_tokens
            )
        if self.cache is not None:
            self.cache.put_response(
                key, {k: v for k, v in asdict(completion).items() if k != "cached"}
            )
        return completion

    async def _call_with_retries(
        self, messages: list[dict[str, str]], extra: dict[str, Any], estimate: int
    ) -> Completion:
        """Retry transient faults (backoff, Retry-After); sort the last error into row or fatal."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: error_kind(exc) == "transient"),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self.limits.acquire(estimate)
                    return self._to_completion(await self._call(messages, extra))
        except Exception as exc:
            message = f"{type(exc).__name__}: {redact(_short(exc))}"
            if error_kind(exc) == "fatal":
                raise FatalLLMError(f"--model {self.model}: {message}") from None
            raise RowError(f"llm:{type(exc).__name__}", message) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _call(self, messages: list[dict[str, str]], extra: dict[str, Any]) -> Any:
        """One request, no retries of its own (litellm's and the OpenAI SDK's are off)."""
        kwargs: dict[str, Any] = dict(self.params)
        if extra:
            kwargs["extra_body"] = extra
        if self.api_base:
            kwargs["api_base"] = self.api_base
            if not self.is_local:
                kwargs.setdefault("api_key", os.environ.get("OPENAI_API_KEY") or "not-needed")
        call = self._litellm.acompletion(
            model=self.model,
            messages=messages,
            timeout=self.timeout,
            num_retries=0,
            max_retries=0,
            **kwargs,
        )
        if self.is_local:
            return await call  # a llama.cpp call cannot be interrupted; it has no timeout
        try:
            return await asyncio.wait_for(call, self.timeout)
        except asyncio.TimeoutError:
            raise CallTimeout(f"no answer within --timeout {self.timeout:g}s") from None

    def _to_completion(self, response: Any) -> Completion:
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError):
            raise MalformedResponse("no choices[0].message.content in the response") from None
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=self._cost(response),
            latency_s=0.0,
            finish_reason=getattr(choice, "finish_reason", None),
        )

    def _cost(self, response: Any) -> float | None:
        """The provider's price for this call, or None when litellm has no price for it.

        litellm already priced the response while logging it; reuse that figure rather
        than pay for a second lookup on every call.
        """
        if self.is_local:
            return 0.0
        if self._price_known is None:
            self._price_known = self.price_known()
        if not self._price_known:
            return None
        cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        if cost is None:
            try:
                cost = self._litellm.completion_cost(completion_response=response)
            except Exception:
                return None
        return float(cost)


def _short(exc: Exception, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text[:limit]
