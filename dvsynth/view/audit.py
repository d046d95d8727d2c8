"""The blind audit: a reproducible sample of a run's pairs, shown to people one view at
a time, and their answers, all in the run's own database.

The sample (N verified pairs drawn uniformly with `--seed`, and M the judge rejected) is
recorded once; every later call uses it, so several reviewers answer the same items and
a restart resumes. Each pair gives two items, one per view (query, that view's
instruction, both documents in a random order recorded with the item), shuffled so that
a pair's two views are not side by side. Every answer is its own committed transaction
under the run's lock (a writer's `RunStore`): a kill loses nothing given before it.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError
from dvsynth.runs.store import SETTINGS_KEY, RunStore

LABELS = ("yes", "no", "unsure")
_REVIEWER = re.compile(r"^[\w.@+-]{1,64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_samples (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seed INTEGER NOT NULL,
    verified INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    settings TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_items (
    item TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    seed_id TEXT NOT NULL,
    view TEXT NOT NULL,
    doc_1 TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_answers (
    item TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    doc_1 TEXT NOT NULL,
    doc_2 TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    answered_at TEXT NOT NULL,
    via TEXT NOT NULL,
    PRIMARY KEY (item, reviewer)
);
"""

#: The row as it stands (`RunStore.iter_final_rows`' rule), by seed id.
_CURRENT = (
    "SELECT CASE WHEN checked IS NOT NULL AND validation IS "
    f"(SELECT value FROM meta WHERE key = '{SETTINGS_KEY}') THEN checked ELSE record END "
    "FROM rows WHERE seed_id = ?"
)


def check_reviewer(name: str) -> str:
    if not _REVIEWER.match(name):
        raise UserError(
            f"--reviewer: '{name}' must be 1-64 letters, digits or . _ - + @ (no spaces)"
        )
    return name


def has_audit(db: sqlite3.Connection) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_samples'"
        ).fetchone()
        is not None
        and db.execute("SELECT 1 FROM audit_samples").fetchone() is not None
    )


def sample_info(db: sqlite3.Connection) -> dict[str, Any] | None:
    if not has_audit(db):
        return None
    seed, verified, rejected, created = db.execute(
        "SELECT seed, verified, rejected, created_at FROM audit_samples"
    ).fetchone()
    return {"seed": seed, "verified": verified, "rejected": rejected, "created_at": created}


def open_audit(run: Path, sample: int | None, seed: int, rejected: int) -> RunStore:
    """The run opened as a writer (its lock held until `close`), with its audit sample:
    the recorded one, or a new one drawn now. A request that contradicts the recorded
    sample is refused rather than silently answered with another."""
    store = RunStore.open_existing(run, writer=True)
    try:
        db = store.database()
        db.executescript(SCHEMA)
        found = sample_info(db)
        if found is None:
            if sample is None:
                raise UserError(f"--sample: required for the first audit of {run} (e.g. 100)")
            _draw(db, run, sample, seed, rejected)
        elif sample is not None and (sample, seed, rejected) != (
            found["verified"],
            found["seed"],
            found["rejected"],
        ):
            raise UserError(
                f"{run}: its audit sample is --sample {found['verified']} --seed "
                f"{found['seed']} --include-rejected {found['rejected']}; give those or no "
                "--sample (every reviewer answers the same sample)"
            )
    except BaseException:
        store.close()
        raise
    return store


def _ids(db: sqlite3.Connection, where: str) -> list[str]:
    return [s for (s,) in db.execute(f"SELECT seed_id FROM rows WHERE {where} ORDER BY seed_id")]


