"""`dvsynth audit`: a reproducible blind sample in the run's database, answers committed
one by one (a kill loses none), several reviewers, the sheet and its import, the report's
figures against a hand computation, and the audit in `stats` and the card."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import sqlite3
import subprocess
import urllib.parse
import urllib.request

import pytest

from dvsynth.view import audit
from dvsynth.view.audit_pages import audit_app
from dvsynth.view.audit_report import figures, kappa, wilson
from dvsynth.view.audit_sheet import SHEET_COLUMNS
from tests.viewing import CLI, TOKEN, Pages, cli_server, make_run, viewing


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("audit"))


@pytest.fixture
def run(origin, tmp_path):
    """A fresh copy of the validated run for each test (audits write the run)."""
    copy = tmp_path / "run"
    shutil.copytree(origin, copy)
    return copy


def dvsynth(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True)


def truth(db: sqlite3.Connection, item: dict) -> tuple[str, str]:
    """The intended (doc_1, doc_2) answers of an item: its view's own doc meets the need."""
    first_is_a = item["doc_1"] == "a"
    own_first = first_is_a == (item["view"] == "a")
    return ("yes", "no") if own_first else ("no", "yes")


def test_the_sample_is_reproducible_recorded_and_blind(run, tmp_path, origin):
    other = tmp_path / "again"
    shutil.copytree(origin, other)
    store = audit.open_audit(run, 5, 7, 2)
    again = audit.open_audit(other, 5, 7, 2)
    try:
        first, second = audit.items(store.database()), audit.items(again.database())
        assert first == second and len(first) == 14
        kinds = {i["seed_id"]: i["kind"] for i in first}
        assert sum(k == "verified" for k in kinds.values()) == 5
        assert {s for s, k in kinds.items() if k == "rejected"} <= {"s03", "s13", "s23"}
        assert {i["doc_1"] for i in first} == {"a", "b"}  # the order is drawn per item
        pages = Pages(audit_app(store, ["ann"], TOKEN))
        try:
            status, page, _ = pages.request("GET", f"/{TOKEN}/audit")
        finally:
            pages.close()
        assert status == 200
        shown = audit.blind_item(store.database(), first[0])
        assert shown["query"].split()[0] in page
        for hint in ("doc_a", "doc_b", "verified", "rejected", "judge", "P(yes)", "view a"):
            assert hint not in page
        assert first[0]["seed_id"] not in page
    finally:
        store.close()
        again.close()
    other_seed = tmp_path / "seed8"
    shutil.copytree(origin, other_seed)
    store = audit.open_audit(other_seed, 5, 8, 2)
    try:
        assert audit.items(store.database()) != first
    finally:
        store.close()


def test_a_contradicting_or_impossible_sample_is_one_line(run):
    for args, message in [
        (["--sample", "500"], "has only 27 verified pairs"),
        (["--sample", "2", "--include-rejected", "9"], "has only 3 pairs the judge rejected"),
        ([], "--sample: required for the first audit"),
        (["--sample", "2", "--reviewer", "a b"], "--reviewer: 'a b'"),
        (["--sample", "2", "--report"], "--report"),
    ]:
        done = dvsynth("audit", run, *args, "--no-browser", "--sheet" if not args else "--port", 0)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert dvsynth("audit", run, "--sample", "3", "--sheet", run.parent / "s.csv").returncode == 0
    done = dvsynth("audit", run, "--sample", "4", "--sheet", run.parent / "s.csv")
    assert done.returncode == 2 and "its audit sample is --sample 3 --seed 0" in done.stderr


def _audit_url(process) -> str:
    return re.search(r"http://\S+", process.stdout.readline()).group(0)


