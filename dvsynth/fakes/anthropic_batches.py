"""A fake of Anthropic's Message Batches API, on a `FakeLLMServer`'s port.

    server = FakeLLMServer()
    fake = FakeAnthropicBatches(server, polls_to_complete=2, expire_share=0.2)
    server.start()  # the routes are added at start: attach the fake before
    client = anthropic.AsyncAnthropic(api_key="...", base_url=fake.base_url)

It serves what the anthropic SDK's `client.messages.batches` calls (create, retrieve,
list, cancel, results): POST /v1/messages/batches, GET /v1/messages/batches (newest
first; `limit`, `after_id`, `before_id`; `has_more`, `first_id`, `last_id`),
GET /v1/messages/batches/{id}, POST /v1/messages/batches/{id}/cancel and the batch's
`results_url`, GET /v1/messages/batches/{id}/results (JSON Lines), with Anthropic's
object shapes (`message_batch`, `request_counts`, RFC 3339 times, `type: error` bodies).

A batch answers each request the way the online fake answers the equivalent OpenAI
body: the prompt is the `system` text and the messages' contents joined by "\\n" (what
`completion_body` sees when the system prompt is the first message), and `answer_for`
gives the text; a non-200 answer is an `errored` result (5xx: `api_error`, 429:
`rate_limit_error`, other 4xx: `invalid_request_error`). An answer longer than
`max_tokens` (4 characters a token) is cut there with `stop_reason: "max_tokens"`.
Each request's `params` are checked as API version 2026-10-21 checks them, after the
batch is created (Anthropic validates params asynchronously): `model`, `max_tokens` and
`messages` are required, and any key the Messages API lacks (`temperature`, `top_p` and
`top_k` among them, which that version refuses on every model; `seed`, `n`) errors the
request with `invalid_request_error` "<key>: Extra inputs are not permitted".
The batch itself is refused with 400 when `requests` is empty or a custom_id is invalid
(^[a-zA-Z0-9_-]{1,64}$) or repeated, as Anthropic's create refuses it.

Everything is deterministic: results come back in a stable order that is not the
request order (Anthropic promises none). The knobs and counters both batch fakes share
(`polls_to_complete`, `complete_after_s`, `expire_share`, `drop_share`, `extra_ids`,
`fail_create_after_commit` with `create_fault`; `batches_created`,
`requests_by_custom_id`, `runs_by_custom_id`, `expired_ids`, `request_headers`, `calls`,
`batches`) are documented once, in `dvsynth.fakes.common`. Here a batch is
`in_progress` when created and `ended` when it ends (a status poll is a retrieve; the
SDK's `results()` retrieves the batch first, and that counts as a poll), an expired
request is an `expired` result, an `extra_ids` line is a `succeeded` result, and
`create_fault` is "drop" unless told. This fake's own knobs (constructor arguments,
also plain attributes a test may change while a batch runs):

- `junk_lines`: these raw lines (not results: bad JSON, a line without custom_id) are
  added to the results file as they are.
- `cancel_done`: when a batch is cancelled, its first N requests had already finished
  and keep their results; the rest come back `canceled`. A cancelled batch ends at the
  next retrieve.
- `overload_creates`: the next N creates answer 529 `overloaded_error` (Retry-After: 0)
  and create nothing.
- `require_key`: only this key is accepted (as `x-api-key` or `Authorization: Bearer`,
  which is how the SDK 2.x sends it); others get 401 `authentication_error`, whose
  message quotes the key it got, so that a test proves the client redacts it.

This fake's own counters: `api_keys` (each request's `x-api-key` or bearer token) and
`bodies` (each request's raw body).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from dvsynth.fakes.common import FakeBatchAPI, batch_endpoint, share_of
from dvsynth.testing import FakeLLMServer, answer_for

#: The keys of a Messages API request body (the SDK's MessageCreateParamsNonStreaming).
PARAMS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        "metadata",
        "cache_control",
        "container",
        "diagnostics",
        "inference_geo",
        "output_config",
        "service_tier",
        "speed",
        "thinking",
        "tool_choice",
        "tools",
        "user_profile_id",
    }
)
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_REQUESTS = 100_000


def text_of(content: Any) -> str:
    """The text of a `system` or message `content`: a string, or text blocks joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )
    return "" if content is None else str(content)


def prompt_of(params: dict[str, Any]) -> str:
    """The prompt `answer_for` reads: system text, then each message's text, by "\\n"."""
    parts = [text_of(params["system"])] if params.get("system") else []
    parts += [text_of(m.get("content")) for m in params.get("messages") or []]
    return "\n".join(parts)


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _error(message: str, status: int, kind: str = "invalid_request_error") -> web.Response:
    body = _error_body(kind, message)
    body["request_id"] = "req_fake"
    return web.json_response(body, status=status)


def _late_error() -> dict[str, Any]:
    """An `errored` result for a request already answered (`late_error_share`)."""
    return {"type": "errored", "error": _error_body("api_error", "Internal server error")}


