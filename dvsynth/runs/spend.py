"""What a run has spent: the one ledger every cost cap reads (`generate --max-cost`,
the batch submission check, a recipe's `limits.max_cost`), for every stage and engine.

Every answer a run paid for is in its response cache, once, with its price: online
calls of the generator, the instruction check and the judge (at the online rate), and
answers collected from batches, batch files or Ray (at the batch rate). So the paid part
is the sum over the cache, whatever stage or engine made the call. Requests a provider
may still be running (assigned to a batch not yet collected) will be paid too: they
count at their estimate until their batch is collected, when their answers replace it.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dvsynth.llm.batch.ledger import BatchLedger


@dataclass(frozen=True)
class Spend:
    """USD of one run (or several, added with `+`)."""

    paid_usd: float = 0.0  # answers received, at the price of the rate they were paid at
    open_usd: float = 0.0  # requests in batches not yet collected, at their estimate
    open_requests: int = 0
    unpriced: int = 0  # answers or open requests without a known price (not in the sums)

    @property
    def total_usd(self) -> float:
        return self.paid_usd + self.open_usd

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.paid_usd + other.paid_usd,
            self.open_usd + other.open_usd,
            self.open_requests + other.open_requests,
            self.unpriced + other.unpriced,
        )

    def describe(self) -> str:
        """'$0.0123 spent' and, when batches are open, what they hold at their estimate."""
        text = f"${self.total_usd:.4f} spent"
        if self.open_requests:
            text += (
                f" (${self.open_usd:.4f} of it in open batches: {self.open_requests} "
                "requests at their estimate)"
            )
        return text


def spend_of(stores: Iterable[Any]) -> Spend:
    """The spend of several runs (`RunStore`s) together, as one cap counts them."""
    return sum((store.spend() for store in stores), Spend())


def run_spend(db: sqlite3.Connection, ledger: BatchLedger) -> Spend:
    """The spend of the run whose database is `db` (`ledger`: its batch ledger)."""
    paid, unpriced = db.execute(
        "SELECT SUM(json_extract(value, '$.cost_usd')), "
        "SUM(json_extract(value, '$.cost_usd') IS NULL) FROM responses"
    ).fetchone()
    open_usd, open_requests, open_unpriced = _in_flight(ledger)
    return Spend(
        paid_usd=float(paid or 0.0),
        open_usd=open_usd,
        open_requests=open_requests,
        unpriced=int(unpriced or 0) + open_unpriced,
    )


def _in_flight(ledger: BatchLedger) -> tuple[float, int, int]:
    """(USD, requests, unpriced requests) of what the provider may be running now, at the
    batch rate: prompt tokens counted, completion tokens at the stage's mean so far
    (else each request's max_tokens, an upper bound)."""
    groups: dict[tuple[str, str, float], list[list[Any]]] = defaultdict(list)
    means: dict[str, float | None] = {}
    for stage, model, text in ledger.in_flight():
        body = json.loads(text)
        if stage not in means:
            means[stage] = ledger.mean_completion_tokens(stage)
        completion = means[stage] or float(
            body.get("max_tokens") or body.get("max_completion_tokens") or 0
        )
        groups[(stage, model, completion)].append(body.get("messages") or [])
    if not groups:
        return 0.0, 0, 0
    from dvsynth.llm.cost import BASIS_MAX_TOKENS, estimate

    usd = 0.0
    requests = unpriced = 0
    for (_, model, completion), calls in groups.items():
        found = estimate(model, iter(calls), completion, BASIS_MAX_TOKENS)
        requests += found.calls
        if found.batch_usd is None:
            unpriced += found.calls
        else:
            usd += found.batch_usd
    return usd, requests, unpriced
