"""What the batch fakes share: the knobs, counters and life of a provider's batch.

`FakeBatchAPI` is the base of `FakeOpenAIBatches` (openai_batches) and
`FakeAnthropicBatches` (anthropic_batches). Each of those keeps only its provider's wire
format (routes, object shapes, error bodies, result lines) and the knobs only that
provider has; their docs say how the shared knobs below show on that wire.

Everything is deterministic: which requests expire or go missing is `share_of` their
custom_id, a stable hash. Shared knobs (constructor arguments of both fakes, also plain
attributes a test may change while a batch runs):

- `polls_to_complete`: a batch ends at the Nth status poll, a retrieve of it (0: it
  ends at creation; None: never by polls).
- `complete_after_s`: or it ends once this many seconds have passed since creation.
- `expire_share`: this share of requests is left unrun and comes back expired. A
  request expires once: sent again in a later batch, it runs.
- `drop_share`: this share of requests runs (and is counted) but its line is missing
  from the results.
- `extra_ids`: successful result lines for these custom_ids, never sent, are added.
- `fail_create_after_commit`: the next N creates store the batch and then answer 500
  (`create_fault="500"`) or close the connection (`create_fault="drop"`), as when a
  process is killed between the provider's answer and the client's commit. Any other
  `create_fault` is a ValueError; its default is each fake's own.
- `creates_before_fault`: the faults of `fail_create_after_commit` start after this many
  creates went through (the second run's create of a `validate rX rY`, say).
- `late_error_share`: this share of requests that ran and succeeded gets a second line
  after its answer, an error (HTTP 500) for the same custom_id.
- `bad_usage_share`: this share of successful answers comes back with `usage: "n/a"`,
  an unreadable line that names its request. Once per request: sent again, it is read.

A batch being cancelled ends, cancelled, at its next status poll.

Shared counters for tests: `batches_created`, `requests_by_custom_id` (requests received
in created batches), `runs_by_custom_id` (requests actually answered), `expired_ids`
(the custom_ids that have expired), `bad_usage_ids` (the custom_ids whose answer was
garbled), `request_headers` (all headers of each request),
`calls` ("METHOD /route" counts, with `{id}` for an id in the route) and `batches` (the
stored batches by id, in creation order).
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web

from dvsynth.testing import FakeLLMServer


def share_of(custom_id: str, salt: str) -> float:
    """A stable draw in [0, 1) for one custom_id (the same in every run)."""
    digest = hashlib.sha256(f"{salt}:{custom_id}".encode()).hexdigest()[:8]
    return int(digest, 16) / 2**32


class BatchState(Protocol):
    """What the shared life of a batch reads and writes on a fake's batch record."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...

    polls: int
    started: float  # time.monotonic() at creation


BatchT = TypeVar("BatchT", bound=BatchState)
Handler = Callable[[Any, web.Request, Any], web.Response]


def batch_endpoint(handler: Handler) -> Callable[[Any, web.Request], Any]:
    """An aiohttp handler for a route with `{batch_id}`: the call is recorded (`_seen`,
    which may refuse it), an unknown id gets the provider's `_not_found`, and then
    `handler(self, request, batch)` answers, under the lock."""

    @functools.wraps(handler)
    async def endpoint(self: FakeBatchAPI[Any], request: web.Request) -> web.Response:
        if (denied := await self._seen(request)) is not None:
            return denied
        batch_id = request.match_info["batch_id"]
        batch = self.batches.get(batch_id)
        if batch is None:
            return self._not_found(batch_id)
        with self._lock:
            return handler(self, request, batch)

    return endpoint


