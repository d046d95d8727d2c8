"""`dvsynth view`: the pages over a run and an export, their numbers against `stats`,
paging and filters in SQL, untrusted text rendered as text, and the token guard."""

from __future__ import annotations

import html
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

from dvsynth.runs.stats import compute_stats
from dvsynth.view.queries import Catalog, Filter
from tests.viewing import CLI, TOKEN, cli_server, make_run, pair_links, viewing


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("view"))


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "data"
    done = subprocess.run(
        [*CLI, "export", str(run), "--out", str(out), "--license", "cc-by-4.0"],
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    return out


def _pair_id(run, seed_id: str) -> str:
    with sqlite3.connect(run / "dvsynth.sqlite") as db:
        (record,) = db.execute("SELECT record FROM rows WHERE seed_id = ?", (seed_id,)).fetchone()
    return json.loads(record)["pair_id"]


def _cells(page: str, attribute: str) -> dict[str, str]:
    """step -> its row count, from the overview's funnel table."""
    found = re.findall(rf'<tr {attribute}="([^"]+)"><td>[^<]*</td><td class="n">(\d+)</td>', page)
    return {html.unescape(k): int(v) for k, v in found}


def test_overview_funnel_and_reasons_equal_stats(run):
    with viewing(run) as pages:
        [(status, page, _)] = pages.get(f"/{TOKEN}/")
    assert status == 200
    stats = compute_stats([run])
    funnel = _cells(page, "data-step")
    assert funnel["seeds (rows)"] == stats["rows"] == 30
    assert funnel["verified"] == stats["verified"]
    for name, stage in stats["stages"].items():
        label = "generated" if name == "generate" else name
        assert funnel[label] == stage["passed"]
    assert stats["reasons"], "the fixture must have rejections"
    for reason, count in stats["reasons"].items():
        assert f'<code>{html.escape(reason)}</code></a></td><td class="n">{count}</td>' in page
    assert "<svg" in page and "http" not in page.split("<main>")[1].split("Settings")[0]


def test_a_reason_link_lists_exactly_its_rows(run):
    with viewing(run) as pages:
        [(_, page, _)] = pages.get(f"/{TOKEN}/")
        reason, count = next(iter(compute_stats([run])["reasons"].items()))
        link = re.search(r'href="(/[^"]+/rows\?reason=[^"]+)"', page).group(1)
        [(status, rows, _)] = pages.get(html.unescape(link))
    assert status == 200
    assert f'<span id="total">{count}</span>' in rows
    assert len(pair_links(rows)) == count
    assert rows.count(f"<code>{reason}</code>") == count


def test_pages_cover_every_row_once_in_order(run):
    catalog = Catalog([run / "dvsynth.sqlite"])
    try:
        every = Filter()
        seen = [r.seed_id for page in range(5) for r in catalog.page(every, page, size=7)]
        assert seen == [f"s{i:02d}" for i in range(30)]
        assert catalog.count(every) == 30
        assert catalog.page(every, 5, size=7) == []
    finally:
        catalog.close()


def test_filters_by_outcome_mode_stage_and_text(run):
    catalog = Catalog([run / "dvsynth.sqlite"])
    try:
        rejected = {r.seed_id for r in catalog.page(Filter(outcome="rejected"), 0)}
        assert rejected == {"s03", "s13", "s23"}
        assert catalog.count(Filter(outcome="verified")) == 27
        assert catalog.count(Filter(mode="bootstrap")) == 30
        assert catalog.count(Filter(mode="reverse")) == 0
        assert catalog.count(Filter(stage="judge")) == 3
        assert catalog.count(Filter(stage="verified", outcome="verified")) == 27
        assert [r.seed_id for r in catalog.page(Filter(q="QUERY NUMBER 17"), 0)] == ["s17"]
        assert catalog.count(Filter(q="%")) == catalog.count(Filter(q="_")) == 0  # as text
        assert catalog.count(Filter(q='"mode"')) == 0  # only query and instructions
        assert catalog.count(Filter(q="kwp5")) == 1  # in an instruction (#kwp5)
        assert catalog.count(Filter(reason="judge")) == 3  # a prefix matches its family
        assert catalog.count(Filter(reason="judge:view_a:doc_b_relevant")) == 3
        assert catalog.count(Filter(reason="judge:view_a:doc_b")) == 0  # not a partial word
    finally:
        catalog.close()


def test_bad_filters_and_pages_are_refused(run):
    with viewing(run) as pages:
        answers = pages.get(
            f"/{TOKEN}/rows?outcome=nope",
            f"/{TOKEN}/rows?page=0",
            f"/{TOKEN}/rows?run=4",
            f"/{TOKEN}/pair?src=9&id=s00",
            f"/{TOKEN}/pair?src=0&id=missing",
            f"/{TOKEN}/rows?page=99",
            f"/{TOKEN}/rows?page={'9' * 40}",
        )
    assert [a[0] for a in answers] == [400, 400, 400, 400, 404, 200, 400]
    assert "outcome 'nope'" in answers[0][1]


def test_pair_page_shows_both_views_verdicts_and_neighbours(run):
    with viewing(run) as pages:
        [(status, page, _)] = pages.get(f"/{TOKEN}/pair?outcome=rejected&src=0&id=s13")
    assert status == 200
    assert 'id="instruction_a"' in page and 'id="instruction_b"' in page
    assert "kwp13 passage about topic 13" in page and "kwn13 other passage 13" in page
    assert "<del>" in page and "<ins>" in page  # the word-level diff
    assert "P(yes) 0.90" in page and 'class="disagree"' in page  # view a said yes to doc_b
    assert "judge:view_a:doc_b_relevant" in page
    assert "Lever:" in page  # the generator's raw answer
    assert "unrelated passage 13" in page  # another negative, with its view-b verdict
    prev = re.search(r'rel="prev" href="[^"]*id=(\w+)"', page).group(1)
    nxt = re.search(r'rel="next" href="[^"]*id=(\w+)"', page).group(1)
    assert (prev, nxt) == ("s03", "s23")  # within the filter, not all rows
    assert "2 of 3 in this filter" in page


def test_hostile_text_renders_as_text_everywhere(run, exported):
    with viewing(run, exported) as pages:
        pages = pages.get(
            f"/{TOKEN}/",
            f"/{TOKEN}/rows",
            f"/{TOKEN}/rows?q=script",
            f"/{TOKEN}/pair?src=0&id=s05",
            f"/{TOKEN}/pair?src=1&id={_pair_id(run, 's05')}",
        )
    escaped = html.escape("<script>alert(1)</script>", quote=False)
    for status, page, headers in pages:
        assert status == 200
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "</textarea>" not in page
        assert "script-src 'self'" in headers["Content-Security-Policy"]
    for _, page, _ in pages[2:]:
        assert escaped in page  # shown, as text
    assert pages[3][1].count("&lt;img src=x onerror=alert(2)&gt;") >= 2  # doc and negative


def test_the_token_is_required(run):
    with viewing(run) as pages:
        answers = pages.get(
            "/",
            "/rows",
            f"/{TOKEN[:-1]}/",
            f"/{TOKEN}x/rows",
            "/wrong/static/view.css",
            f"/{TOKEN}/static/view.css",
            f"/{TOKEN}",
        )
    assert [a[0] for a in answers] == [403, 403, 403, 403, 403, 200, 200]
    assert "kwp" not in "".join(a[1] for a in answers[:5])


def test_an_export_folder_is_browsed_the_same_way(exported):
    with viewing(exported) as pages:
        overview, rejected = pages.get(f"/{TOKEN}/", f"/{TOKEN}/rows?outcome=rejected")
        src, key = pair_links(rejected[1])[0]
        [pair] = pages.get(f"/{TOKEN}/pair?src={src}&id={key}")
    assert overview[0] == rejected[0] == pair[0] == 200
    assert '<span id="total">3</span>' in rejected[1]
    assert "judge:view_a:doc_b_relevant" in pair[1]
    assert "text not in this source" in pair[1]  # the export keeps a rejected row's ids only


def test_reads_without_writing_and_a_reload_shows_new_rows(run, tmp_path):
    from dvsynth.runs.store import RunStore

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "dvsynth.sqlite").read_bytes()
    with viewing(copy) as pages:
        [(_, first, _)] = pages.get(f"/{TOKEN}/rows")
        assert (copy / "dvsynth.sqlite").read_bytes() == before
        store = RunStore.open_existing(copy, writer=True)  # a writer while the page is open
        try:
            row = next(store.iter_rows()).model_copy(update={"seed_id": "zz-new", "pair_id": "new"})
            store.put_rows([(row, 99)])
            [(_, second, _)] = pages.get(f"/{TOKEN}/rows")
            overviews = [pages.get(f"/{TOKEN}/")[0][1]]
            while 'id="stale"' in overviews[-1] and len(overviews) < 200:
                time.sleep(0.05)  # the overview's pass runs beside the server
                overviews.append(pages.get(f"/{TOKEN}/")[0][1])
        finally:
            store.close()
    assert '<span id="total">30</span>' in first
    assert '<span id="total">31</span>' in second and "zz-new" in second
    new = '<tr data-step="seeds (rows)"><td>seeds (rows)</td><td class="n">31</td>'
    old = '<tr data-step="seeds (rows)"><td>seeds (rows)</td><td class="n">30</td>'
    for page in overviews[:-1]:  # while it is read again: the old figures, said to be old
        assert 'id="stale"' in page and old in page
    assert new in overviews[-1] and 'id="stale"' not in overviews[-1]


