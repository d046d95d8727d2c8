"""What a batch provider does, in one small interface: submit, find, status, results,
cancel. One module per provider (`openai`, `anthropic`); the engine knows only this.

Requests travel in the OpenAI chat-completions shape (`body`), which is also what
vLLM's `run-batch` and SGLang read; a provider with another shape translates in its own
module, in both directions, so results always come back as OpenAI chat.completion JSON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

#: A batch state after which the provider will do no more work on it.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class BatchRequest:
    """One call: `custom_id` names it in the results; `body` is an OpenAI
    chat-completions request (model as the provider names it, messages, sampling)."""

    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class BatchStatus:
    """A batch as the provider reports it, in OpenAI's words.

    state: validating | in_progress | finalizing | completed | failed | expired |
    cancelling | cancelled (Anthropic's in_progress / canceling / ended map onto these;
    an ended batch is `completed`). counts: total, completed, failed, expired, cancelled
    (what the provider knows; missing keys are 0)."""

    remote_id: str
    state: str
    counts: dict[str, int] = field(default_factory=dict)
    created_at: float | None = None  # unix seconds
    error: str | None = None  # why the batch failed as a whole, when it did

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True)
class BatchResult:
    """One line of a batch's results.

    `response`: the OpenAI chat.completion JSON body when the request succeeded.
    `status_code`: the request's HTTP status (None when it never ran). `error`: the
    provider's message when it failed. `expired`: it never ran (the batch expired or was
    cancelled first); the engine resubmits it. `malformed`: why a line that names its
    request could not be read (the engine counts it and sends the request again)."""

    custom_id: str
    response: dict[str, Any] | None = None
    status_code: int | None = None
    error: str | None = None
    expired: bool = False
    malformed: str | None = None


class Undecided(Exception):
    """`find` sees more than one batch that could be the one asked for, and cannot tell
    them apart yet (none of them has ended): the engine keeps the batch unacknowledged
    and asks again on the next run rather than send its requests a second time."""


class BatchProvider(Protocol):
    """A provider's batch API. `label` is dvsynth's own id for a batch, unique to the
    run, stage and round, and sent with it (OpenAI metadata; Anthropic keeps no
    metadata, so `find` matches otherwise), so a run killed between the provider's
    answer and dvsynth's commit finds its batch instead of submitting it twice."""

    name: str  # "openai" (any provider litellm covers in the OpenAI format) | "anthropic"
    max_requests: int  # per batch
    max_bytes: int  # per batch input

    def request_size(self, request: BatchRequest) -> int:
        """Bytes this request adds to a batch's input (to stay under `max_bytes`)."""
        ...

    async def submit(self, requests: list[BatchRequest], label: str) -> str:
        """Upload and create one batch; returns the provider's batch id."""
        ...

    async def find(
        self,
        label: str,
        since: float,
        count: int | None = None,
        known: Any = (),
        sample: str | None = None,
    ) -> str | None:
        """The id of a batch this run submitted under `label` (holding `count` requests)
        at or after unix time `since`, if the provider has one; None when it never got
        there. `known`: every batch id that the runs of this command hold (never the
        answer); `sample`: the custom_id of one of the batch's requests (an ended batch
        whose results lack it is not the one). Raises `Undecided` when it cannot tell."""
        ...

    async def status(self, remote_id: str) -> BatchStatus: ...

    def results(self, remote_id: str) -> AsyncIterator[BatchResult]:
        """Every result line of a terminal batch (successes and errors), streamed."""
        ...

    async def cancel(self, remote_id: str) -> BatchStatus: ...

    async def aclose(self) -> None: ...