def _draw(db: sqlite3.Connection, run: Path, verified: int, seed: int, rejected: int) -> None:
    """Draw and record the sample and its items in one transaction."""
    settings = db.execute("SELECT value FROM meta WHERE key = ?", (SETTINGS_KEY,)).fetchone()
    settings = settings[0] if settings else None
    pool = _ids(db, "outcome = 'verified'")
    judged = _ids(
        db,
        "outcome = 'rejected' AND checked IS NOT NULL AND validation IS "
        f"(SELECT value FROM meta WHERE key = '{SETTINGS_KEY}') AND dedup IS NOT '' AND "
        "EXISTS (SELECT 1 FROM json_each(checked, '$.reasons') WHERE value LIKE 'judge:%')",
    )
    if len(pool) < verified:
        raise UserError(f"--sample {verified}: {run} has only {len(pool)} verified pairs")
    if len(judged) < rejected:
        raise UserError(
            f"--include-rejected {rejected}: {run} has only {len(judged)} pairs the judge rejected"
        )
    rng = random.Random(f"dvsynth-audit:{seed}")
    chosen = [(s, "verified") for s in rng.sample(pool, verified)]
    chosen += [(s, "rejected") for s in rng.sample(judged, rejected)]
    items = [(s, view, kind, rng.choice("ab")) for s, kind in chosen for view in "ab"]
    rng.shuffle(items)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO audit_samples (id, seed, verified, rejected, settings, created_at) "
            "VALUES (1, ?, ?, ?, ?, ?)",
            (seed, verified, rejected, settings, now),
        )
        db.executemany(
            "INSERT INTO audit_items (item, position, seed_id, view, doc_1, kind) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (f"i{k + 1:04d}", k, s, view, first, kind)
                for k, (s, view, kind, first) in enumerate(items)
            ],
        )


def items(db: sqlite3.Connection) -> list[dict[str, Any]]:
    cols = ("item", "position", "seed_id", "view", "doc_1", "kind")
    return [
        dict(zip(cols, r, strict=True))
        for r in db.execute(f"SELECT {', '.join(cols)} FROM audit_items ORDER BY position")
    ]


def blind_item(db: sqlite3.Connection, item: dict[str, Any]) -> dict[str, Any]:
    """What a reviewer sees of an item: the query, one instruction, two documents."""
    import json

    (record,) = db.execute(_CURRENT, (item["seed_id"],)).fetchone()
    row = json.loads(record)
    first, second = ("doc_a", "doc_b") if item["doc_1"] == "a" else ("doc_b", "doc_a")
    return {
        "item": item["item"],
        "query": row["query"],
        "instruction": row[f"instruction_{item['view']}"] or "",
        "doc_1": row[first],
        "doc_2": row[second],
    }


def answers(db: sqlite3.Connection, reviewer: str | None = None) -> list[dict[str, Any]]:
    cols = ("item", "reviewer", "doc_1", "doc_2", "note", "answered_at", "via")
    sql = f"SELECT {', '.join(cols)} FROM audit_answers"
    args: tuple = ()
    if reviewer is not None:
        sql += " WHERE reviewer = ?"
        args = (reviewer,)
    return [
        dict(zip(cols, r, strict=True))
        for r in db.execute(sql + " ORDER BY answered_at, item", args)
    ]


def record_answer(
    store: RunStore, item: str, reviewer: str, doc_1: str, doc_2: str, note: str, via: str
) -> None:
    """One answer, committed now (a later answer to the same item replaces it)."""
    if doc_1 not in LABELS or doc_2 not in LABELS:
        raise ValueError("each document needs yes, no or unsure")
    db = store.database()
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
    with db:
        db.execute("BEGIN IMMEDIATE")
        if db.execute("SELECT 1 FROM audit_items WHERE item = ?", (item,)).fetchone() is None:
            raise ValueError(f"item '{item}' is not in this run's audit sample")
        db.execute(
            "INSERT OR REPLACE INTO audit_answers (item, reviewer, doc_1, doc_2, note, "
            "answered_at, via) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (item, reviewer, doc_1, doc_2, note[:4000], now, via),
        )


def progress(store: RunStore, reviewer: str) -> dict[str, Any]:
    """Items, how many `reviewer` answered, and the first one still open (or None)."""
    db = store.database()
    total = db.execute("SELECT COUNT(*) FROM audit_items").fetchone()[0]
    answered = db.execute(
        "SELECT COUNT(*) FROM audit_answers a JOIN audit_items i USING (item) WHERE a.reviewer = ?",
        (reviewer,),
    ).fetchone()[0]
    nxt = db.execute(
        "SELECT item FROM audit_items WHERE item NOT IN "
        "(SELECT item FROM audit_answers WHERE reviewer = ?) ORDER BY position LIMIT 1",
        (reviewer,),
    ).fetchone()
    return {"items": total, "answered": answered, "next": nxt[0] if nxt else None}


