"""Request and token rate limits (`--rpm`, `--tpm`) over aiolimiter's leaky buckets.

Tokens are estimated before a call (prompt characters / 4, plus the mean completion
seen so far) and corrected afterwards: when the provider reports more tokens than were
reserved, the difference is taken from the bucket too, so the next calls wait for it.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

CHARS_PER_TOKEN = 4


class RateLimits:
    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        max_tokens: int = 1024,
        period_s: float = 60.0,
    ) -> None:
        self._requests = AsyncLimiter(rpm, period_s) if rpm else None
        self._tokens = AsyncLimiter(tpm, period_s) if tpm else None
        self._tpm = tpm or 0.0
        self._completions = 0
        self._completion_tokens = 0
        self._max_tokens = max_tokens

    @property
    def active(self) -> bool:
        return self._requests is not None or self._tokens is not None

    def estimate(self, messages: list[dict[str, str]]) -> int:
        chars = sum(len(str(m.get("content", ""))) for m in messages)
        if self._completions:
            expected = self._completion_tokens / self._completions
        else:
            expected = self._max_tokens / 4
        return int(chars / CHARS_PER_TOKEN + expected) + 1

    async def acquire(self, estimated_tokens: int) -> None:
        """Wait until one more request and `estimated_tokens` fit in the minute's budget."""
        if self._requests is not None:
            await self._requests.acquire()
        if self._tokens is not None:
            await self._tokens.acquire(min(estimated_tokens, self._tpm))

    async def settle(
        self, estimated_tokens: int, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Correct the reservation by what the provider reports it used."""
        self._completions += 1
        self._completion_tokens += completion_tokens
        extra = prompt_tokens + completion_tokens - estimated_tokens
        if self._tokens is not None and extra > 0:
            await self._tokens.acquire(min(extra, self._tpm))
