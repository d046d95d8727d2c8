"""The One-pair page's parts: the word-level diff of the two instructions, the 2x2
verdict grid, the instruction check and the other negatives with their view-b verdicts.

Works on the record as a dict (a run's row or an export's), so an export folder that
lacks some fields shows them as absent instead of failing.
"""

from __future__ import annotations

import difflib
from typing import Any

from dvsynth.records import EXPECTED


def word_diff(a: str, b: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(a's pieces, b's pieces), each a list of (kind, text) with kind 'same', 'del'
    (only in a) or 'ins' (only in b); words compared as words, runs kept together,
    pieces joined by single spaces."""
    ta, tb = (a or "").split(), (b or "").split()
    left: list[tuple[str, str]] = []
    right: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if i2 > i1:
            left.append(("same" if op == "equal" else "del", " ".join(ta[i1:i2])))
        if j2 > j1:
            right.append(("same" if op == "equal" else "ins", " ".join(tb[j1:j2])))
    return left, right


def verdict_grid(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows view a, view b; cells doc_a, doc_b: the judge's answer, P(yes), and whether
    it is the label the generator intended."""
    found = {(v.get("view"), v.get("doc")): v for v in record.get("verdicts") or []}
    grid = []
    for view in ("a", "b"):
        cells = []
        for doc in ("a", "b"):
            verdict = found.get((view, doc))
            expected = EXPECTED[(view, doc)]
            if verdict is None:
                cells.append({"doc": doc, "answer": None, "expected": expected})
                continue
            relevant = verdict.get("relevant")
            cells.append(
                {
                    "doc": doc,
                    "answer": "unparsable" if relevant is None else ("yes" if relevant else "no"),
                    "probability": verdict.get("probability"),
                    "expected": expected,
                    "agrees": relevant is expected,
                    "raw": verdict.get("raw"),
                }
            )
        grid.append({"view": view, "cells": cells})
    return grid


def other_negatives(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each other negative with its view-b verdict and whether view b keeps it."""
    verdicts = {v.get("doc_id"): v for v in record.get("verdicts") or [] if v.get("doc") == "other"}
    kept_b = set(record.get("negatives_b") or [])
    out = []
    for doc in record.get("other_negatives") or []:
        verdict = verdicts.get(doc.get("doc_id"))
        relevant = None if verdict is None else verdict.get("relevant")
        out.append(
            {
                "doc": doc,
                "judged": verdict is not None,
                "answer": None if verdict is None else ("yes" if relevant else "no"),
                "probability": None if verdict is None else verdict.get("probability"),
                "in_view_b": doc.get("doc_id") in kept_b,
            }
        )
    return out


def reasons(record: dict[str, Any], dedup: str | None) -> list[str]:
    found = list(record.get("reasons") or [])
    if dedup:
        found.append(dedup)
    return found
