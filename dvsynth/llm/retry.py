"""Which provider errors are worth retrying, and how long to wait before the next try.

Transient faults (429, 5xx, timeouts, dropped connections, garbled responses) are
retried with exponential backoff and full jitter, or after the server's Retry-After
when it sends one. Faults that no retry can fix (bad key, no permission, unknown
model) stop the run. Anything else is one row's problem.
"""

from __future__ import annotations

import email.utils
import random
import time
from typing import Any

from tenacity import RetryCallState
from tenacity.wait import wait_base

FATAL = ("AuthenticationError", "PermissionDeniedError", "NotFoundError")
TRANSIENT = (
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
    "Timeout",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "JSONDecodeError",
    "MalformedResponse",
)
MAX_RETRY_AFTER_S = 600.0


def error_kind(exc: BaseException) -> str:
    """'fatal', 'transient' or 'row' for an exception raised by a completion call."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & set(FATAL):
        return "fatal"
    if names & {"ContextWindowExceededError", "ContentPolicyViolationError"}:
        return "row"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return "transient"
    if names & set(TRANSIENT) or isinstance(exc, (TimeoutError, ConnectionError)):
        return "transient"
    return "row"


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