class FakeBatchAPI(Generic[BatchT]):
    """The shared knobs, counters and batch life of the batch fakes (see the module doc).

    A provider's fake sets `ROOT` (its batches' path), `ENDED` and `CANCELLING` (its
    statuses) and writes its handlers `_create`, `_list` and `_cancel`, `_more_routes`,
    `_seen`, `_not_found`, `_view` (the batch object it answers) and `_finish` (how a
    batch ends, with `_fate` and `_dropped` deciding each request's lot)."""

    #: Where the provider's batches live: POST creates one, GET lists them,
    #: GET {ROOT}/{batch_id} retrieves one and POST {ROOT}/{batch_id}/cancel cancels it.
    ROOT = ""
    #: The statuses of a batch that no longer changes.
    ENDED: frozenset[str] = frozenset()
    #: The status of a batch being cancelled.
    CANCELLING = ""

    def __init__(
        self,
        server: FakeLLMServer,
        *,
        polls_to_complete: int | None = 1,
        complete_after_s: float | None = None,
        expire_share: float = 0.0,
        drop_share: float = 0.0,
        extra_ids: tuple[str, ...] | list[str] = (),
        fail_create_after_commit: int = 0,
        create_fault: str = "500",
        creates_before_fault: int = 0,
        late_error_share: float = 0.0,
        bad_usage_share: float = 0.0,
    ) -> None:
        if create_fault not in ("500", "drop"):
            raise ValueError(f"create_fault must be '500' or 'drop', not {create_fault!r}")
        self.server = server
        self.polls_to_complete = polls_to_complete
        self.complete_after_s = complete_after_s
        self.expire_share = expire_share
        self.drop_share = drop_share
        self.extra_ids = list(extra_ids)
        self.fail_create_after_commit = fail_create_after_commit
        self.create_fault = create_fault
        self.creates_before_fault = creates_before_fault
        self.late_error_share = late_error_share
        self.bad_usage_share = bad_usage_share
        self.bad_usage_ids: set[str] = set()  # each is garbled once
        self.batches: dict[str, BatchT] = {}  # in creation order
        self.batches_created = 0
        self.requests_by_custom_id: Counter[str] = Counter()
        self.runs_by_custom_id: Counter[str] = Counter()
        self.expired_ids: set[str] = set()  # each expires once
        self.request_headers: list[dict[str, str]] = []
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ids = 0
        server.extra_routes.append(self.routes())

    # ------------------------------------------------------------------ the provider's part

    def _more_routes(self) -> list[web.RouteDef]:
        """The provider's routes besides the batch routes under `ROOT`."""
        raise NotImplementedError

    async def _create(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def _list(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def _cancel(self, request: web.Request) -> web.Response:
        """A `batch_endpoint` in the provider's fake."""
        raise NotImplementedError

    async def _seen(self, request: web.Request) -> web.Response | None:
        """Record the call (`_count` and the provider's own counters); its refusal, or None."""
        raise NotImplementedError

    def _not_found(self, batch_id: str) -> web.Response:
        raise NotImplementedError

    def _view(self, request: web.Request, batch: BatchT) -> dict[str, Any]:
        """The batch object the provider answers with (a copy); called under the lock."""
        raise NotImplementedError

    def _finish(self, batch: BatchT, cancelled: bool = False) -> None:
        """End a batch: its results, counts and status; called under the lock."""
        raise NotImplementedError

    # ------------------------------------------------------------------ plumbing

    def routes(self) -> list[web.RouteDef]:
        """The batch routes under `ROOT`, then the provider's `_more_routes`."""
        one = f"{self.ROOT}/{{batch_id}}"
        return [
            web.post(self.ROOT, self._create),
            web.get(self.ROOT, self._list),
            web.get(one, self._retrieve),
            web.post(f"{one}/cancel", self._cancel),
            *self._more_routes(),
        ]

    def _count(self, request: web.Request) -> None:
        """Count a call in `calls` and keep its headers; called under the lock."""
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else request.path
        path = re.sub(r"\{\w+\}", "{id}", path)  # /v1/batches/{batch_id} -> .../{id}
        self.calls[f"{request.method} {path}"] += 1
        self.request_headers.append(dict(request.headers))

    def _next_id(self, prefix: str) -> str:
        """A new id for a batch or file; called under the lock."""
        self._ids += 1
        return f"{prefix}{self._ids:06d}"

    def _commit(self, batch: BatchT, custom_ids: Iterable[str]) -> bool:
        """Store and count a created batch; True when this create is one that
        `fail_create_after_commit` fails. Called under the lock."""
        self.batches[batch.id] = batch
        self.batches_created += 1
        self.requests_by_custom_id.update(custom_ids)
        self._advance(batch, poll=False)
        fault = (
            self.fail_create_after_commit > 0 and self.batches_created > self.creates_before_fault
        )
        if fault:
            self.fail_create_after_commit -= 1
        return fault

    def _created(
        self, request: web.Request, answer: dict[str, Any], fault: bool, server_error: web.Response
    ) -> web.Response:
        """The answer to a create: the batch, or the `create_fault` after the commit."""
        if fault and self.create_fault == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        return server_error if fault else web.json_response(answer)

    def _newest_first(self) -> list[BatchT]:
        """The batches, newest first, each moved along its life; called under the lock."""
        newest_first = list(reversed(self.batches.values()))
        for batch in newest_first:
            self._advance(batch, poll=False)
        return newest_first

    @batch_endpoint
    def _retrieve(self, request: web.Request, batch: BatchT) -> web.Response:
        """A status poll."""
        self._advance(batch, poll=True)
        return web.json_response(self._view(request, batch))

    # ------------------------------------------------------------------ life

    def _due(self, batch: BatchT) -> bool:
        """Whether a batch ends now: by its polls or by the time since its creation."""
        by_polls = self.polls_to_complete is not None and batch.polls >= self.polls_to_complete
        by_time = (
            self.complete_after_s is not None
            and time.monotonic() - batch.started >= self.complete_after_s
        )
        return by_polls or by_time

    def _advance(self, batch: BatchT, poll: bool) -> None:
        """Move a batch along its life; called under the lock."""
        if batch.status in self.ENDED:
            return
        if poll:
            batch.polls += 1
        if batch.status == self.CANCELLING:
            if poll:
                self._finish(batch, cancelled=True)
            return
        if self._due(batch):
            self._finish(batch)

    def _fate(self, custom_id: str, cancelled: bool) -> str:
        """What becomes of one request as its batch ends: "cancelled", "expired" (a
        request expires once: sent again, it runs) or "run" (counted in
        `runs_by_custom_id`). Called under the lock."""
        if cancelled:
            return "cancelled"
        if share_of(custom_id, "expire") < self.expire_share and custom_id not in self.expired_ids:
            self.expired_ids.add(custom_id)
            return "expired"
        self.runs_by_custom_id[custom_id] += 1
        return "run"

    def _dropped(self, custom_id: str) -> bool:
        """Whether a request that ran has its line left out of the results."""
        return share_of(custom_id, "drop") < self.drop_share

    def _late_error(self, custom_id: str) -> bool:
        """Whether an answered request also gets a later error line."""
        return share_of(custom_id, "late") < self.late_error_share

    def _bad_usage(self, custom_id: str) -> bool:
        """Whether this answer's line carries an unreadable `usage` (once per request).
        Called under the lock."""
        if custom_id in self.bad_usage_ids or share_of(custom_id, "usage") >= self.bad_usage_share:
            return False
        self.bad_usage_ids.add(custom_id)
        return True
