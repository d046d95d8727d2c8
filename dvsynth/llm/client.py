"""One async chat client for every provider, through litellm, with a response cache.

litellm speaks to OpenAI, Anthropic, vLLM and a hundred others with one call shape, so
the pipeline never knows which it talks to. An OpenAI-compatible --api-base and the
embedded model are called directly instead, and then litellm is never imported: its
import alone takes seconds, which a short run would pay before its first request
(prices come from litellm's bundled table, `llm.prices`). The cache, keyed by (model,
messages, sampling), is what makes a rerun after a kill free: a finished call is never
paid twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

# litellm fetches its price table over the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# litellm caps its aiohttp pool at 500 connections per host, read once at import; past
# that, calls queue inside litellm (and log a warning each). --concurrency is the cap.
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT", "65536")
os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", "0")

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt  # noqa: E402

from dvsynth.errors import FatalLLMError, RowError, UserError  # noqa: E402
from dvsynth.llm.keys import NO_KEY, choose_key, plain_http_warning  # noqa: E402
from dvsynth.llm.limits import RateLimits  # noqa: E402
from dvsynth.llm.prices import UNSURE, lean_rates  # noqa: E402
from dvsynth.llm.retry import (  # noqa: E402
    error_kind,
    is_systematic_client_error,
    status_of,
    wait_retry_after_or_backoff,
)
from dvsynth.llm.servers import ServerPool  # noqa: E402
from dvsynth.llm.transports.http import (  # noqa: E402
    MalformedResponse,
    OpenAIHTTPTransport,
    is_openai_compatible,
)
from dvsynth.redact import redact  # noqa: E402

if TYPE_CHECKING:
    from dvsynth.llm.batch.session import BatchSession

LOCAL_PREFIX = "local/"
_TIMEOUT = getattr(asyncio, "timeout", None)  # Python 3.11+
TRANSPORTS = ("auto", "litellm", "http")
# A 4xx that every row hits (unsupported parameter, unknown model name) stops the run
# after this many calls, when none has succeeded, instead of rejecting every seed.
FATAL_AFTER_CLIENT_ERRORS = 3


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_s: float
    finish_reason: str | None = None
    cached: bool = False
    # Top alternatives (token -> log-probability) at each of the first answer tokens,
    # when the call asked for them and the provider returns them.
    logprobs: list[dict[str, float]] | None = None
    # The token the model produced at each of those positions (None in caches written
    # before dvsynth kept it).
    tokens: list[str] | None = None
    # Answered through a batch (and priced at the batch rate), not by an online call.
    batch: bool = False


class CallTimeout(TimeoutError):
    """No answer within --timeout."""


class ResponseCache(Protocol):
    def get_response(self, key: str) -> dict[str, Any] | None: ...

    def put_response(self, key: str, value: dict[str, Any]) -> None: ...


@lru_cache(maxsize=1)
def _litellm():
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True  # providers that lack a parameter (seed) still answer
    return litellm


def cache_key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    payload = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def encoded_cache_key(model: str, messages_json: str, params: dict[str, Any]) -> str:
    """`cache_key`, byte for byte, from the messages already encoded with sort_keys (the
    keys "messages" < "model" < "params" come in that order when sorted)."""
    payload = (
        f'{{"messages": {messages_json}, "model": {json.dumps(model)}, '
        f'"params": {json.dumps(params, sort_keys=True)}}}'
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class EncodedMessages(list):
    """Chat messages that carry their JSON (keys sorted), encoded once for both the
    cache key and the request body: the prompt is the bulk of each, and encoding it
    twice was a visible share of the CPU per call."""

    __slots__ = ("sorted_json",)


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
        transport: str = "auto",
        extra_params: dict[str, Any] | None = None,
        api_key_env: str | None = None,
        key_option: str = "--api-key-env",
        on_notice: Callable[[str], None] | None = None,
        extra_api_bases: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.api_base = api_base
        # Every server this client spreads its calls over (`llm.servers`); the first is
        # `api_base`, whose provider and key decide for all.
        self.api_bases = [api_base, *extra_api_bases] if api_base else []
        self.api_key_env = api_key_env  # the variable's name; its value is never stored
        self.key_option = key_option
        self.on_notice = on_notice or _print_warning
        self._keys = choose_key(model, api_base, api_key_env)
        self._key = self._keys.value()
        self._succeeded = False  # a live call of this client has returned an answer
        self._client_errors = 0  # systematic 4xx answers while none had succeeded
        self.params: dict[str, Any] = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
            **(extra_params or {}),
        }
        self.timeout = timeout
        self.max_retries = max_retries
        self.limits = RateLimits(rpm=rpm, tpm=tpm, max_tokens=max_tokens)
        self._wait = wait_retry_after_or_backoff(backoff_initial_s, backoff_max_s)
        self._wait_after_first = wait_retry_after_or_backoff(
            backoff_initial_s, backoff_max_s, done_before=1
        )
        self.cache = cache
        # Batch mode: calls the cache cannot answer are queued here, not sent.
        self.batch: BatchSession | None = None
        self._provider: tuple[str, str] | None = None
        self._price_known: bool | None = None
        self._rates: tuple[float, float] | None | str | bool = False  # False: not looked up
        self.servers = ServerPool(max(1, len(self.api_bases)), concurrency)
        # The embedded model runs in this process; litellm only where asked for.
        self._direct_local = self.is_local and transport != "litellm"
        if self.is_local and not self._direct_local:
            from dvsynth.llm.transports.local import register_local_provider

            register_local_provider(self._litellm)
        self._litellm_key = self._litellm_api_key()
        self._http = self._pick_transport(transport)

    @property
    def _litellm(self) -> Any:
        """litellm, imported on first use (the lean and local paths never use it)."""
        return _litellm()

    def _litellm_api_key(self) -> dict[str, str]:
        """The `api_key` argument for litellm, where litellm must not choose it itself.

        litellm's OpenAI client sends OPENAI_API_KEY to any --api-base that has no key
        of its own; a placeholder stops it. Providers that read only their own variable
        (anthropic/ behind a proxy) are left to litellm. An OpenAI-compatible provider's
        own key (groq/ behind a proxy) becomes this client's key, for redaction and the
        plain-http warning.
        """
        if self.is_local:
            return {}
        if not self._keys.litellm_decides:
            return {"api_key": self._key or NO_KEY}
        if not self.api_base:
            return {}
        try:
            _, provider, own_key, _ = self._litellm.get_llm_provider(
                self.model, api_base=self.api_base
            )
        except Exception:
            return {}  # check() reports the unknown provider
        if provider in self._litellm.openai_compatible_providers:
            self._key = own_key or None
            return {"api_key": own_key or NO_KEY}
        return {}

    def _pick_transport(self, transport: str) -> list[OpenAIHTTPTransport] | None:
        """The lean HTTP transport for OpenAI-compatible --api-base servers, else litellm.

        `auto` takes the lean path wherever it applies: the same request body, at a
        fraction of litellm's CPU per call (benchmarks/README.md, throughput).
        """
        if transport not in TRANSPORTS:
            raise UserError(f"--transport: '{transport}' is not one of {', '.join(TRANSPORTS)}")
        fits = is_openai_compatible(self.model, self.api_base)
        if transport == "http" and not fits:
            raise UserError(
                "--transport http: needs an OpenAI-compatible model "
                "(openai/<name> or hosted_vllm/<name>) and --api-base"
            )
        if transport == "litellm" or not fits:
            return None
        return [
            OpenAIHTTPTransport(self.model, base, self._key, self.timeout)
            for base in self.api_bases
        ]

    async def aclose(self) -> None:
        """Close pooled connections; call at the end of each event loop that used them."""
        for transport in self._http or ():
            await transport.aclose()

    def check(self, require_key: bool = True) -> None:
        """Fail fast, before any row, on an unknown provider or a missing API key (not
        needed by a dry run, which sends nothing)."""
        try:
            if not (self._direct_local or self._http is not None):  # known by their prefix
                self._litellm.get_llm_provider(self.model)
        except Exception:
            raise UserError(
                f"--model: '{self.model}' names no known provider; use a litellm model string "
                "such as openai/gpt-4o-mini, anthropic/<model>, hosted_vllm/<model>, "
                "or local/smollm2"
            ) from None
        if self.is_local:
            from dvsynth.llm.transports.local import resolve_local_model

            resolve_local_model(self.model)
            return
        if not require_key:
            return
        if self.api_key_env and not self._key:
            raise UserError(
                f"{self.key_option} {self.api_key_env}: no such environment variable is set"
            )
        self._warn_if_key_in_clear()
        if self.api_base or self.api_key_env:
            return  # self-hosted servers usually need no key; a named key is present
        missing = self._litellm.validate_environment(self.model).get("missing_keys") or []
        if missing:
            raise UserError(f"--model {self.model}: missing API key, set {', '.join(missing)}")

    def _warn_if_key_in_clear(self) -> None:
        """Warn when a real key would go over plain http:// to a machine not this one."""
        if self._key:
            what = f"the API key in {self._keys.variable or 'the provider variable'}"
        elif self._keys.litellm_decides and self.api_base and not self._litellm_key:
            found = self._litellm.validate_environment(self.model).get("keys_in_environment")
            what = f"the {self.model.split('/', 1)[0]} API key" if found else ""
        else:
            what = ""
        for base in self.api_bases if what else ():
            warning = plain_http_warning(base, what)
            if warning:
                self.on_notice(f"--model {self.model}: {warning}")

    def price_known(self) -> bool:
        """Whether litellm's price table has this model (else cost shows as unknown)."""
        if self.is_local:
            return True
        if self._lean_rates() != UNSURE:
            return self._rates is not None
        try:
            info = self._litellm.get_model_info(self.model)
        except Exception:
            return False
        return bool(info.get("input_cost_per_token") or info.get("output_cost_per_token"))

    def _lean_rates(self) -> tuple[float, float] | None | str:
        """litellm's flat rates for a lean-path model, read from its bundled table on
        first use (after the first request, not before); UNSURE: ask litellm."""
        if self._rates is False:
            self._rates = lean_rates(self.model) if self._http is not None else UNSURE
        return self._rates  # type: ignore[return-value]

    @property
    def key_variable(self) -> str | None:
        """The NAME of the variable this client's key comes from (None: the provider's
        own choice); what a batch records so `dvsynth batch status` finds the key again."""
        return self._keys.variable

    @property
    def api_key(self) -> str | None:
        """The key, in memory only: for the batch APIs, which are called apart."""
        return self._key

    @property
    def is_local(self) -> bool:
        return self.model.startswith(LOCAL_PREFIX)

    async def complete(
        self,
        messages: list[dict[str, str]],
        answer_tags: tuple[str, ...] = (),
        answer_choices: tuple[str, ...] = (),
    ) -> Completion:
        """One completion.

        `answer_tags` (an `<answer>` block with these tags) or `answer_choices` (exactly
        one of these words) let the embedded model constrain its output format.
        """
        extra: dict[str, Any] = {}
        if self.is_local and answer_tags:
            extra["answer_tags"] = list(answer_tags)
        elif self.is_local and answer_choices:
            extra["answer_choices"] = list(answer_choices)
        encoded = json.dumps(messages, sort_keys=True)
        key = encoded_cache_key(self.model, encoded, {**self.params, **extra})
        if self.cache is not None:
            hit = self.cache.get_response(key)
            if hit is not None:
                return Completion(**{**hit, "cached": True})
        if self.batch is not None:
            self.batch.defer(key, self.batch_body(messages))
        elif self._http is not None:
            messages = EncodedMessages(messages)
            messages.sorted_json = encoded
        estimate = self.limits.estimate(messages) if self.limits.active else 0
        async with self.servers.slot() as server:
            started = time.perf_counter()
            completion = await self._call_with_retries(messages, extra, estimate, server)
            completion = replace(completion, latency_s=round(time.perf_counter() - started, 4))
        self._succeeded = True
        if self.limits.active:
            await self.limits.settle(
                estimate, completion.prompt_tokens, completion.completion_tokens
            )
        if self.cache is not None:
            self.cache.put_response(key, _cached_fields(completion))
        return completion

    async def _call_with_retries(
        self, messages: list[dict[str, str]], extra: dict[str, Any], estimate: int, server: int
    ) -> Completion:
        """Retry transient faults (backoff, Retry-After); sort the last error into row or fatal.

        The first attempt runs outside tenacity: most calls succeed at once, and at
        hundreds of calls a second tenacity's per-call set-up is a visible share of CPU.
        """
        try:
            try:
                return await self._attempt(messages, extra, estimate, server)
            except Exception as exc:
                if error_kind(exc) != "transient" or not self.max_retries:
                    raise
                await asyncio.sleep(self._wait.delay(exc, 1))
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.max_retries),
                wait=self._wait_after_first,
                retry=retry_if_exception(lambda exc: error_kind(exc) == "transient"),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(messages, extra, estimate, server)
        except Exception as exc:
            message = f"{type(exc).__name__}: {self._redact(_short(exc))}"
            if error_kind(exc) == "fatal":
                raise FatalLLMError(f"--model {self.model}: {message}") from None
            if is_systematic_client_error(exc) and not self._succeeded:
                self._client_errors += 1
                if self._client_errors >= FATAL_AFTER_CLIENT_ERRORS:
                    raise FatalLLMError(
                        f"--model {self.model}: the first {self._client_errors} calls all "
                        f"failed with HTTP {status_of(exc)} and none succeeded, so every "
                        f"row would: {message}"
                    ) from None
            transient = error_kind(exc) == "transient"  # retries ran out: a rerun tries again
            raise RowError(f"llm:{type(exc).__name__}", message, transient=transient) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _attempt(
        self, messages: list[dict[str, str]], extra: dict[str, Any], estimate: int, server: int
    ) -> Completion:
        await self.limits.acquire(estimate)
        return self._to_completion(await self._call(messages, extra, server))

    async def _call(
        self, messages: list[dict[str, str]], extra: dict[str, Any], server: int = 0
    ) -> Any:
        """One request to one server, no retries of its own (litellm's and the OpenAI
        SDK's are off)."""
        if self._http is not None:
            # The transport's session enforces the same --timeout (aiohttp's total
            # timeout, over connecting, sending and reading the whole body, raising
            # TimeoutError): a second timer per call here cost a visible share of CPU.
            try:
                return await self._http[server].chat(messages, self.params)
            except asyncio.TimeoutError:
                raise CallTimeout(f"no answer within --timeout {self.timeout:g}s") from None
        if self._direct_local:
            from dvsynth.llm.transports.local import local_chat

            return await local_chat(self.model, messages, self.params, extra)
        call = self._litellm_call(messages, extra, server)
        if self.is_local:
            return await call  # a llama.cpp call cannot be interrupted; it has no timeout
        try:
            if _TIMEOUT is None:  # Python 3.10
                return await asyncio.wait_for(call, self.timeout)
            # Not wait_for: before 3.12 it wraps every call in a task of its own.
            async with _TIMEOUT(self.timeout):
                return await call
        except asyncio.TimeoutError:
            raise CallTimeout(f"no answer within --timeout {self.timeout:g}s") from None

    def provider(self) -> tuple[str, str]:
        """(litellm's provider name, the model as that provider names it)."""
        if self._provider is None and self._direct_local:  # litellm never hears of it
            self._provider = ("local", self.model.removeprefix(LOCAL_PREFIX))
        if self._provider is None:
            model, provider, _, _ = self._litellm.get_llm_provider(
                self.model, api_base=self.api_base
            )
            self._provider = (provider, model)
        return self._provider

    def batch_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """This call as an OpenAI chat-completions request body: what a batch file holds.
        The same messages and sampling an online call sends; never a key."""
        params = {k: v for k, v in self.params.items() if v is not None}
        return {"model": self.provider()[1], "messages": messages, **params}

    def _redact(self, text: str) -> str:
        """`redact`, also of this client's key (whatever its variable is called)."""
        return redact(text, extra=(self._key,) if self._key else ())

    def _litellm_call(
        self, messages: list[dict[str, str]], extra: dict[str, Any], server: int = 0
    ) -> Any:
        kwargs: dict[str, Any] = {**self.params, **self._litellm_key}
        if extra:
            kwargs["extra_body"] = extra
        if self.api_bases:
            kwargs["api_base"] = self.api_bases[server]
        return self._litellm.acompletion(
            model=self.model,
            messages=messages,
            timeout=self.timeout,
            num_retries=0,
            max_retries=0,
            **kwargs,
        )

    def _to_completion(self, response: Any) -> Completion:
        if isinstance(response, dict):
            return self._json_to_completion(response)
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
            logprobs=_top_logprobs(_plain(getattr(choice, "logprobs", None))),
            tokens=_produced_tokens(_plain(getattr(choice, "logprobs", None))),
        )

    def _json_to_completion(self, data: dict[str, Any]) -> Completion:
        """A completion from the OpenAI JSON body the HTTP transport returns."""
        # Priced as it is built: a `replace` per call (a new frozen dataclass) cost more.
        return completion_from_json(data, _free if self.is_local else self._priced)

    def _priced(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """litellm's price for these token counts, or None when it has no price."""
        if not self._has_price():
            return None
        if isinstance(self._rates, tuple):  # litellm's own flat rates, from its table
            return float(prompt_tokens * self._rates[0] + completion_tokens * self._rates[1])
        try:
            prompt_cost, completion_cost = self._litellm.cost_per_token(
                model=self.model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        except Exception:
            return None
        return float(prompt_cost + completion_cost)

    def _has_price(self) -> bool:
        """`price_known()`, looked up once per client."""
        if self._price_known is None:
            self._price_known = self.price_known()
        return self._price_known

    def _cost(self, response: Any) -> float | None:
        """The provider's price for this call, or None when litellm has no price for it.

        litellm already priced the response while logging it; reuse that figure rather
        than pay for a second lookup on every call.
        """
        if self.is_local:
            return 0.0
        if not self._has_price():
            return None
        cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        if cost is None:
            try:
                cost = self._litellm.completion_cost(completion_response=response)
            except Exception:
                return None
        return float(cost)


MAX_LOGPROB_TOKENS = 8
_CACHED_FIELDS = tuple(f.name for f in fields(Completion) if f.name != "cached")


def _cached_fields(completion: Completion) -> dict[str, Any]:
    """What the cache keeps of a completion: `asdict` less `cached`, without asdict's
    deep copy (the values are only serialised)."""
    return {name: getattr(completion, name) for name in _CACHED_FIELDS}


def _free(prompt_tokens: int, completion_tokens: int) -> float:
    """The price of an embedded model's call."""
    return 0.0


def completion_from_json(
    data: dict[str, Any], price: Callable[[int, int], float | None] | None = None
) -> Completion:
    """An OpenAI chat.completion JSON body as a completion, priced by `price(prompt
    tokens, completion tokens)` (None: unpriced)."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise MalformedResponse("no choices[0].message.content in the response") from None
    usage = data.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    return Completion(
        text=text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=price(prompt_tokens, completion_tokens) if price is not None else None,
        latency_s=0.0,
        finish_reason=choice.get("finish_reason"),
        logprobs=_top_logprobs(choice.get("logprobs")),
        tokens=_produced_tokens(choice.get("logprobs")),
    )


def completion_from_batch(model: str, data: dict[str, Any]) -> Completion:
    """A batch's chat.completion JSON for `model`, priced at the provider's batch rate:
    parsed exactly as an online answer is, so the row it makes is the same row."""
    from dvsynth.llm.cost import batch_price

    completion = completion_from_json(data)
    cost = batch_price(model, completion.prompt_tokens, completion.completion_tokens)
    return replace(completion, cost_usd=cost, batch=True)


def _plain(value: Any) -> Any:
    """A pydantic object from litellm as plain dicts and lists."""
    dump = getattr(value, "model_dump", None)
    return dump() if callable(dump) else value


def _top_logprobs(logprobs: Any) -> list[dict[str, float]] | None:
    """OpenAI's `logprobs.content[i].top_logprobs` for the first few tokens, compactly."""
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return None
    positions = []
    for item in logprobs["content"][:MAX_LOGPROB_TOKENS]:
        if not isinstance(item, dict):
            continue
        alternatives = {
            str(alt.get("token")): float(alt.get("logprob"))
            for alt in item.get("top_logprobs") or []
            if isinstance(alt, dict) and alt.get("logprob") is not None
        }
        if item.get("token") is not None and item.get("logprob") is not None:
            alternatives.setdefault(str(item["token"]), float(item["logprob"]))
        positions.append(alternatives)
    return positions or None


def _produced_tokens(logprobs: Any) -> list[str] | None:
    """The token the model produced at each position `_top_logprobs` keeps."""
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return None
    tokens = [
        str(item.get("token") or "")
        for item in logprobs["content"][:MAX_LOGPROB_TOKENS]
        if isinstance(item, dict)
    ]
    return tokens or None


def _print_warning(message: str) -> None:
    """Where no caller listens: the same one-line warning the reporters print."""
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _short(exc: Exception, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text[:limit]
