"""The batch state of a run, in its own database: every request dvsynth queued for a batch
and every batch it submitted or wrote, so that a rerun never pays for a request twice.

A request is keyed by its response-cache key (`llm.client.cache_key`), which is what
makes a collected answer reach the row exactly as an online answer would: collection
writes it to the response cache, and the rerun's stage reads it from there.

Request states: `queued` (waiting for the next submission), `assigned` (in a batch:
the batch's own state says where), `answered` (the answer is in the response cache),
`error` (the provider refused it; the row reads the error as an online call's).
Batch states: `submitting` (recorded, its requests assigned, not yet acknowledged by the
provider: a rerun looks for it by label before sending anything), the provider's state
once submitted, `collected` once its results are in, and `file` for a `--batch-out`
file (rewritten by every `--batch-out`, answered by `dvsynth batch import`).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from dvsynth.llm.batch.provider import BatchRequest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_requests (
    key TEXT PRIMARY KEY,
    custom_id TEXT NOT NULL UNIQUE,
    stage TEXT NOT NULL,
    row_id TEXT NOT NULL,
    model TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    batch TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    status_code INTEGER,
    error TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL
);
CREATE INDEX IF NOT EXISTS batch_requests_state ON batch_requests (state, stage);
CREATE INDEX IF NOT EXISTS batch_requests_batch ON batch_requests (batch);
CREATE TABLE IF NOT EXISTS batches (
    label TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    stage TEXT NOT NULL,
    remote_id TEXT,
    state TEXT NOT NULL,
    requests INTEGER NOT NULL,
    created_at REAL NOT NULL,
    counts TEXT,
    error TEXT,
    path TEXT,
    api_base TEXT,
    key_env TEXT
);
"""

OPEN_STATES = ("queued", "assigned")


@dataclass(frozen=True)
class RequestState:
    state: str
    status_code: int | None
    error: str | None
    batch: str | None


@dataclass(frozen=True)
class Batch:
    label: str
    provider: str
    model: str
    stage: str
    remote_id: str | None
    state: str
    requests: int
    created_at: float
    counts: dict[str, int]
    error: str | None
    path: str | None
    api_base: str | None  # where the provider was reached (secrets redacted)
    key_env: str | None  # the NAME of the variable that held the key, never the key


@dataclass(frozen=True)
class Queued:
    """A request to send: its cache key, custom_id and OpenAI body (JSON text)."""

    key: str
    custom_id: str
    body: str

    def as_request(self) -> BatchRequest:
        return BatchRequest(self.custom_id, json.loads(self.body))


