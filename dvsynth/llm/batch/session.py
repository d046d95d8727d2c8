"""Where a batch-mode client sends the calls that its cache cannot answer.

In batch mode the stage runs exactly as online, over the same rows, with the same
parsing and steps; only a call without a cached answer is queued for the next batch
(`AwaitingBatch` ends the row for this pass) instead of being sent. Once a batch's
results are collected into the response cache, the next pass finishes those rows from
the cache, so a row made from a batch answer equals the row an online call would make.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, NoReturn

from dvsynth.errors import AwaitingBatch, RowError
from dvsynth.llm.batch.ledger import BatchLedger
from dvsynth.llm.retry import TRANSIENT_STATUS

#: The row whose step is calling: its key starts every custom_id it sends.
current_row: ContextVar[str | None] = ContextVar("dvsynth_batch_row", default=None)

#: Queued requests held in memory before they are committed together.
FLUSH_EVERY = 2000
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


def custom_id(row_id: str, key: str) -> str:
    """`<row key>-<request hash>`: the row's own id where it is short and plain (what
    Anthropic's custom_id allows: [A-Za-z0-9_-]{1,64}), else a hash of it. A row has
    several calls (the judge's four), so the request hash keeps each one apart."""
    token = row_id if _PLAIN_ID.fullmatch(row_id) else "h" + _sha(row_id)[:23]
    return f"{token}-{key[:20]}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_transient_status(code: int | None) -> bool:
    """A request that failed this way may succeed if sent again (None: it never ran)."""
    return code is None or code in TRANSIENT_STATUS or code >= 500


class BatchSession:
    """The deferral of one pass of one stage, for one run: requests to queue, and
    errors the ledger holds turned into row errors as an online call's would be."""

    def __init__(
        self, ledger: BatchLedger, stage: str, model: str, retried: set[str] | None = None
    ) -> None:
        self.ledger = ledger
        self.stage = stage
        self.model = model
        self._new: dict[str, tuple[str, str, str, str, str, str]] = {}
        # Transient errors are sent again once per invocation (a rerun's retry of a failed
        # row); `retried` may hold keys whose tries already ran out in this invocation.
        self._retried: set[str] = retried if retried is not None else set()
        self.dry = False  # a dry run: hold every uncached call back, queue nothing

    def new_bodies(self) -> Iterator[dict[str, Any]]:
        """The request bodies this pass queued and has not committed."""
        for entry in self._new.values():
            yield json.loads(entry[5])

    def defer(self, key: str, body: dict[str, Any]) -> NoReturn:
        """Queue the call for a batch (or find it already queued) and end the row for
        this pass; or raise the error a batch gave it."""
        if key in self._new:
            raise AwaitingBatch
        state = self.ledger.state_of(key)
        if state is None or (self.dry and state.state == "error"):
            self._queue(key, body)
        if state.state in ("queued", "assigned"):
            raise AwaitingBatch
        if state.state == "answered":  # answered, yet not in the response cache
            raise RowError("llm:batch:lost", "the collected answer is missing", transient=True)
        transient = is_transient_status(state.status_code)
        if transient and key not in self._retried:
            self._retried.add(key)
            self._queue(key, body)
        code = state.status_code if state.status_code is not None else "expired"
        raise RowError(f"llm:batch:{code}", state.error or "", transient=transient)

    def _queue(self, key: str, body: dict[str, Any]) -> NoReturn:
        row_id = current_row.get() or "row"
        self._new[key] = (
            key,
            custom_id(row_id, key),
            self.stage,
            row_id,
            self.model,
            json.dumps(body, ensure_ascii=False, sort_keys=True),
        )
        if len(self._new) >= FLUSH_EVERY and not self.dry:
            self.flush()  # memory stays flat however many rows the pass queues
        raise AwaitingBatch

    def flush(self) -> int:
        """Commit the requests this pass queued; returns how many."""
        count = len(self._new)
        if count:
            self.ledger.queue(self._new.values())
            self._new.clear()
        return count