def _error_kind(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    if status == 529:
        return "overloaded_error"
    return "api_error" if status >= 500 else "invalid_request_error"


@dataclass
class FakeMessageBatch:
    id: str
    requests: list[tuple[str, dict[str, Any]]]
    created_at: float
    started: float = field(default_factory=time.monotonic)
    status: str = "in_progress"  # in_progress | canceling | ended
    polls: int = 0
    ended_at: float | None = None
    cancel_initiated_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    results: list[str] = field(default_factory=list)  # the JSONL lines, once ended

    def obj(self, base: str) -> dict[str, Any]:
        counts = self.counts or {
            "processing": len(self.requests),
            "succeeded": 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        }
        ended = self.status == "ended"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.status,
            "request_counts": dict(counts),
            "created_at": _iso(self.created_at),
            "ended_at": _iso(self.ended_at),
            "expires_at": _iso(self.created_at + 24 * 3600),
            "cancel_initiated_at": _iso(self.cancel_initiated_at),
            "archived_at": None,
            "results_url": f"{base}/v1/messages/batches/{self.id}/results" if ended else None,
        }


class FakeAnthropicBatches(FakeBatchAPI[FakeMessageBatch]):
    """Anthropic's Message Batches API on the fake server's port (see the module doc)."""

    ROOT = "/v1/messages/batches"
    ENDED = frozenset({"ended"})
    CANCELLING = "canceling"

    def __init__(
        self,
        server: FakeLLMServer,
        *,
        junk_lines: tuple[str, ...] | list[str] = (),
        cancel_done: int = 0,
        overload_creates: int = 0,
        require_key: str | None = None,
        create_fault: str = "drop",
        **shared: Any,
    ) -> None:
        """`shared`: the knobs every batch fake has (`FakeBatchAPI`, dvsynth.fakes.common)."""
        super().__init__(server, create_fault=create_fault, **shared)
        self.junk_lines = list(junk_lines)
        self.cancel_done = cancel_done
        self.overload_creates = overload_creates
        self.require_key = require_key
        self.api_keys: list[str | None] = []
        self.bodies: list[bytes] = []

    @property
    def base_url(self) -> str:
        """What `AsyncAnthropic(base_url=...)` takes (no /v1: the SDK adds it)."""
        return f"http://127.0.0.1:{self.server.port}"

    # ------------------------------------------------------------------ plumbing

    def _more_routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/messages/batches/{batch_id}/results", self._results)]

    async def _seen(self, request: web.Request) -> web.Response | None:
        """Record the call; a 401 when a key is required and this is not it."""
        body = await request.read()
        key = request.headers.get("x-api-key")
        bearer = request.headers.get("Authorization", "")
        if key is None and bearer.startswith("Bearer "):
            key = bearer[len("Bearer ") :]
        with self._lock:
            self._count(request)
            self.api_keys.append(key)
            self.bodies.append(body)
        if self.require_key is not None and key != self.require_key:
            return _error(f"invalid x-api-key: {key}", 401, "authentication_error")
        return None

    def _not_found(self, batch_id: str) -> web.Response:
        return _error(f"No message batch found with id '{batch_id}'.", 404, "not_found_error")

    def _view(self, request: web.Request, batch: FakeMessageBatch) -> dict[str, Any]:
        return batch.obj(f"{request.scheme}://{request.host}")

    # ------------------------------------------------------------------ create

    async def _create(self, request: web.Request) -> web.Response:
        if (denied := await self._seen(request)) is not None:
            return denied
        with self._lock:
            overloaded = self.overload_creates > 0
            if overloaded:
                self.overload_creates -= 1
        if overloaded:
            response = _error("Overloaded", 529, "overloaded_error")
            response.headers["retry-after"] = "0"
            return response
        try:
            payload = await request.json()
        except ValueError:
            return _error("The request body is not valid JSON.", 400)
        entries = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(entries, list) or not entries:
            return _error("requests: Field required (a non-empty list)", 400)
        if len(entries) > MAX_REQUESTS:
            return _error(f"requests: at most {MAX_REQUESTS} requests in a batch", 400)
        requests: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
                return _error(f"requests.{index}.params: Field required", 400)
            custom_id = entry.get("custom_id")
            if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
                return _error(
                    f"requests.{index}.custom_id: String should match pattern "
                    "'^[a-zA-Z0-9_-]{1,64}$'",
                    400,
                )
            if custom_id in seen:
                return _error(f"requests.{index}.custom_id: duplicate '{custom_id}'", 400)
            seen.add(custom_id)
            requests.append((custom_id, entry["params"]))
        with self._lock:
            batch = FakeMessageBatch(self._next_id("msgbatch_fake"), requests, time.time())
            fault = self._commit(batch, (custom_id for custom_id, _ in requests))
            answer = self._view(request, batch)
        return self._created(
            request, answer, fault, _error("Internal server error", 500, "api_error")
        )

    # ------------------------------------------------------------------ life

    def _finish(self, batch: FakeMessageBatch, cancelled: bool = False) -> None:
        counts = Counter({"succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
        results: list[dict[str, Any]] = []
        late: list[dict[str, Any]] = []  # errored lines after their answer's line
        for index, (custom_id, params) in enumerate(batch.requests):
            fate = self._fate(custom_id, cancelled and index >= self.cancel_done)
            if fate != "run":
                kind = "canceled" if fate == "cancelled" else "expired"
                counts[kind] += 1
                results.append({"custom_id": custom_id, "result": {"type": kind}})
                continue
            result = self._run(batch, custom_id, params)
            counts[result["type"]] += 1
            if self._dropped(custom_id):
                continue  # ran, but its line never reaches the results
            if result["type"] == "succeeded" and self._bad_usage(custom_id):
                result["message"]["usage"] = "n/a"
            if result["type"] == "succeeded" and self._late_error(custom_id):
                late.append({"custom_id": custom_id, "result": _late_error()})
            results.append({"custom_id": custom_id, "result": result})
        for custom_id in self.extra_ids:
            params = {"model": "fake", "max_tokens": 1024, "messages": [{"content": custom_id}]}
            results.append({"custom_id": custom_id, "result": self._run(batch, custom_id, params)})
        results.sort(key=lambda line: share_of(line["custom_id"], "order"))
        results += late
        batch.results = [json.dumps(line) for line in results] + self.junk_lines
        batch.counts = {"processing": 0, **counts}
        batch.status = "ended"
        batch.ended_at = time.time()

    @staticmethod
    def _run(batch: FakeMessageBatch, custom_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request's result: `succeeded` with a message, or `errored`."""
        problem = _invalid(params)
        if problem is not None:
            return {"type": "errored", "error": _error_body("invalid_request_error", problem)}
        prompt = prompt_of(params)
        status, text = answer_for(prompt)
        if status != 200:
            return {"type": "errored", "error": _error_body(_error_kind(status), text)}
        stop_reason = "end_turn"
        if len(text) // 4 > params["max_tokens"]:
            text, stop_reason = text[: params["max_tokens"] * 4], "max_tokens"
        seed = f"{batch.id}:{custom_id}".encode()
        return {
            "type": "succeeded",
            "message": {
                "id": "msg_fake" + hashlib.sha256(seed).hexdigest()[:20],
                "type": "message",
                "role": "assistant",
                "model": params["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": max(1, len(prompt) // 4),
                    "output_tokens": max(1, len(text) // 4),
                },
            },
        }

    # ------------------------------------------------------------------ endpoints

    async def _list(self, request: web.Request) -> web.Response:
        if (denied := await self._seen(request)) is not None:
            return denied
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return _error("limit: Input should be a valid integer", 400)
        if not 1 <= limit <= 1000:
            return _error("limit: Input should be between 1 and 1000", 400)
        after, before = request.query.get("after_id"), request.query.get("before_id")
        with self._lock:
            newest_first = self._newest_first()
            ids = [b.id for b in newest_first]
            for cursor in (after, before):
                if cursor and cursor not in ids:
                    return _error(f"No message batch found with id '{cursor}'.", 404)
            if after:
                rest = newest_first[ids.index(after) + 1 :]
                page, has_more = rest[:limit], len(rest) > limit
            elif before:
                rest = newest_first[: ids.index(before)]
                page, has_more = rest[-limit:], len(rest) > limit
            else:
                page, has_more = newest_first[:limit], len(newest_first) > limit
            data = [self._view(request, b) for b in page]
        return web.json_response(
            {
                "data": data,
                "has_more": has_more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    @batch_endpoint
    def _cancel(self, request: web.Request, batch: FakeMessageBatch) -> web.Response:
        if batch.status == "ended":
            return _error("Cannot cancel a message batch that has ended.", 409, "conflict_error")
        if batch.status != "canceling":
            batch.status = "canceling"
            batch.cancel_initiated_at = time.time()
        return web.json_response(self._view(request, batch))

    @batch_endpoint
    def _results(self, request: web.Request, batch: FakeMessageBatch) -> web.Response:
        if batch.status != "ended":
            return _error("The message batch has not ended; it has no results yet.", 400)
        text = "".join(line + "\n" for line in batch.results)
        return web.Response(text=text, content_type="application/x-jsonl")


def _invalid(params: dict[str, Any]) -> str | None:
    """Why API version 2026-10-21 refuses these params, or None."""
    for key in sorted(set(params) - PARAMS):
        return f"{key}: Extra inputs are not permitted"
    for key in ("model", "max_tokens", "messages"):
        if key not in params:
            return f"{key}: Field required"
    if not isinstance(params["max_tokens"], int) or params["max_tokens"] < 1:
        return "max_tokens: Input should be a positive integer"
    if not isinstance(params["messages"], list) or not params["messages"]:
        return "messages: at least one message is required"
    return None
