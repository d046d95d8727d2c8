"""One async chat client for every provider, with a response cache.

The client is built from three parts, each deciding one thing once: the key rule
(`llm.keys`: which variable's value goes to which server), the route (`llm.routes`: the
lean HTTP transport for an OpenAI-compatible --api-base, the embedded model, or
litellm, whose import alone takes seconds and is paid only where it is used), and the
pricing (`llm.pricing`). What is left here is what every call shares: the cache, keyed
by (model, messages, sampling), which makes a rerun after a kill free (a finished call
is never paid twice), rate limits, retries, and sorting errors into row or fatal. Every
error names the options the client was built from (`llm.options`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from dvsynth.errors import FatalLLMError, RowError, UserError
from dvsynth.llm.keys import (
    choose_key,
    has_userinfo,
    host_of,
    host_variables,
    not_a_variable_name,
    plain_http_warning,
)
from dvsynth.llm.limits import RateLimits
from dvsynth.llm.litellm_module import litellm
from dvsynth.llm.options import GENERATOR, ClientOptions
from dvsynth.llm.pricing import Pricing
from dvsynth.llm.retry import (
    error_kind,
    is_systematic_client_error,
    status_of,
    wait_retry_after_or_backoff,
)
from dvsynth.llm.routes import LOCAL_PREFIX, TRANSPORTS, CallTimeout, choose_route
from dvsynth.llm.servers import ServerPool
from dvsynth.llm.transports.http import MalformedResponse
from dvsynth.redact import redact
from dvsynth.secrets import url_has_credentials

if TYPE_CHECKING:
    from dvsynth.llm.batch.session import BatchSession

__all__ = ["LOCAL_PREFIX", "TRANSPORTS", "CallTimeout", "Completion", "LLMClient"]

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


class ResponseCache(Protocol):
    def get_response(self, key: str) -> dict[str, Any] | None: ...

    def put_response(self, key: str, value: dict[str, Any]) -> None: ...


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
        options: ClientOptions = GENERATOR,
        on_notice: Callable[[str], None] | None = None,
        extra_api_bases: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.api_base = api_base
        # Every server this client spreads its calls over (`llm.servers`); the first is
        # `api_base`, whose host decides the key for all.
        self.api_bases = [api_base, *extra_api_bases] if api_base else []
        self.api_key_env = api_key_env  # the variable's name; its value is never stored
        self.options = options
        self.on_notice = on_notice or _print_warning
        self.key_choice = choose_key(model, api_base, api_key_env, self.api_bases[1:])
        self._key = self.key_choice.value()
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
        self.servers = ServerPool(max(1, len(self.api_bases)), concurrency)
        self.route = choose_route(
            model, self.api_bases, transport, self.key_choice, timeout, options
        )
        self.pricing = Pricing(model, local=self.is_local, lean=self.route.kind == "http")

    async def aclose(self) -> None:
        """Close pooled connections; call at the end of each event loop that used them."""
        await self.route.aclose()

    def check(self, require_key: bool = True) -> None:
        """Fail fast, before any row, on an unknown provider or a missing API key (not
        needed by a dry run, which sends nothing)."""
        names = self.options
        if self.api_key_env and not_a_variable_name(self.api_key_env):
            # Never echoed: a value that is not a variable's name may be the key itself.
            raise UserError(
                f"{names.api_key_env}: takes the NAME of the environment variable that "
                "holds the key (such as MY_API_KEY), never the key itself"
            )
        try:
            if self.route.kind == "litellm" and not self.is_local:  # others: by their prefix
                litellm().get_llm_provider(self.model)
        except Exception:
            raise UserError(
                f"{names.model}: '{self.model}' names no known provider; use a litellm model "
                "string such as openai/gpt-4o-mini, anthropic/<model>, hosted_vllm/<model>, "
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
                f"{names.api_key_env} {self.api_key_env}: no such environment variable is set"
            )
        if self.key_choice.variable in host_variables(self.api_base or "") and not self._key:
            raise UserError(
                f"{names.model} {self.model}: missing API key for "
                f"{host_of(self.api_base or '')}, set {self.key_choice.variable}"
            )
        if any(has_userinfo(base) for base in self.api_bases) and (
            self._key or self.route.kind == "litellm"
        ):
            raise UserError(
                f"{names.api_base}: credentials in the URL (user:password@) cannot travel "
                "with an API key header; drop them from the URL and name the variable that "
                f"holds the key with {names.api_key_env}"
            )
        self._warn_if_key_in_clear()
        if any(url_has_credentials(base) for base in self.api_bases):
            self.on_notice(
                f"{names.api_base}: the credentials in its URL are sent but never stored "
                "(manifest, batch ledger, recipe from-run); a later command on this run "
                f"will not have them: name the variable that holds the key with {names.api_key_env}"
            )
        if self.api_base or self.api_key_env:
            return  # self-hosted servers usually need no key; a named key is present
        missing = litellm().validate_environment(self.model).get("missing_keys") or []
        if missing:
            raise UserError(
                f"{names.model} {self.model}: missing API key, set {', '.join(missing)}"
            )

    def _warn_if_key_in_clear(self) -> None:
        """Warn when a real key would go over plain http:// to a machine not this one."""
        if not self._key:
            return
        for base in self.api_bases:
            warning = plain_http_warning(base, f"the API key in {self.key_choice.variable}")
            if warning:
                self.on_notice(f"{self.options.model} {self.model}: {warning}")

    def price_known(self) -> bool:
        """Whether litellm's price table has this model (else cost shows as unknown)."""
        return self.pricing.known()

    @property
    def key_variable(self) -> str | None:
        """The NAME of the variable this client's key comes from (None: the provider's
        own choice); what a batch records so `dvsynth batch status` finds the key again."""
        return self.key_choice.variable

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
        elif self.route.kind == "http":
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
            raise self._sorted_error(exc) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _sorted_error(self, exc: Exception) -> Exception:
        """The last error of a call as a fatal error (the run stops) or a row error,
        redacted, naming this client's options."""
        message = f"{type(exc).__name__}: {self._redact(_short(exc))}"
        where = f"{self.options.model} {self.model}"
        if error_kind(exc) == "fatal":
            return FatalLLMError(f"{where}: {message}{self._no_key_hint(exc)}")
        if is_systematic_client_error(exc) and not self._succeeded:
            self._client_errors += 1
            if self._client_errors >= FATAL_AFTER_CLIENT_ERRORS:
                return FatalLLMError(
                    f"{where}: the first {self._client_errors} calls all failed with HTTP "
                    f"{status_of(exc)} and none succeeded, so every row would: {message}"
                )
        transient = error_kind(exc) == "transient"  # retries ran out: a rerun tries again
        return RowError(f"llm:{type(exc).__name__}", message, transient=transient)

    def _no_key_hint(self, exc: Exception) -> str:
        """Where a server refused a call that carried no key: how to send one."""
        if self._key or not self.api_bases or status_of(exc) not in (401, 403):
            return ""
        return (
            f" (no API key was sent to {self.options.api_base}: a provider's key goes only "
            f"to its own API; name the variable that holds this server's key with "
            f"{self.options.api_key_env})"
        )

    async def _attempt(
        self, messages: list[dict[str, str]], extra: dict[str, Any], estimate: int, server: int
    ) -> Completion:
        await self.limits.acquire(estimate)
        return self._to_completion(await self._call(messages, extra, server))

    async def _call(
        self, messages: list[dict[str, str]], extra: dict[str, Any], server: int = 0
    ) -> Any:
        """One request to one server, through the client's route."""
        return await self.route.call(messages, self.params, extra, server)

    def provider(self) -> tuple[str, str]:
        """(litellm's provider name, the model as that provider names it)."""
        if self._provider is None and self.route.kind == "local":  # litellm never hears of it
            self._provider = ("local", self.model.removeprefix(LOCAL_PREFIX))
        if self._provider is None:
            model, provider, _, _ = litellm().get_llm_provider(self.model, api_base=self.api_base)
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

    def _to_completion(self, response: Any) -> Completion:
        if isinstance(response, dict):
            return self._json_to_completion(response)
        try:
            choice = response.choices[0]
            text = answer_text(choice.message.content)
        except (AttributeError, IndexError, TypeError):
            raise MalformedResponse("no choices[0].message.content in the response") from None
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=self.pricing.response(response),
            latency_s=0.0,
            finish_reason=getattr(choice, "finish_reason", None),
            logprobs=_top_logprobs(_plain(getattr(choice, "logprobs", None))),
            tokens=_produced_tokens(_plain(getattr(choice, "logprobs", None))),
        )

    def _json_to_completion(self, data: dict[str, Any]) -> Completion:
        """A completion from the OpenAI JSON body the HTTP transport returns."""
        # Priced as it is built: a `replace` per call (a new frozen dataclass) cost more.
        return completion_from_json(data, self.pricing.tokens)


MAX_LOGPROB_TOKENS = 8
_CACHED_FIELDS = tuple(f.name for f in fields(Completion) if f.name != "cached")


def _cached_fields(completion: Completion) -> dict[str, Any]:
    """What the cache keeps of a completion: `asdict` less `cached`, without asdict's
    deep copy (the values are only serialised)."""
    return {name: getattr(completion, name) for name in _CACHED_FIELDS}


def answer_text(content: Any) -> str:
    """A message's content as text, for every stage's parser: a list of content parts
    (some providers answer so) is joined; anything else that is not text (a number, an
    object) becomes its JSON, which no stage's parser accepts, so the row is rejected
    as unparsable by its own stage instead of failing on a TypeError."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if (
        isinstance(content, list)
        and content
        and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in content)
    ):
        return "".join(p["text"] for p in content)
    return json.dumps(content, ensure_ascii=False, default=str)


def completion_from_json(
    data: dict[str, Any], price: Callable[[int, int], float | None] | None = None
) -> Completion:
    """An OpenAI chat.completion JSON body as a completion, priced by `price(prompt
    tokens, completion tokens)` (None: unpriced)."""
    try:
        choice = data["choices"][0]
        text = answer_text(choice["message"].get("content"))
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
