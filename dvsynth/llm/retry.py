"""Which provider errors are worth retrying, and how long to wait before the next try.

Transient faults (408, 409, 429, 5xx, timeouts, dropped connections, garbled
responses) are retried with exponential backoff and full jitter, or after the server's
Retry-After when it sends one. Faults that no retry can fix (401 bad key, 403 no
permission, 404 unknown model) stop the run. Any other 4xx is one row's problem and is
not retried. The HTTP status decides first, because litellm's and openai's error
classes all derive from `APIError`, a 400 included; class names decide only for errors
that carry no status (dropped connections, timeouts, unreadable bodies).
"""

from __future__ import annotations

import email.utils
import random
import time
from typing import Any

from tenacity import RetryCallState
from tenacity.wait import wait_base

FATAL_STATUS = (401, 403, 404)
TRANSIENT_STATUS = (408, 409, 429)
# Only for errors without a status. Never "APIError" through the class hierarchy: every
# litellm and openai status error derives from it, a 400 included.
FATAL = ("AuthenticationError", "PermissionDeniedError", "NotFoundError")
TRANSIENT = (
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
    "Timeout",
    "APITimeoutError",
    "APIConnectionError",
    "APIResponseValidationError",
    "JSONDecodeError",
    "MalformedResponse",
)
# Row errors about one row's content: they say nothing about the next row.
CONTENT_ERRORS = ("ContextWindowExceededError", "ContentPolicyViolationError")
MAX_RETRY_AFTER_S = 600.0


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (litellm's and openai's `status_code`)."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    return status if isinstance(status, int) and 100 <= status <= 599 else None


def error_kind(exc: BaseException) -> str:
    """'fatal', 'transient' or 'row' for an exception raised by a completion call."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & set(CONTENT_ERRORS):
        return "row"
    status = status_of(exc)
    if status is not None and status >= 400:
        if status in FATAL_STATUS:
            return "fatal"
        if status in TRANSIENT_STATUS or status >= 500:
            return "transient"
        return "row"
    if names & set(FATAL):
        return "fatal"
    if type(exc).__name__ == "APIError":  # a bare APIError with no status: a server fault
        return "transient"
    if names & set(TRANSIENT) or isinstance(exc, (TimeoutError, ConnectionError)):
        return "transient"
    if status is None and not _from_a_provider(exc):
        # Not the provider's answer but a fault on this side (a bug, an odd setting):
        # never a verdict on the row; the row fails and a rerun tries it again.
        return "transient"
    return "row"


def _from_a_provider(exc: BaseException) -> bool:
    """Whether `exc` was raised by an LLM client library (litellm, openai, anthropic,
    httpx, aiohttp) rather than by Python or dvsynth itself."""
    return any(
        (cls.__module__ or "").split(".")[0] in _PROVIDER_MODULES for cls in type(exc).__mro__
    )


_PROVIDER_MODULES = {"litellm", "openai", "anthropic", "httpx", "aiohttp", "dvsynth"}


def is_systematic_client_error(exc: BaseException) -> bool:
    """A row-level 4xx that does not depend on the row (unsupported parameter, bad model
    name, ...): if every call so far ends in one, every later call will too."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = status_of(exc)
    return (
        error_kind(exc) == "row"
        and status is not None
        and 400 <= status < 500
        and status != 413  # payload too large: this row's prompt
        and not names & set(CONTENT_ERRORS)
    )


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's Retry-After (seconds or an HTTP date), if the error carries one."""
    headers: Any = getattr(exc, "litellm_response_headers", None) or getattr(exc, "headers", None)
    response = getattr(exc, "response", None)
    if headers is None and response is not None:
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(str(value))
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class wait_retry_after_or_backoff(wait_base):  # noqa: N801 (tenacity's naming)
    """Retry-After when the server gives one, else exponential backoff with full jitter."""

    def __init__(self, initial: float = 1.0, maximum: float = 60.0, done_before: int = 0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.done_before = done_before  # attempts made before tenacity took over

    def delay(self, exc: BaseException | None, attempt_number: int) -> float:
        """Seconds to wait after failed attempt `attempt_number` (1-based) raised `exc`."""
        if exc is not None:
            after = retry_after_seconds(exc)
            if after is not None:
                return after + random.uniform(0, 0.1 * self.initial)
        ceiling = min(self.maximum, self.initial * 2 ** (attempt_number - 1))
        return random.uniform(0, ceiling)

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return self.delay(exc, retry_state.attempt_number + self.done_before)
