"""The in-memory key filters that let fresh rows skip two SQLite reads (issue 18) never
hide a stored key: not one there at open, not one written since, by the row commit, the
cache or the batch ledger."""

from __future__ import annotations

import json
import random
import string

from dvsynth.records import DualView, Provenance
from dvsynth.runs.key_filter import KeyFilter
from dvsynth.runs.store import RunStore


def make_row(i: int, status: str = "kept") -> DualView:
    provenance = Provenance(
        generator_model="m", prompt_name="p", prompt_sha256="x", dvsynth_version="0", created_at="t"
    )
    doc = {"doc_id": "d", "text": "Some passage text."}
    return DualView(
        pair_id=f"p{i}", seed_id=f"s{i}", query=f"q{i}", instruction_a="a", doc_a=doc,
        instruction_b="b", doc_b=doc, mode="bootstrap", status=status, provenance=provenance,
    )  # fmt: skip


def _keys(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(string.ascii_letters + string.digits, k=24)) for _ in range(n)]


def test_no_key_added_is_ever_reported_absent_and_few_others_are_present():
    added, others = _keys(50_000, 1), _keys(50_000, 2)
    keys = KeyFilter(added[:20_000], expected=20_000)
    for key in added[20_000:]:
        keys.add(key)
    assert all(key in keys for key in added)
    false_positives = sum(key in keys for key in others) / len(others)
    assert false_positives < 0.01


def _store(tmp_path) -> RunStore:
    return RunStore.open(tmp_path / "run", {"identity": {}, "identity_sha256": "x"})


def test_rows_there_at_open_and_rows_put_since_are_found(tmp_path):
    store = _store(tmp_path)
    store.put_rows([(make_row(0), 0)])
    store.close()

    store = RunStore.open_existing(tmp_path / "run")
    assert store.generated_status("s0") == "kept"  # there at open
    assert store.generated_status("s1") is None  # the filter is built now
    store.put_rows([(make_row(1, "failed"), 1)])
    assert store.generated_status("s1") == "failed"  # put since
    store.close()


def test_answers_committed_by_rows_and_by_the_batch_ledger_are_found(tmp_path):
    store = _store(tmp_path)
    assert store.get_response("k-row") is None  # the filter is built now, empty
    store.put_response("k-row", {"text": "a"})
    store.put_rows([(make_row(0), 0)])
    assert store.get_response("k-row") == {"text": "a"}

    ledger = store.ledger()
    ledger.record([], [("k-batch", json.dumps({"text": "b"}))])
    assert store.get_response("k-batch") == {"text": "b"}
    store.close()

    store = RunStore.open_existing(tmp_path / "run")
    assert store.get_response("k-batch") == {"text": "b"}  # there at open
    assert store.get_response("k-none") is None
    store.close()