class BatchLedger:
    """`batch_requests` and `batches` of one run database."""

    def __init__(
        self,
        db: sqlite3.Connection,
        on_responses: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        self._db = db
        # Told the cache keys this ledger writes to `responses` (`runs.cache.stored`).
        self._on_responses = on_responses
        db.executescript(_SCHEMA)

    # ------------------------------------------------------------------ requests

    def state_of(self, key: str) -> RequestState | None:
        row = self._db.execute(
            "SELECT r.state, r.status_code, r.error, r.batch FROM batch_requests r WHERE r.key = ?",
            (key,),
        ).fetchone()
        return None if row is None else RequestState(*row)

    def queue(self, entries: Iterable[tuple[str, str, str, str, str, str]]) -> None:
        """Queue (key, custom_id, stage, row_id, model, body) requests, committed at once;
        a request the ledger holds in error is queued again (a rerun's retry)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO batch_requests (key, custom_id, stage, row_id, model, body, state) "
                "VALUES (?, ?, ?, ?, ?, ?, 'queued') "
                "ON CONFLICT(key) DO UPDATE SET state = 'queued', batch = NULL, "
                "status_code = NULL, error = NULL WHERE state = 'error'",
                list(entries),
            )

    def queued(self, stage: str, model: str) -> Iterator[Queued]:
        """Queued requests of `stage` and `model`, in the order they were queued."""
        last = 0
        while True:
            rows = self._db.execute(
                "SELECT rowid, key, custom_id, body FROM batch_requests "
                "WHERE state = 'queued' AND stage = ? AND model = ? AND rowid > ? "
                "ORDER BY rowid LIMIT 1000",
                (stage, model, last),
            ).fetchall()
            if not rows:
                return
            for rowid, key, custom_id, body in rows:
                last = rowid
                yield Queued(key, custom_id, body)

    def count(self, stage: str, states: Iterable[str] = OPEN_STATES) -> int:
        states = tuple(states)
        marks = ",".join("?" * len(states))
        return self._db.execute(
            f"SELECT COUNT(*) FROM batch_requests WHERE stage = ? AND state IN ({marks})",
            (stage, *states),
        ).fetchone()[0]

    def in_batch(self, label: str) -> Iterator[Queued]:
        """The requests a batch holds that have no answer yet."""
        for key, custom_id, body in self._db.execute(
            "SELECT key, custom_id, body FROM batch_requests "
            "WHERE batch = ? AND state = 'assigned' ORDER BY rowid",
            (label,),
        ).fetchall():
            yield Queued(key, custom_id, body)

    def holds(self, label: str) -> int:
        """How many requests of a batch have no answer yet."""
        return self._db.execute(
            "SELECT COUNT(*) FROM batch_requests WHERE batch = ? AND state = 'assigned'",
            (label,),
        ).fetchone()[0]

    def by_custom_id(self, custom_id: str) -> tuple[str, str, str] | None:
        """(key, state, model) of the request with this custom_id."""
        row = self._db.execute(
            "SELECT key, state, model FROM batch_requests WHERE custom_id = ?", (custom_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def states(self) -> dict[str, dict[str, int]]:
        """Requests by stage and state."""
        out: dict[str, dict[str, int]] = {}
        for stage, state, count in self._db.execute(
            "SELECT stage, state, COUNT(*) FROM batch_requests GROUP BY stage, state"
        ).fetchall():
            out.setdefault(stage, {})[state] = count
        return out

    def spend(self) -> dict[str, dict[str, Any]]:
        """Per stage: requests answered by a batch, their tokens and what they cost
        (None when some answer had no known price)."""
        out: dict[str, dict[str, Any]] = {}
        for stage, answered, prompt, completion, cost, unpriced in self._db.execute(
            "SELECT stage, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
            "SUM(cost_usd), SUM(cost_usd IS NULL) FROM batch_requests "
            "WHERE state = 'answered' GROUP BY stage"
        ).fetchall():
            out[stage] = {
                "answered": answered,
                "prompt_tokens": int(prompt or 0),
                "completion_tokens": int(completion or 0),
                "cost_usd": round(float(cost or 0.0), 6),
                "unpriced": int(unpriced or 0),
            }
        return out

    def spend_by_model(self) -> dict[tuple[str, str], dict[str, Any]]:
        """`spend`, per (stage, model): a judge cascade's two models apart."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for stage, model, answered, prompt, completion, cost, unpriced in self._db.execute(
            "SELECT stage, model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
            "SUM(cost_usd), SUM(cost_usd IS NULL) FROM batch_requests "
            "WHERE state = 'answered' GROUP BY stage, model"
        ).fetchall():
            out[(stage, model)] = {
                "answered": answered,
                "prompt_tokens": int(prompt or 0),
                "completion_tokens": int(completion or 0),
                "cost_usd": round(float(cost or 0.0), 6),
                "unpriced": int(unpriced or 0),
            }
        return out

    def in_flight(self) -> Iterator[tuple[str, str, str]]:
        """(stage, model, body) of every request a provider may be running now: assigned
        to a batch that is not a `--batch-out` file and not yet collected (what
        `runs.spend` prices at its estimate)."""
        yield from self._db.execute(
            "SELECT r.stage, r.model, r.body FROM batch_requests r JOIN batches b "
            "ON r.batch = b.label WHERE r.state = 'assigned' AND b.provider != 'file' "
            "AND b.state != 'collected' ORDER BY r.rowid"
        )

    def withdraw_queued(self, stage: str) -> int:
        """Forget the requests of `stage` that are queued and in no batch (never sent):
        an online run answers them instead, and no later batch sends them too."""
        with self._db:
            self._db.execute("BEGIN")
            return self._db.execute(
                "DELETE FROM batch_requests WHERE stage = ? AND state = 'queued'", (stage,)
            ).rowcount

    def mean_completion_tokens(self, stage: str) -> float | None:
        value = self._db.execute(
            "SELECT AVG(completion_tokens) FROM batch_requests "
            "WHERE stage = ? AND state = 'answered'",
            (stage,),
        ).fetchone()[0]
        return None if value is None else float(value)

    # ------------------------------------------------------------------ batches

    def open_batch(
        self,
        label: str,
        provider: str,
        model: str,
        stage: str,
        keys: list[str],
        state: str = "submitting",
        path: str | None = None,
        api_base: str | None = None,
        key_env: str | None = None,
    ) -> None:
        """Record a batch and assign its requests to it, in one transaction: after this,
        no rerun sends these requests again unless the batch is found never to have
        reached the provider."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO batches (label, provider, model, stage, state, requests, "
                "created_at, path, api_base, key_env) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    label,
                    provider,
                    model,
                    stage,
                    state,
                    len(keys),
                    time.time(),
                    path,
                    api_base,
                    key_env,
                ),
            )
            self._db.executemany(
                "UPDATE batch_requests SET state = 'assigned', batch = ?, attempts = attempts + 1 "
                "WHERE key = ?",
                [(label, key) for key in keys],
            )

    def submitted(self, label: str, remote_id: str, state: str = "validating") -> None:
        self._db.execute(
            "UPDATE batches SET remote_id = ?, state = ? WHERE label = ?",
            (remote_id, state, label),
        )

    def set_state(
        self, label: str, state: str, counts: dict[str, int] | None = None, error: str | None = None
    ) -> None:
        self._db.execute(
            "UPDATE batches SET state = ?, counts = COALESCE(?, counts), "
            "error = COALESCE(?, error) WHERE label = ?",
            (state, json.dumps(counts) if counts is not None else None, error, label),
        )

    def batches(self, states: Iterable[str] | None = None) -> list[Batch]:
        rows = self._db.execute(
            "SELECT label, provider, model, stage, remote_id, state, requests, created_at, "
            "counts, error, path, api_base, key_env FROM batches ORDER BY created_at, label"
        ).fetchall()
        wanted = set(states) if states is not None else None
        return [
            Batch(*row[:8], json.loads(row[8]) if row[8] else {}, *row[9:])
            for row in rows
            if wanted is None or row[5] in wanted
        ]

    def release(self, label: str) -> int:
        """Put a batch's unanswered requests back in the queue (the batch never reached
        the provider, or is replaced by a new file); returns how many."""
        with self._db:
            self._db.execute("BEGIN")
            moved = self._db.execute(
                "UPDATE batch_requests SET state = 'queued', batch = NULL "
                "WHERE batch = ? AND state = 'assigned'",
                (label,),
            ).rowcount
            self._db.execute("DELETE FROM batches WHERE label = ?", (label,))
        return moved

    def next_label(self, run_tag: str, stage: str = "batch") -> str:
        """A new batch's label, unique to this run, stage and round: two runs of one
        identity (or one run's stages) never share one, so a label found at the provider
        names one batch only."""
        count = self._db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
        return f"dvsynth-{run_tag}-{stage}-{count + 1:05d}-{secrets.token_hex(4)}"

    def remote_ids(self) -> set[str]:
        """The provider ids of every batch this run holds."""
        return {r for (r,) in self._db.execute("SELECT remote_id FROM batches") if r}

    # ------------------------------------------------------------------ results

    def record(
        self,
        outcomes: list[tuple[str, str, dict[str, Any] | None, int | None, str | None]],
        responses: list[tuple[str, str]],
    ) -> None:
        """Write a slice of results in one transaction: `outcomes` are (key, new state,
        spend {prompt_tokens, completion_tokens, cost_usd} or None, status code, error);
        `responses` are (cache key, cached value JSON) for the answered ones. A request
        once answered keeps its answer and its spend: no later outcome changes it."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", responses
            )
            self._db.executemany(
                "UPDATE batch_requests SET state = ?, batch = CASE WHEN ? = 'queued' THEN NULL "
                "ELSE batch END, status_code = ?, error = ?, prompt_tokens = ?, "
                "completion_tokens = ?, cost_usd = ? WHERE key = ? AND state != 'answered'",
                [
                    (
                        state,
                        state,
                        code,
                        error,
                        (spend or {}).get("prompt_tokens"),
                        (spend or {}).get("completion_tokens"),
                        (spend or {}).get("cost_usd"),
                        key,
                    )
                    for key, state, spend, code, error in outcomes
                ],
            )
        if self._on_responses is not None:
            self._on_responses(key for key, _ in responses)

    def attempts(self, key: str) -> int:
        row = self._db.execute(
            "SELECT attempts FROM batch_requests WHERE key = ?", (key,)
        ).fetchone()
        return int(row[0]) if row else 0