def test_browser_answers_are_committed_and_resume_after_a_kill(run):
    assert dvsynth("audit", run, "--sample", "3", "--sheet", run.parent / "s.csv").returncode == 0
    with cli_server("audit", run, "--reviewer", "ann", "--no-browser") as process:
        assert "0 of 6 items answered by ann" in process.stdout.readline()
        url = _audit_url(process)
        for _ in range(2):
            with urllib.request.urlopen(url) as response:
                item = re.search(r'name="item" value="(i\d+)"', response.read().decode()).group(1)
            form = urllib.parse.urlencode({"item": item, "doc_1": "yes", "doc_2": "no"}).encode()
            with urllib.request.urlopen(url + "/answer", data=form) as response:
                assert response.status == 200  # redirected to the next item
        process.kill()  # no clean stop: the answers given must all be there
        process.wait()
    with sqlite3.connect(run / "dvsynth.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM audit_answers").fetchone()[0] == 2
    with cli_server("audit", run, "--reviewer", "ann", "--no-browser") as restarted:
        assert "2 of 6 items answered by ann" in restarted.stdout.readline()
        with urllib.request.urlopen(_audit_url(restarted)) as response:
            page = response.read().decode()
        assert "2 of 6 answered" in page and 'value="2"' in page
        restarted.terminate()
        restarted.communicate(timeout=30)
    assert restarted.returncode == 0


def test_one_server_takes_several_reviewers_at_once(run):
    assert dvsynth("audit", run, "--sample", "2", "--sheet", run.parent / "s.csv").returncode == 0
    done = dvsynth(
        "audit", run, "--import", run.parent / "s.csv", "--reviewer", "a", "--reviewer", "b"
    )
    assert done.returncode == 2 and "--import: give the one --reviewer" in done.stderr
    with cli_server(
        "audit", run, "--reviewer", "ann", "--reviewer", "bob", "--no-browser"
    ) as server:
        assert "answered by ann" in server.stdout.readline()
        assert "answered by bob" in server.stdout.readline()
        urls = [_audit_url(server), _audit_url(server)]
        assert [u.rsplit("/", 1)[1] for u in urls] == ["ann", "bob"]
        for url, label in zip(urls, ("yes", "no"), strict=True):
            form = urllib.parse.urlencode({"item": "i0001", "doc_1": label, "doc_2": label})
            with urllib.request.urlopen(url + "/answer", data=form.encode()) as response:
                assert response.status == 200
        server.terminate()
        server.communicate(timeout=30)
    with sqlite3.connect(run / "dvsynth.sqlite") as db:
        found = db.execute("SELECT reviewer, doc_1 FROM audit_answers ORDER BY reviewer").fetchall()
    assert found == [("ann", "yes"), ("bob", "no")]


def test_the_run_is_locked_while_audited(run):
    from dvsynth.runs.lock import RunLocked

    store = audit.open_audit(run, 2, 0, 0)
    try:
        process = dvsynth("audit", run, "--report")  # a reader: allowed
        assert process.returncode == 0, process.stderr
        done = dvsynth("audit", run, "--import", run / "x.csv", "--reviewer", "b")
        assert done.returncode == 2 and "is writing this run" in done.stderr
    finally:
        store.close()
    assert RunLocked  # the refusal above is the lock's own message


def _answer_all(store, reviewer: str, wrong: set[str] = frozenset()) -> None:
    """Answer every item as intended, except items in `wrong` (both docs flipped)."""
    db = store.database()
    for item in audit.items(db):
        one, two = truth(db, item)
        if item["item"] in wrong:
            one, two = two, one
        audit.record_answer(store, item["item"], reviewer, one, two, "", via="test")