def test_several_runs_filter_by_run(run, tmp_path):
    copy = tmp_path / "other"
    shutil.copytree(run, copy)
    with sqlite3.connect(copy / "dvsynth.sqlite") as db:
        db.execute("DELETE FROM rows WHERE seed_id > 's09'")
    with viewing(run, copy) as pages:
        everything, second = pages.get(f"/{TOKEN}/rows", f"/{TOKEN}/rows?run=1")
    assert '<span id="total">40</span>' in everything[1]
    assert '<span id="total">10</span>' in second[1]
    assert {src for src, _ in pair_links(second[1])} == {"1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["view", "/nonexistent/run"], "/nonexistent/run: no such run directory"),
        (["view", "{tmp}"], "not a dvsynth run directory"),
        (["view", "{run}", "--host", ""], "--host: empty"),
    ],
)
def test_bad_view_input_is_one_line(run, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, run=run) for a in args]
    done = subprocess.run([*CLI, *args, "--no-browser"], capture_output=True, text=True)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_serves_until_interrupted_and_stops_cleanly(run):
    with cli_server("view", run, "--no-browser") as process:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/\S+/", line).group(0)
        with urllib.request.urlopen(url + "rows") as response:
            assert response.status == 200 and b"s00" in response.read()
        wrong = url.rsplit("/", 2)[0] + "/nottoken/"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong)
        assert refused.value.code == 403
        process.send_signal(2)  # SIGINT, what Ctrl-C sends
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_a_non_local_host_says_the_token_is_the_guard(run):
    with cli_server("view", run, "--no-browser", "--host", "0.0.0.0") as process:
        warning = process.stdout.readline()
        served = process.stdout.readline()
        process.terminate()
        process.communicate(timeout=30)
    assert "token is the only guard" in warning
    assert re.search(r"http://0\.0\.0\.0:\d+/[\w-]{20,}/", served)
    assert process.returncode == 0


def test_view_never_imports_a_network_asset():
    from pathlib import Path

    folder = Path(sys.modules["dvsynth.view.server"].__file__).parent
    for path in [*folder.glob("templates/*.html"), *folder.glob("static/*")]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
        assert "@import" not in text and "url(" not in text, path
    time.sleep(0)  # nothing to wait for: the check is on the bundled files
