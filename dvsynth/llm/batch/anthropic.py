"""Anthropic's Message Batches API as a `BatchProvider`, through the anthropic SDK.

Requests arrive as OpenAI chat-completions bodies and are translated here (`to_params`);
results go back as OpenAI chat.completion JSON (`to_completion`), so the engine never
sees Anthropic's shapes.

What the translation keeps: `model` (a litellm-style "anthropic/" prefix is dropped),
`max_tokens` (or `max_completion_tokens`; Anthropic requires it: 1024 when the body has
neither), the system and developer messages as `system` (joined by "\\n"), the other
messages in order (any role but assistant as user), and `stop` as `stop_sequences`.
Everything else is dropped: `seed`, `n`, `logprobs` and `top_logprobs` have no
Anthropic counterpart, and `temperature`, `top_p` and `top_k` are refused with a 400 on
every model by API version 2026-10-21, which the SDK 2.x sends by default, so a batch
that carried them would come back with every request errored. A batch therefore samples
at the model's default: an answer is not reproducible the way a temperature-0 online call
may be.

Anthropic batches hold no metadata, so `find` cannot match a batch by its label; it
matches by creation time and request count, leaving out every batch the command's runs
hold, and tells candidates apart by their results once they have ended (see `find`).

Limits: 100,000 requests or 256 MB per batch, whichever comes first
(https://docs.anthropic.com/en/docs/build-with-claude/batch-processing, "Batch
limitations").
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Collection
from typing import Any

from dvsynth.errors import FatalLLMError, UserError
from dvsynth.llm.batch.answers import Unreadable, token_count
from dvsynth.llm.batch.provider import BatchRequest, BatchResult, BatchStatus, Undecided
from dvsynth.redact import redact

DEFAULT_MAX_TOKENS = 1024
#: `find` accepts a batch created this long before `since` (the provider's clock may be
#: behind ours) ...
CLOCK_SKEW_S = 60.0
#: ... and up to this long after it: `since` is written just before the create call, and
#: the SDK gives a create at most 10 minutes.
FIND_WINDOW_S = 15 * 60.0
#: Creates refused as overloaded (429, 529) are sent again this many times in all: such an
#: answer means the batch was not created. Other failures are never retried by `submit`,
#: since the batch may exist; the engine's `find` settles those.
SUBMIT_ATTEMPTS = 4
#: An Anthropic error type -> the HTTP status an online call would have failed with.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 500,
    "timeout_error": 504,
}
_SYSTEM_ROLES = ("system", "developer")


class AnthropicBatchError(RuntimeError):
    """A batch call failed for a reason that is not the user's to fix.

    `transient`: trying again later may succeed (rate limit, overload, 5xx, no answer);
    `status`: the HTTP status, when there was one."""

    def __init__(self, message: str, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


# ---------------------------------------------------------------------- translation


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return "" if content is None else str(content)


def _content(content: Any) -> Any:
    """A message's content: a string as is; OpenAI text parts as Anthropic text blocks."""
    if isinstance(content, list):
        return [
            {"type": "text", "text": str(part.get("text", ""))}
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
    return _text(content)


def to_params(body: dict[str, Any]) -> dict[str, Any]:
    """Anthropic Messages params for an OpenAI chat-completions body (see the module doc)."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            system.append(_text(message.get("content")))
        else:
            role = "assistant" if role == "assistant" else "user"
            messages.append({"role": role, "content": _content(message.get("content"))})
    model = str(body.get("model", ""))
    if model.startswith("anthropic/"):
        model = model[len("anthropic/") :]
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": int(max_tokens or DEFAULT_MAX_TOKENS),
        "messages": messages,
    }
    if system:
        params["system"] = "\n".join(system)
    stop = body.get("stop")
    if stop:
        params["stop_sequences"] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
    return params


def _entry(request: BatchRequest) -> dict[str, Any]:
    return {"custom_id": request.custom_id, "params": to_params(request.body)}


def _finish_reason(stop_reason: str | None) -> str:
    if stop_reason in ("max_tokens", "model_context_window_exceeded"):
        return "length"
    if stop_reason == "refusal":
        return "content_filter"
    return "stop"


def to_completion(message: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI chat.completion body for an Anthropic message (a succeeded result).

    The text blocks' text, concatenated, is the content; prompt_tokens counts cached
    input too (`input_tokens` + cache creation + cache reads), as OpenAI's does. A
    message that is not an object, or whose usage is not token counts, is `Unreadable`."""
    if not isinstance(message, dict):
        raise Unreadable(f"the message is {type(message).__name__}, not an object")
    text = "".join(
        str(block.get("text", ""))
        for block in message.get("content") or []
        if isinstance(block, dict) and block.get("type") == "text"
    )
    usage = message.get("usage")
    prompt = token_count(
        usage, "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"
    )
    completion = token_count(usage, "output_tokens")
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": _finish_reason(message.get("stop_reason")),
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def to_result(line: dict[str, Any], key: str | None = None) -> BatchResult:
    """One line of Anthropic's results (`{custom_id, result}`) as a `BatchResult`."""
    custom_id = str(line.get("custom_id", ""))
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        try:
            message = to_completion(result.get("message") or {})
        except Unreadable as exc:  # counted, and the request sent again (`llm.batch.answers`)
            return BatchResult(custom_id, status_code=200, malformed=str(exc))
        return BatchResult(custom_id, response=message, status_code=200)
    if kind == "errored":
        error = (result.get("error") or {}).get("error") or {}
        error_type = str(error.get("type") or "api_error")
        message = f"{error_type}: {error.get('message') or 'no message'}"
        return BatchResult(
            custom_id,
            status_code=ERROR_STATUS.get(error_type, 500),
            error=_redact(message, key)[:300],
        )
    # expired, canceled: the request never ran
    return BatchResult(custom_id, error=str(kind or "no result"), expired=True)


def _parse_line(text: str, key: str | None) -> BatchResult | None:
    """One JSONL line of a results file, or None when it is not a result."""
    try:
        line = json.loads(text)
    except ValueError:
        return None
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
        return None
    if not isinstance(line.get("result"), dict):
        return None
    return to_result(line, key)


def _redact(text: str, key: str | None) -> str:
    return redact(text, extra=(key,) if key else ())


# ---------------------------------------------------------------------- the provider


class AnthropicBatches:
    """`BatchProvider` over Anthropic's Message Batches API (see the module doc).

    `api_key`: the key, held in memory only (None: the SDK's own lookup,
    ANTHROPIC_API_KEY first). `base_url`: the API's root, without /v1 (a test's fake)."""

    name = "anthropic"
    # https://docs.anthropic.com/en/docs/build-with-claude/batch-processing: a batch holds
    # up to 100,000 Message requests or 256 MB, whichever is reached first.
    max_requests = 100_000
    max_bytes = 256 * 2**20

    def __init__(self, api_key: str | None = None, base_url: str | None = None) -> None:
        try:
            import anthropic
        except ImportError:
            raise UserError(
                'batch: Anthropic batches need the anthropic SDK: pip install "dvsynth[anthropic]"'
            ) from None
        self._sdk = anthropic
        try:
            self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url)
        except anthropic.AnthropicError as exc:  # a profile named but missing or broken
            message = _redact(f"{type(exc).__name__}: {exc}", api_key)[:300]
            raise UserError(f"batch: Anthropic credentials: {message}") from None
        if not any(  # `credentials` (profiles, federation) is new in the SDK 2.x
            getattr(self._client, name, None) for name in ("api_key", "auth_token", "credentials")
        ):
            raise UserError("batch: Anthropic batches need an API key: set ANTHROPIC_API_KEY")
        self._key = self._client.api_key or self._client.auth_token
        self.base_url = str(self._client.base_url)
        self.bad_lines = 0  # result lines that were not Anthropic results (skipped)
        # Calls the SDK must not retry: a create retried after no answer may create a
        # second batch, and a cancel of an ended batch (409) is not worth two more tries.
        self._once = self._client.with_options(max_retries=0)

    def __repr__(self) -> str:
        return f"AnthropicBatches(base_url={self.base_url!r})"

    # ------------------------------------------------------------------ interface

    def request_size(self, request: BatchRequest) -> int:
        """The bytes of this request's entry as the SDK sends it, and its comma."""
        entry = json.dumps(_entry(request), ensure_ascii=False, separators=(",", ":"))
        return len(entry.encode()) + 1

    async def submit(self, requests: list[BatchRequest], label: str) -> str:
        """Create one batch; returns its id. `label` is not sent: Anthropic keeps none."""
        entries = [_entry(r) for r in requests]
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
                batch = await self._once.messages.batches.create(requests=entries)
                return batch.id
            except self._sdk.APIStatusError as exc:
                if exc.status_code not in (429, 529) or attempt + 1 == SUBMIT_ATTEMPTS:
                    raise self._failure("create a batch", exc) from None
                await asyncio.sleep(_retry_after(exc, attempt))
            except self._sdk.AnthropicError as exc:
                raise self._failure("create a batch", exc) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def find(
        self,
        label: str,
        since: float,
        count: int | None = None,
        known: Collection[str] = (),
        sample: str | None = None,
    ) -> str | None:
        """The batch this run created under `label`, if Anthropic has it.

        Anthropic keeps no label, so the candidates are the batches created between
        `since` (less CLOCK_SKEW_S) and `since` + FIND_WINDOW_S whose requests number
        `count` (any size when None), leaving out the ids in `known` (every batch the
        command's runs hold: another run's batch of the same size is never taken for
        this one). One candidate is the answer; none means the create never got there.
        Among several, an ended one whose results hold `sample` (a custom_id of this
        batch) is the answer, and an ended one whose results lack it is another's; when
        more than one still runs, `Undecided`: a rerun asks again once they end. Taking
        another's batch by mistake only delays: its results hold none of this batch's
        requests, which are then sent again."""
        low, high = since - CLOCK_SKEW_S, since + FIND_WINDOW_S
        matches: list[Any] = []
        try:
            # Newest first: stop at the first batch older than the window.
            async for batch in self._client.messages.batches.list(limit=100):
                created = batch.created_at.timestamp()
                if created < low:
                    break
                if created > high or batch.id in known:
                    continue
                if count is not None and _total(batch.request_counts) != count:
                    continue
                matches.append(batch)
        except self._sdk.AnthropicError as exc:
            raise self._failure("list batches", exc) from None
        if len(matches) <= 1 or sample is None:
            return _only(matches)
        running = []
        for batch in matches:
            if batch.processing_status != "ended":
                running.append(batch)
            elif await self._holds(batch.id, sample):
                return str(batch.id)
        return _only(running)

    async def _holds(self, remote_id: str, custom_id: str) -> bool:
        """Whether an ended batch's results answer `custom_id`."""
        async for result in self.results(remote_id):
            if result.custom_id == custom_id:
                return True
        return False

    async def status(self, remote_id: str) -> BatchStatus:
        try:
            batch = await self._client.messages.batches.retrieve(remote_id)
        except self._sdk.AnthropicError as exc:
            raise self._failure(f"read batch {remote_id}", exc) from None
        return _status(batch)

    async def results(self, remote_id: str) -> AsyncIterator[BatchResult]:
        """Every result line of an ended batch: succeeded, errored, and (expired=True) the
        expired and canceled requests, in no particular order. A line that is not a
        result is skipped and counted in `bad_lines`."""
        what = f"read the results of batch {remote_id}"
        stream = self._client.messages.batches.with_streaming_response.results(remote_id)
        try:
            response = await stream.__aenter__()
        except Exception as exc:  # the SDK's (no results yet, HTTP), or the network's
            raise self._failure(what, exc) from None
        try:
            lines = response.iter_lines().__aiter__()
            while True:
                try:
                    text = await lines.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as exc:  # a cut stream
                    raise self._failure(what, exc) from None
                if not text.strip():
                    continue
                result = _parse_line(text, self._key)
                if result is None:
                    self.bad_lines += 1
                else:
                    yield result
        finally:
            await stream.__aexit__(None, None, None)

    async def cancel(self, remote_id: str) -> BatchStatus:
        """Ask Anthropic to cancel; a batch that has already ended is returned as it is."""
        try:
            batch = await self._once.messages.batches.cancel(remote_id)
        except self._sdk.APIStatusError as exc:
            if exc.status_code in (400, 409):  # it ended meanwhile
                return await self.status(remote_id)
            raise self._failure(f"cancel batch {remote_id}", exc) from None
        except self._sdk.AnthropicError as exc:
            raise self._failure(f"cancel batch {remote_id}", exc) from None
        return _status(batch)

    async def aclose(self) -> None:
        await self._client.close()

    # ------------------------------------------------------------------ errors

    def _failure(self, what: str, exc: Exception) -> Exception:
        """The dvsynth error for an SDK error, its message redacted of the key."""
        sdk = self._sdk
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            error = exc.body.get("error") if isinstance(exc.body, dict) else None
            if isinstance(error, dict):
                detail = f"{error.get('type')}: {error.get('message')}"
            else:
                detail = str(exc.message)
            message = f"batch: Anthropic could not {what}: HTTP {status} {detail}"
            message = _redact(message, self._key)[:500]
            if status in (401, 402, 403):  # key, billing, permission: every call fails
                return FatalLLMError(message)
            if status in (400, 404, 413, 422):
                return UserError(message)
            return AnthropicBatchError(message, transient=True, status=status)
        if isinstance(exc, sdk.APIConnectionError):  # includes timeouts
            message = f"batch: Anthropic could not {what}: no answer ({type(exc).__name__})"
            return AnthropicBatchError(message, transient=True)
        message = f"batch: Anthropic could not {what}: {type(exc).__name__}: {exc}"
        # An SDK error without a response (no results yet) is final; a cut or garbled
        # stream (httpx, OSError, a line that is not JSON) may pass.
        transient = not isinstance(exc, sdk.AnthropicError)
        return AnthropicBatchError(_redact(message, self._key)[:500], transient=transient)