def test_several_reviewers_and_their_agreement(run):
    store = audit.open_audit(run, 4, 0, 0)
    try:
        first = audit.items(store.database())[0]["item"]
        _answer_all(store, "ann")
        _answer_all(store, "bob", wrong={first})
        assert audit.progress(store, "ann")["answered"] == 8
        assert audit.progress(store, "cat") == {"items": 8, "answered": 0, "next": "i0001"}
    finally:
        store.close()
    result = audit.report(run)
    assert result["reviewers"]["ann"]["true_flip"]["share"] == 1.0
    assert result["reviewers"]["bob"]["true_flip"]["share"] == 0.75
    assert result["pooled"]["true_flip"]["n"] == 8  # every reviewer's pairs
    [pair] = result["reviewer_agreement"]
    assert pair["reviewers"] == ["ann", "bob"] and pair["labels"] == 16
    assert pair["kappa"] == kappa(
        [("yes", "yes")] * 7 + [("no", "no")] * 7 + [("yes", "no"), ("no", "yes")]
    )
    assert {d["people"]["bob"] for d in result["disagreements"]} == {"yes", "no"}
    assert len(result["disagreements"]) == 2
    with viewing(run) as pages:  # the viewer's overview shows the audit, linked to pairs
        [(_, overview, _)] = pages.get(f"/{TOKEN}/")
        links = re.findall(r'<a href="(/[^"]+/pair\?src=0&amp;id=(\w+))">', overview)
        assert {seed for _, seed in links} == {result["disagreements"][0]["seed_id"]}
        assert "100.0% (4 of 4" in overview and "75.0% (3 of 4" in overview
        [(status, pair, _)] = pages.get(html.unescape(links[0][0]))
    assert status == 200 and 'id="instruction_a"' in pair


def test_wilson_and_kappa_by_hand():
    assert wilson(8, 10) == (0.4902, 0.9433)  # the textbook example: 0.490 to 0.943
    assert wilson(0, 0) is None
    assert wilson(10, 10) == (0.7225, 1.0)
    # 20 items: both yes 7, both no 8, a-yes b-no 3, a-no b-yes 2 -> po .75, pe .5
    pairs = [("yes", "yes")] * 7 + [("no", "no")] * 8 + [("yes", "no")] * 3 + [("no", "yes")] * 2
    assert kappa(pairs) == 0.5
    assert kappa([("yes", "yes")] * 4) is None  # undefined, not 0 or 1


