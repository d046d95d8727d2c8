"""The OpenAI Batch API (and any provider litellm serves with it: vLLM, a litellm proxy)
as a `BatchProvider`: upload a JSONL file, create a batch, poll it, stream its output
and error files back through `parse_result_line`.

Everything goes through litellm's async file and batch calls, imported on first use so
that importing dvsynth touches no network. The API key lives in this object only: it is
never logged, written to a file or left in an error message.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from dvsynth.llm.batch.openai_format import (
    ENDPOINT,
    BadResultLine,
    parse_result_line,
    request_line,
)
from dvsynth.llm.batch.provider import BatchRequest, BatchResult, BatchStatus
from dvsynth.llm.keys import NO_KEY
from dvsynth.redact import redact

#: The metadata key that carries dvsynth's label of a batch (`find` matches on it).
LABEL_KEY = "dvsynth_label"
#: How far back of `since` `find` still accepts a batch: the provider's clock is not
#: ours, and `created_at` is whole seconds.
CLOCK_SKEW_S = 60.0
#: Stops litellm from downloading an ended batch's files on every retrieve (for its cost
#: logging, which dvsynth does not use).
NO_BATCH_COST_LOGGING = {"batch_ignore_default_logging": True}
LIST_PAGE = 100  # OpenAI's largest page of GET /v1/batches


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


class BatchProviderError(Exception):
    """A provider error whose message had to be redacted; keeps its HTTP status."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class OpenAIBatches:
    """OpenAI's Files + Batches API through litellm.

    `custom_llm_provider`: litellm's name for the API ("openai", "azure",
    "hosted_vllm", "litellm_proxy"). `api_base`: e.g. "https://api.openai.com/v1" (None:
    litellm's default). `api_key`: held in memory only. With an `api_base` and no key,
    a placeholder is sent so that litellm does not fill in OPENAI_API_KEY for a server
    that is not OpenAI's (see dvsynth.llm.keys).
    """

    name = "openai"
    # OpenAI's documented limits per batch: 50,000 requests and an input file of 200 MB.
    max_requests = 50_000
    max_bytes = 200 * 2**20

    def __init__(
        self,
        custom_llm_provider: str = "openai",
        api_base: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.custom_llm_provider = custom_llm_provider
        self.api_base = api_base
        self._api_key = api_key if api_key or api_base is None else NO_KEY
        self.bad_lines = 0  # result lines that were not OpenAI batch results (skipped)

    def __repr__(self) -> str:
        return f"OpenAIBatches({self.custom_llm_provider!r}, api_base={self.api_base!r})"

    # ------------------------------------------------------------------ calls

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"custom_llm_provider": self.custom_llm_provider}
        if self.api_base is not None:
            options["api_base"] = self.api_base
        if self._api_key is not None:
            options["api_key"] = self._api_key
        return options

    async def _call(self, name: str, **kwargs: Any) -> Any:
        """One litellm call; an error that quotes the key is re-raised without it."""
        function = getattr(_litellm(), name)
        try:
            return await function(**kwargs, **self._options())
        except Exception as exc:
            message = str(exc)
            key = self._api_key
            if key and key != NO_KEY and (key in message or key in repr(exc.args)):
                status = getattr(exc, "status_code", None)
                raise BatchProviderError(
                    f"{type(exc).__name__}: {redact(message, (key,))}",
                    status if isinstance(status, int) else None,
                ) from None
            raise

    # ------------------------------------------------------------------ BatchProvider

    def request_size(self, request: BatchRequest) -> int:
        return len(request_line(request).encode()) + 1  # the line and its newline

    async def submit(self, requests: list[BatchRequest], label: str) -> str:
        if not requests:
            raise ValueError("a batch needs at least one request")
        filename = "dvsynth-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:80] or "batch")
        # Through a temporary file, line by line: a 200 MB batch never sits in memory
        # as one string.
        with tempfile.TemporaryFile() as data:
            for request in requests:
                data.write(request_line(request).encode("ascii") + b"\n")
            data.seek(0)
            uploaded = await self._call(
                "acreate_file",
                file=(filename + ".jsonl", data, "application/jsonl"),
                purpose="batch",
            )
        # No retries inside the SDK: a create whose answer was lost may have made the
        # batch, and a blind retry would make a second one. The engine calls `find`.
        batch = await self._call(
            "acreate_batch",
            completion_window="24h",
            endpoint=ENDPOINT,
            input_file_id=uploaded.id,
            metadata={LABEL_KEY: label},
            max_retries=0,
        )
        return str(batch.id)

    async def find(
        self,
        label: str,
        since: float,
        count: int | None = None,
        known: Any = (),
        sample: str | None = None,
    ) -> str | None:
        """By the label in the batch's metadata, which names one batch only (`count`,
        `known` and `sample` are not needed here)."""
        after: str | None = None
        while True:
            page = await self._call("alist_batches", limit=LIST_PAGE, after=after)
            batches = list(page.data or [])
            for batch in batches:  # newest first
                if batch.created_at + 1 + CLOCK_SKEW_S < since:
                    return None
                if (batch.metadata or {}).get(LABEL_KEY) == label:
                    return str(batch.id)
            if not batches or page.has_more is False:
                return None
            after = batches[-1].id

    async def status(self, remote_id: str) -> BatchStatus:
        return self._status(await self._retrieve(remote_id))

    async def results(self, remote_id: str) -> AsyncIterator[BatchResult]:
        batch = await self._retrieve(remote_id)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            async for line in self._lines(file_id):
                if not line.strip():
                    continue
                try:
                    yield parse_result_line(line)
                except BadResultLine:
                    self.bad_lines += 1

    async def cancel(self, remote_id: str) -> BatchStatus:
        try:
            # No SDK retries: it would retry a 409 refusal twice, with backoff.
            batch = await self._call("acancel_batch", batch_id=remote_id, max_retries=0)
        except Exception as exc:
            # Cancelling a batch that has ended is refused (400/409): report its state.
            if getattr(exc, "status_code", None) not in (400, 409):
                raise
            current = await self.status(remote_id)
            if not current.terminal and current.state != "cancelling":
                raise
            return current
        return self._status(batch)

    async def aclose(self) -> None:
        """Nothing to close: litellm opens and closes a client per call."""

    # ------------------------------------------------------------------ helpers

    async def _retrieve(self, remote_id: str) -> Any:
        # litellm's success logging prices every retrieve of an ended batch by
        # downloading its whole output and error files, in the background, on each
        # poll; this metadata flag turns that off.
        return await self._call(
            "aretrieve_batch", batch_id=remote_id, litellm_metadata=NO_BATCH_COST_LOGGING
        )

    async def _lines(self, file_id: str) -> AsyncIterator[str]:
        """A results file's lines, streamed where litellm can stream the provider's."""
        content = await self._call("afile_content", file_id=file_id, stream=True)
        chunks = getattr(content, "stream_iterator", None)
        if chunks is None:  # a provider litellm cannot stream: the whole file at once
            for line in bytes(content.content).splitlines():
                yield line.decode("utf-8", "replace")
            return
        pending = b""
        async for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")

    def _status(self, batch: Any) -> BatchStatus:
        state = str(batch.status)
        counts: dict[str, int] = {}
        request_counts = batch.request_counts
        if request_counts is not None:
            counts = {
                "total": int(request_counts.total or 0),
                "completed": int(request_counts.completed or 0),
                "failed": int(request_counts.failed or 0),
            }
            unrun = counts["total"] - counts["completed"] - counts["failed"]
            if state in ("expired", "cancelled") and unrun > 0:
                counts[state] = unrun  # what never ran: OpenAI counts it nowhere else
        error = None
        if batch.errors is not None and batch.errors.data:
            parts = [
                " ".join(filter(None, [e.code and f"{e.code}:", e.message, _line(e.line)]))
                for e in batch.errors.data
            ]
            error = redact("; ".join(parts), (self._api_key or "",))[:500]
        created_at = float(batch.created_at) if batch.created_at is not None else None
        return BatchStatus(str(batch.id), state, counts, created_at, error)


def _line(line: int | None) -> str | None:
    return f"(line {line})" if line is not None else None