def _only(batches: list[Any]) -> str | None:
    """The id of the one candidate; None for none; `Undecided` for several."""
    if len(batches) > 1:
        raise Undecided(f"{len(batches)} batches at Anthropic could be it")
    return str(batches[0].id) if batches else None


def _total(counts: Any) -> int:
    return sum(
        int(getattr(counts, name, 0) or 0)
        for name in ("processing", "succeeded", "errored", "canceled", "expired")
    )


def _status(batch: Any) -> BatchStatus:
    """A MessageBatch in OpenAI's words.

    in_progress -> in_progress, canceling -> cancelling. ended -> completed, except when
    no request ran to an answer (none succeeded or errored): then `cancelled` when a
    cancel was asked for, else `expired` when requests expired. Either way `results`
    serves every line of an ended batch, the unrun ones with expired=True."""
    counts = batch.request_counts
    succeeded, errored = int(counts.succeeded or 0), int(counts.errored or 0)
    expired, canceled = int(counts.expired or 0), int(counts.canceled or 0)
    state = {"in_progress": "in_progress", "canceling": "cancelling"}.get(
        batch.processing_status, "completed"
    )
    if state == "completed" and succeeded + errored == 0:
        if batch.cancel_initiated_at is not None:
            state = "cancelled"
        elif expired:
            state = "expired"
    return BatchStatus(
        remote_id=batch.id,
        state=state,
        counts={
            "total": _total(counts),
            "completed": succeeded,
            "failed": errored,
            "expired": expired,
            "cancelled": canceled,
        },
        created_at=batch.created_at.timestamp() if batch.created_at else None,
    )


def _retry_after(exc: Any, attempt: int) -> float:
    """Seconds to wait before sending a refused create again: Retry-After, capped."""
    try:
        value = float(exc.response.headers.get("retry-after", ""))
    except (AttributeError, TypeError, ValueError):
        value = 2.0**attempt
    return max(0.0, min(value, 60.0))


__all__ = [
    "AnthropicBatchError",
    "AnthropicBatches",
    "to_completion",
    "to_params",
    "to_result",
]