def test_report_equals_a_hand_computation():
    """Two verified pairs and one rejected, two reviewers; every figure worked out."""
    items = [
        {"item": "i1", "seed_id": "p", "view": "a", "doc_1": "a", "kind": "verified"},
        {"item": "i2", "seed_id": "p", "view": "b", "doc_1": "a", "kind": "verified"},
        {"item": "i3", "seed_id": "q", "view": "a", "doc_1": "b", "kind": "verified"},
        {"item": "i4", "seed_id": "q", "view": "b", "doc_1": "b", "kind": "verified"},
        {"item": "i5", "seed_id": "r", "view": "a", "doc_1": "a", "kind": "rejected"},
        {"item": "i6", "seed_id": "r", "view": "b", "doc_1": "a", "kind": "rejected"},
    ]
    intended = {"a": ("yes", "no"), "b": ("no", "yes")}  # (doc_a, doc_b) per view

    def said(reviewer, item, doc_a, doc_b):
        first, second = (doc_a, doc_b) if item["doc_1"] == "a" else (doc_b, doc_a)
        return {"item": item["item"], "reviewer": reviewer, "doc_1": first, "doc_2": second,
                "note": "", "answered_at": "2026-01-02T00:00:00", "via": "test"}  # fmt: skip

    answers = [said("ann", i, *intended[i["view"]]) for i in items]  # all as intended
    # bob: p as intended; q view b with both docs "yes"; r view a with both docs "yes"
    bob = [*intended["a"], *intended["b"], *intended["a"], "yes", "yes", "yes", "yes", "no", "yes"]
    answers += [said("bob", i, bob[2 * k], bob[2 * k + 1]) for k, i in enumerate(items)]
    judge = {
        "p": {("a", "a"): True, ("a", "b"): False, ("b", "b"): True, ("b", "a"): False},
        "q": {("a", "a"): True, ("a", "b"): False, ("b", "b"): True, ("b", "a"): False},
        "r": {("a", "a"): True, ("a", "b"): True, ("b", "b"): True, ("b", "a"): False},
    }
    data = {
        "sample": {"seed": 0, "verified": 2, "rejected": 1, "created_at": "2026-01-01"},
        "items": items,
        "pairs": {s: {"pair_id": s.upper(), "judge": j} for s, j in judge.items()},
        "answers": answers,
    }
    result = figures(data)
    ann, bob_fig = result["reviewers"]["ann"], result["reviewers"]["bob"]
    assert ann["true_flip"]["share"] == 1.0 and ann["true_flip"]["n"] == 2
    assert bob_fig["true_flip"]["count"] == 1  # q's view b: doc_b yes but doc_a yes too
    assert bob_fig["view_accuracy"]["view_a"]["share"] == 1.0
    assert bob_fig["view_accuracy"]["view_b"]["share"] == 0.5
    assert ann["rejected_found_good"]["share"] == 1.0  # ann: r is a good pair
    assert bob_fig["rejected_found_good"]["share"] == 0.0  # bob: view a fails on r
    assert result["pooled"]["true_flip"] == {
        "n": 4,
        "count": 3,
        "share": 0.75,
        "wilson95": wilson(3, 4),
    }
    # judge vs people on view a / doc b, pooled over 6 (reviewer, pair) units:
    # the judge said no, no, yes (p, q, r) to both; ann no, no, no; bob no, no, yes
    k = result["pooled"]["judge_kappa"]["view_a:doc_b"]
    assert k["n"] == 6 and k["agreement"] == round(5 / 6, 4)
    # po = 5/6; judge yes 2/6, people yes 1/6 -> pe = (2*1 + 4*5)/36 = 22/36; (30-22)/(36-22)
    assert k["kappa"] == round(8 / 14, 4)
    assert k["kappa"] == kappa([("no", "no")] * 4 + [("yes", "no"), ("yes", "yes")])
    # view b / doc a: judge no everywhere; bob said yes on q -> kappa 0 by chance alone
    assert result["pooled"]["judge_kappa"]["view_b:doc_a"]["kappa"] == 0.0
    [agreement] = result["reviewer_agreement"]
    assert agreement["labels"] == 12
    assert agreement["kappa"] == kappa(
        [(a["doc_1"], b["doc_1"]) for a, b in zip(answers[:6], answers[6:], strict=True)]
        + [(a["doc_2"], b["doc_2"]) for a, b in zip(answers[:6], answers[6:], strict=True)]
    )


def test_a_sheet_round_trip_gives_the_browser_report(run, tmp_path):
    sheet = tmp_path / "audit.csv"
    done = dvsynth("audit", run, "--sample", "4", "--include-rejected", "1", "--sheet", sheet)
    assert done.returncode == 0, done.stderr
    with sheet.open(encoding="utf-8", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert list(lines[0]) == list(SHEET_COLUMNS) and len(lines) == 10
    assert all(not (line["doc_1_meets"] or line["doc_2_meets"]) for line in lines)
    store = audit.open_audit(run, None, 0, 0)
    try:
        db = store.database()
        wanted = {i["item"]: truth(db, i) for i in audit.items(db)}
        wrong = audit.items(db)[3]["item"]
        pages = Pages(audit_app(store, ["web", "other"], TOKEN))
        try:
            for item, (one, two) in wanted.items():
                if item == wrong:
                    one, two = "unsure", two
                status, page, _ = pages.request(
                    "POST",
                    f"/{TOKEN}/audit/web/answer",
                    {"item": item, "doc_1": one, "doc_2": two, "note": "<b>n</b>"},
                )
                assert status == 200
            assert "All 10 items answered" in page
            status, _, _ = pages.request(
                "POST",
                f"/{TOKEN}/audit/web/answer",
                {"item": "i9999", "doc_1": "yes", "doc_2": "no"},
            )
            assert status == 400
            status, page, _ = pages.request("GET", f"/{TOKEN}/audit/other")
            assert status == 200 and "0 of 10 answered" in page  # its own answers, apart
            status, _, _ = pages.request("GET", f"/{TOKEN}/audit/nobody")
            assert status == 404
        finally:
            pages.close()
    finally:
        store.close()
    for line in lines:
        one, two = wanted[line["item"]]
        line["doc_1_meets"] = "unsure" if line["item"] == wrong else one
        line["doc_2_meets"], line["note"] = two, "<b>n</b>"
    with sheet.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SHEET_COLUMNS)
        writer.writeheader()
        writer.writerows(lines)
    done = dvsynth("audit", run, "--import", sheet, "--reviewer", "sheet")
    assert done.returncode == 0 and "imported 10 answers of sheet" in done.stdout
    report = json.loads(dvsynth("audit", run, "--report", "--json").stdout)
    assert report["reviewers"]["web"] == report["reviewers"]["sheet"]
    assert report["reviewers"]["web"]["true_flip"]["n"] == 4
    [agreement] = report["reviewer_agreement"]
    assert agreement["kappa"] == 1.0


