"""A lean transport for OpenAI-compatible servers (vLLM, SGLang, TGI, llama.cpp, OpenAI).

litellm spends about 4 ms of CPU on each call (request building in a thread hop, logging,
cost bookkeeping). Against a self-hosted server with hundreds of requests in flight that
CPU, not the server, becomes the ceiling on a small machine. This transport posts the
chat-completions body with one pooled aiohttp session and raises errors whose class
names match litellm's, so retries, fatal errors and reasons behave the same either way.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from dvsynth.redact import redact

# Providers whose --api-base speaks the OpenAI chat-completions protocol.
OPENAI_COMPATIBLE = ("openai/", "hosted_vllm/", "openai_like/")


class APIStatusError(Exception):
    """A non-2xx answer; `status_code` and `headers` feed the retry policy."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.headers = headers


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class ContextWindowExceededError(APIStatusError):
    pass


class BadRequestError(APIStatusError):
    pass


class Timeout(APIStatusError):  # noqa: A001 (litellm's name for a 408)
    """408: the server gave up waiting for the request; transient."""


class APIError(APIStatusError):
    """A status litellm has no class of its own for (409 conflict is one; transient)."""


class APIConnectionError(ConnectionError):
    """The connection failed or was dropped before a full answer arrived."""


class MalformedResponse(Exception):
    """The provider answered, but not with a completion (garbled or empty body)."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: Timeout,
    409: APIError,
    429: RateLimitError,
}


def status_error(status: int, body: str, headers: dict[str, str]) -> APIStatusError:
    """The error class for an HTTP status, named as litellm names it.

    The status, not the class, decides retries (`retry.error_kind`); the name only
    labels a rejected row, the same under either transport.
    """
    message = redact(" ".join(body.split())[:300])
    if status >= 500:
        cls: type[APIStatusError] = InternalServerError
    elif status == 400 and "context" in body.lower() and "length" in body.lower():
        cls = ContextWindowExceededError
    else:
        cls = _BY_STATUS.get(status, BadRequestError)
    return cls(status, message, headers)


def is_openai_compatible(model: str, api_base: str | None) -> bool:
    return bool(api_base) and model.startswith(OPENAI_COMPATIBLE)


class OpenAIHTTPTransport:
    """POST {api_base}/chat/completions through one pooled session; returns the JSON body."""

    def __init__(self, model: str, api_base: str, api_key: str | None, timeout: float) -> None:
        self.model = model.split("/", 1)[1]  # the server's own name: no litellm prefix
        self.url = api_base.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No pool cap of its own: the client's semaphore (--concurrency) is the cap.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, headers=self.headers
            )
        return self._session

    async def chat(self, messages: list[dict[str, str]], params: dict[str, Any]) -> dict:
        body = self._body(messages, params)
        try:
            async with self._open().post(self.url, data=body) as response:
                raw = await response.read()
                if response.status >= 400:
                    text = raw.decode("utf-8", "replace")
                    raise status_error(response.status, text, dict(response.headers))
        except TimeoutError:
            raise  # the caller's --timeout
        except aiohttp.ClientError as exc:
            raise APIConnectionError(f"{type(exc).__name__}: {redact(str(exc))}") from None
        try:
            data = json.loads(raw)
        except ValueError:
            raise MalformedResponse("the response body is not JSON") from None
        if not isinstance(data, dict):
            raise MalformedResponse("the response body is not a JSON object")
        return data

    def _body(self, messages: list[dict[str, str]], params: dict[str, Any]) -> bytes:
        """The JSON body as bytes (aiohttp's `json=` costs more CPU per call), reusing
        the messages' encoding where the client already made it (`EncodedMessages`)."""
        encoded = getattr(messages, "sorted_json", None)
        if encoded is None or "model" in params or "messages" in params:
            return json.dumps({"model": self.model, "messages": messages, **params}).encode()
        tail = json.dumps(params)[1:-1]
        return (
            f'{{"model": {json.dumps(self.model)}, "messages": {encoded}'
            f"{', ' + tail if tail else ''}}}"
        ).encode()

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
