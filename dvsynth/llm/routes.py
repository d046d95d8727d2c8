"""How one client's calls travel: the lean HTTP transport, the embedded model in this
process, or litellm. Chosen once, when the client is built.

The lean path posts OpenAI-compatible requests with one pooled aiohttp session, at a
fraction of litellm's CPU per call (benchmarks/README.md, throughput), and litellm is
then never imported. The embedded model runs in this process; litellm only where asked
for. Every route answers with one raw response and raises `CallTimeout` at --timeout;
none retries on its own (litellm's and the OpenAI SDK's retries are off).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from dvsynth.errors import UserError
from dvsynth.llm.keys import KeyChoice
from dvsynth.llm.litellm_module import litellm
from dvsynth.llm.options import GENERATOR, ClientOptions
from dvsynth.llm.transports.http import OpenAIHTTPTransport, is_openai_compatible

LOCAL_PREFIX = "local/"
TRANSPORTS = ("auto", "litellm", "http")
_TIMEOUT = getattr(asyncio, "timeout", None)  # Python 3.11+


class CallTimeout(TimeoutError):
    """No answer within --timeout."""


class Route:
    """One way to send a call; `kind` is "http", "local" or "litellm"."""

    kind = ""

    async def call(
        self,
        messages: list[dict[str, str]],
        params: dict[str, Any],
        extra: dict[str, Any],
        server: int,
    ) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close pooled connections; call at the end of each event loop that used them."""


class HTTPRoute(Route):
    """The lean transport, one per server; the JSON body comes back as a dict."""

    kind = "http"

    def __init__(self, model: str, api_bases: Sequence[str], key: str | None, timeout: float):
        self.timeout = timeout
        self.transports = [OpenAIHTTPTransport(model, base, key, timeout) for base in api_bases]

    async def call(self, messages, params, extra, server):
        # The transport's session enforces the same --timeout (aiohttp's total timeout,
        # over connecting, sending and reading the whole body, raising TimeoutError): a
        # second timer per call here cost a visible share of CPU.
        try:
            return await self.transports[server].chat(messages, params)
        except asyncio.TimeoutError:
            raise CallTimeout(f"no answer within --timeout {self.timeout:g}s") from None

    async def aclose(self) -> None:
        for transport in self.transports:
            await transport.aclose()


class LocalRoute(Route):
    """The embedded model, called in this process without litellm."""

    kind = "local"

    def __init__(self, model: str) -> None:
        self.model = model

    async def call(self, messages, params, extra, server):
        from dvsynth.llm.transports.local import local_chat

        return await local_chat(self.model, messages, params, extra)


class LiteLLMRoute(Route):
    """litellm's `acompletion`, with the key the key rule chose passed explicitly."""

    kind = "litellm"

    def __init__(
        self, model: str, api_bases: Sequence[str], key: dict[str, Any], timeout: float
    ) -> None:
        self.model = model
        self.api_bases = list(api_bases)
        self.key = key
        self.timeout = timeout
        self.local = model.startswith(LOCAL_PREFIX)
        if self.local:  # the embedded model, through litellm as a custom provider
            from dvsynth.llm.transports.local import register_local_provider

            register_local_provider(litellm())

    async def call(self, messages, params, extra, server):
        kwargs: dict[str, Any] = {**params, **self.key}
        if extra:
            kwargs["extra_body"] = extra
        if self.api_bases:
            kwargs["api_base"] = self.api_bases[server]
        call = litellm().acompletion(
            model=self.model,
            messages=messages,
            timeout=self.timeout,
            num_retries=0,
            max_retries=0,
            **kwargs,
        )
        if self.local:
            return await call  # an in-process model call cannot be interrupted; no timeout
        try:
            if _TIMEOUT is None:  # Python 3.10
                return await asyncio.wait_for(call, self.timeout)
            # Not wait_for: before 3.12 it wraps every call in a task of its own.
            async with _TIMEOUT(self.timeout):
                return await call
        except asyncio.TimeoutError:
            raise CallTimeout(f"no answer within --timeout {self.timeout:g}s") from None


def choose_route(
    model: str,
    api_bases: Sequence[str],
    transport: str,
    key: KeyChoice,
    timeout: float,
    options: ClientOptions = GENERATOR,
) -> Route:
    """The lean HTTP transport for OpenAI-compatible --api-base servers, the embedded
    model in process, else litellm. `auto` takes the lean path wherever it applies."""
    if transport not in TRANSPORTS:
        raise UserError(f"--transport: '{transport}' is not one of {', '.join(TRANSPORTS)}")
    fits = is_openai_compatible(model, api_bases[0] if api_bases else None)
    if transport == "http" and not fits:
        raise UserError(
            "--transport http: needs an OpenAI-compatible model "
            f"(openai/<name> or hosted_vllm/<name>) and {options.api_base}"
        )
    local = model.startswith(LOCAL_PREFIX)
    if local and transport != "litellm":
        return LocalRoute(model)
    if transport == "litellm" or not fits:
        return LiteLLMRoute(model, api_bases, {} if local else key.litellm_kwargs(), timeout)
    return HTTPRoute(model, api_bases, key.value(), timeout)