def test_a_bad_sheet_is_one_line_and_imports_nothing(run, tmp_path):
    sheet = tmp_path / "audit.csv"
    assert dvsynth("audit", run, "--sample", "2", "--sheet", sheet).returncode == 0
    good = sheet.read_text(encoding="utf-8").splitlines()
    header, first, second = good[0], good[1], good[2]
    cases = [
        (
            [header, first.replace(",,,", ",yes,no,"), "i9999,q,i,d1,d2,yes,no,"],
            "line 3: column item",
        ),
        ([header, first.replace(",,,", ",maybe,no,")], "line 2: column doc_1_meets: 'maybe'"),
        ([header, first.replace(",,,", ",yes,,")], "line 2: column doc_2_meets: empty"),
        ([header.replace("doc_2_meets", "x"), first], "line 1: no column 'doc_2_meets'"),
        (
            [header, first.replace(",,,", ",yes,no,"), first],
            "line 3: column item: 'i0001' is given twice",
        ),
    ]
    for lines, message in cases:
        bad = tmp_path / "bad.csv"
        bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
        done = dvsynth("audit", run, "--import", bad, "--reviewer", "x")
        assert done.returncode == 2, done.stdout
        assert f"{bad}: {message}" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    with sqlite3.connect(run / "dvsynth.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM audit_answers").fetchone()[0] == 0
    assert second  # the sheet has one line per item


def test_stats_and_the_card_carry_the_audit(run, tmp_path):
    out = tmp_path / "data"
    export = ["export", run, "--out", out, "--license", "cc-by-4.0"]
    assert dvsynth(*export).returncode == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "No person audited this data" in card and not (out / "audit").exists()
    store = audit.open_audit(run, 4, 0, 0)
    try:
        _answer_all(store, "ann-q7")
        _answer_all(store, "bob-q7", wrong={audit.items(store.database())[0]["item"]})
    finally:
        store.close()
    stats = json.loads(dvsynth("stats", run, "--json").stdout)
    [found] = stats["audit"].values()
    assert found["reviewers"] == ["ann-q7", "bob-q7"] and found["pooled"]["true_flip"]["n"] == 8
    assert dvsynth(*export).returncode == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Audit" in card and "No person audited" not in card
    assert "2 reviewers" in card and "ann-q7" not in card
    assert "True flip" in card and "87.5% (7 of 8" in card
    import datasets

    labels = datasets.load_dataset(str(out), "audit", split="train")
    assert len(labels) == 32 and set(labels["reviewer"]) == {"r1", "r2"}
    assert dvsynth(*export, "--credit-reviewers").returncode == 0
    assert "2 reviewers: ann-q7, bob-q7" in (out / "README.md").read_text(encoding="utf-8")
