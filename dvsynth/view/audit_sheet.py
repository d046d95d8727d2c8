"""The audit without a browser: the blind items as a CSV sheet (for a spreadsheet or an
annotation service), and a filled sheet's answers read back for one reviewer, checked
line by line against the recorded sample before any is written."""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError
from dvsynth.records import doc_text
from dvsynth.runs.store import RunStore
from dvsynth.view.audit import LABELS, SCHEMA, blind_item, has_audit, items

SHEET_COLUMNS = (
    "item",
    "query",
    "instruction",
    "doc_1",
    "doc_2",
    "doc_1_meets",
    "doc_2_meets",
    "note",
)


def _cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: one starting like a formula gets a
    leading apostrophe (documents are untrusted; the import never reads these cells)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_sheet(store: RunStore, path: Path) -> int:
    """The blind items as a CSV with empty answer columns; returns the items written."""
    db = store.database()
    found = items(db)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(SHEET_COLUMNS)
            for item in found:
                shown = blind_item(db, item)
                writer.writerow(
                    [
                        shown["item"],
                        _cell(shown["query"]),
                        _cell(shown["instruction"]),
                        _cell(doc_text_of(shown["doc_1"])),
                        _cell(doc_text_of(shown["doc_2"])),
                        "",
                        "",
                        "",
                    ]
                )
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"--sheet {path}: cannot write ({exc.strerror})") from None
    return len(found)


def doc_text_of(doc: dict[str, Any]) -> str:
    from dvsynth.records import Doc

    return doc_text(Doc.model_validate(doc))


def read_sheet(path: Path, known: set[str]) -> list[dict[str, str]]:
    """The answered lines of a filled sheet; every problem is one line naming the file,
    line and column."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UserError(f"--import {path}: cannot read ({exc.strerror})") from None
    found: list[dict[str, str]] = []
    seen: set[str] = set()
    with handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
            for column in ("item", "doc_1_meets", "doc_2_meets"):
                if column not in header:
                    raise UserError(f"{path}: line 1: no column '{column}'")
            for row in reader:
                line = reader.line_num
                item = (row.get("item") or "").strip()
                if item not in known:
                    raise UserError(
                        f"{path}: line {line}: column item: '{item}' is not in this run's "
                        "audit sample"
                    )
                if item in seen:
                    raise UserError(f"{path}: line {line}: column item: '{item}' is given twice")
                seen.add(item)
                values = {}
                for column in ("doc_1_meets", "doc_2_meets"):
                    value = (row.get(column) or "").strip().lower()
                    if value not in ("", *LABELS):
                        raise UserError(
                            f"{path}: line {line}: column {column}: '{row.get(column)}' is not "
                            "yes, no or unsure"
                        )
                    values[column] = value
                if not any(values.values()):
                    continue  # not answered yet
                for column, value in values.items():
                    if not value:
                        raise UserError(
                            f"{path}: line {line}: column {column}: empty, but the other "
                            "document is answered (give yes, no or unsure for both)"
                        )
                found.append(
                    {
                        "item": item,
                        "doc_1": values["doc_1_meets"],
                        "doc_2": values["doc_2_meets"],
                        "note": (row.get("note") or "").strip(),
                    }
                )
        except csv.Error as exc:
            raise UserError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text") from None
    return found


def import_sheet(run: Path, path: Path, reviewer: str) -> dict[str, int]:
    """A filled sheet's answers for `reviewer`, all in one transaction (a bad line
    imports nothing)."""
    store = RunStore.open_existing(run, writer=True)
    try:
        db = store.database()
        db.executescript(SCHEMA)
        if not has_audit(db):
            raise UserError(f"{run}: has no audit sample; draw one with --sample N first")
        known = {i["item"] for i in items(db)}
        found = read_sheet(path, known)
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO audit_answers (item, reviewer, doc_1, doc_2, note, "
                "answered_at, via) VALUES (?, ?, ?, ?, ?, ?, 'sheet')",
                [(a["item"], reviewer, a["doc_1"], a["doc_2"], a["note"], now) for a in found],
            )
        return {"answered": len(found), "blank": len(known) - len(found)}
    finally:
        store.close()
