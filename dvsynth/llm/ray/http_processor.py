"""The HTTP processor: a Ray Data actor that posts each request to OpenAI-compatible
servers through dvsynth's own lean transport (`llm.transports.http`), spreading the
calls over every `--api-base` (`llm.servers`). Errors are sorted by status as online:
each row comes back with its answer or its status and message, and never fails the task.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import numpy as np

from dvsynth.llm.servers import ServerPool
from dvsynth.llm.transports.http import (
    APIStatusError,
    MalformedResponse,
    OpenAIHTTPTransport,
)

#: Columns of the processor's output rows (and of the vLLM processor's).
OUTPUT = ("custom_id", "status", "response", "error")


class ChatOverHTTP:
    """`map_batches` callable class. The key is read on the worker from the variable
    `key_env` names, so it never travels through Ray's object store or logs."""

    def __init__(
        self,
        model: str,
        api_bases: list[str],
        key_env: str | None,
        timeout: float,
        in_flight: int,
    ) -> None:
        key = os.environ.get(key_env) if key_env else None
        self._transports = [OpenAIHTTPTransport(model, base, key, timeout) for base in api_bases]
        self._timeout = timeout
        self._in_flight = in_flight
        self._pool: ServerPool | None = None

    async def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._pool is None:  # made on the actor's own event loop
            self._pool = ServerPool(len(self._transports), self._in_flight)
        answers = await asyncio.gather(*(self._one(body) for body in batch["body"]))
        return {
            "custom_id": batch["custom_id"],
            "status": np.array([a[0] for a in answers], dtype=np.int32),
            "response": np.array([a[1] for a in answers], dtype=object),
            "error": np.array([a[2] for a in answers], dtype=object),
        }

    async def _one(self, body_json: str) -> tuple[int, str, str]:
        """(HTTP status, chat.completion JSON, error); status 0: it never got an answer."""
        assert self._pool is not None
        body: dict[str, Any] = json.loads(body_json)
        messages = body.pop("messages")
        body.pop("model", None)
        async with self._pool.slot() as server:
            try:
                data = await asyncio.wait_for(
                    self._transports[server].chat(messages, body), self._timeout
                )
            except APIStatusError as exc:
                return exc.status_code, "", str(exc)[:300]
            except (MalformedResponse, asyncio.TimeoutError, ConnectionError) as exc:
                return 0, "", f"{type(exc).__name__}: {exc}"[:300]
        return 200, json.dumps(data), ""