def report(run: Path) -> dict[str, Any]:
    """The audit's figures (`view.audit_report.figures`) from the run's database."""
    from dvsynth.view.audit_report import figures

    store = RunStore.open_existing(run)
    try:
        data = read_audit(store.database())
    finally:
        store.close()
    if data is None:
        start = f"dvsynth audit {shlex.quote(str(run))} --sample N"
        raise UserError(f"{run}: has no audit; start one with `{start}`")
    return figures(data, str(run))


def read_audit(db: sqlite3.Connection) -> dict[str, Any] | None:
    """The sample, its items with each pair's judge verdicts, and every answer; None
    for a run never audited."""
    import json

    info = sample_info(db)
    if info is None:
        return None
    found = items(db)
    pairs: dict[str, dict[str, Any]] = {}
    for item in found:
        if item["seed_id"] not in pairs:
            (record,) = db.execute(_CURRENT, (item["seed_id"],)).fetchone()
            row = json.loads(record)
            pairs[item["seed_id"]] = {
                "pair_id": row.get("pair_id"),
                "judge": {
                    (v["view"], v["doc"]): v.get("relevant")
                    for v in row.get("verdicts") or []
                    if v.get("doc") in ("a", "b")
                },
            }
    return {"sample": info, "items": found, "pairs": pairs, "answers": answers(db)}


def _audited(run_dirs: list[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(run, its audit as `read_audit` gives it) for each run that has one."""
    for run in run_dirs:
        store = RunStore.open_existing(Path(run))
        try:
            data = read_audit(store.database())
        finally:
            store.close()
        if data is not None:
            yield Path(run), data


def summaries(run_dirs: list[Path]) -> dict[str, Any]:
    """run -> its audit's figures without the list of disagreements (what `stats` and
    the card show), for each run that has an audit; {} when none has."""
    from dvsynth.view.audit_report import figures

    found: dict[str, Any] = {}
    for run, data in _audited(run_dirs):
        result = figures(data, str(run))
        found[str(run)] = {
            "sample": result["sample"],
            "reviewers": sorted(result["reviewers"]),
            "answered": result["answered"],
            "pooled": result["pooled"],
            "reviewer_agreement": result["reviewer_agreement"],
            "disagreements": len(result["disagreements"]),
        }
    return found


def label_rows(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """The `audit` config of an export: one row per answered judgment, reviewers as
    anonymous ids (r1, r2, ... in the order they first answered in each run)."""
    from dvsynth.view.audit_report import intended

    out: list[dict[str, Any]] = []
    for _, data in _audited(run_dirs):
        anonymous: dict[str, str] = {}
        by_item = {i["item"]: i for i in data["items"]}
        for answer in data["answers"]:
            reviewer = anonymous.setdefault(answer["reviewer"], f"r{len(anonymous) + 1}")
            item = by_item[answer["item"]]
            pair = data["pairs"][item["seed_id"]]
            order = ("a", "b") if item["doc_1"] == "a" else ("b", "a")
            for doc, label in zip(order, (answer["doc_1"], answer["doc_2"]), strict=True):
                said = pair["judge"].get((item["view"], doc))
                out.append(
                    {
                        "pair_id": pair["pair_id"],
                        "item": item["item"],
                        "sampled_as": item["kind"],
                        "view": item["view"],
                        "doc": doc,
                        "reviewer": reviewer,
                        "label": label,
                        "intended": intended(item["view"], doc),
                        "judge": None if said is None else ("yes" if said else "no"),
                        "note": answer["note"],
                    }
                )
    out.sort(key=lambda r: (r["pair_id"] or "", r["view"], r["doc"], r["reviewer"]))
    return out
