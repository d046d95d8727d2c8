"""The viewer and the audit in a real browser: headless Chromium (Debian's `chromium`)
driven by Playwright for Python, pointed at the system browser (no browser download).

Skipped when Playwright or a Chromium binary is missing, unless DVSYNTH_REQUIRE_BROWSER
is set (CI sets it where it installs both): then a missing browser fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.viewing import CLI, HOSTILE, cli_server, make_run

CHROMIUM = os.environ.get("DVSYNTH_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None
)


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed"
    if CHROMIUM is None:
        return "no chromium binary (apt-get install chromium)"
    return None


if _missing():
    if os.environ.get("DVSYNTH_REQUIRE_BROWSER"):
        raise RuntimeError(f"DVSYNTH_REQUIRE_BROWSER is set, but {_missing()}")
    pytest.skip(_missing(), allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402 - only where it is installed


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    opened.dialogs = dialogs  # an alert() would mean a hostile passage ran
    yield opened
    context.close()


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("browser"))


@pytest.fixture
def run(origin, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(origin, copy)
    return copy


def _url(process) -> str:
    for _ in range(3):
        found = re.search(r"http://\S+", process.stdout.readline())
        if found:
            return found.group(0)
    raise AssertionError("no URL printed")


def test_overview_reasons_and_pair_in_the_browser(origin, page):
    stats = json.loads(
        subprocess.run([*CLI, "stats", origin, "--json"], capture_output=True, text=True).stdout
    )
    with cli_server("view", origin, "--no-browser") as server:
        base = _url(server)
        page.goto(base)
        funnel = {
            row.locator("td").nth(0).inner_text(): int(row.locator("td").nth(1).inner_text())
            for row in page.locator("tr[data-step]").all()
        }
        assert funnel["seeds (rows)"] == stats["rows"]
        assert funnel["verified"] == stats["verified"]
        assert funnel["judge"] == stats["stages"]["judge"]["passed"]
        reasons = {
            a.inner_text(): int(a.locator("xpath=../..").locator("td.n").inner_text())
            for a in page.locator("a.reason").all()
        }
        assert reasons == stats["reasons"]
        page.locator("a.reason").first.click()
        assert page.locator("#total").inner_text() == str(next(iter(stats["reasons"].values())))
        page.locator("table.rows a").first.click()
        assert page.locator("#instruction_a").inner_text().strip()
        assert page.locator("#instruction_b").inner_text().strip()
        assert page.locator(".grid td").count() == 4
        assert "P(yes)" in page.locator(".grid").inner_text()
        page.goto(base + "pair?src=0&id=s05")
        text = page.locator("main").inner_text()
        assert "<script>alert(1)</script>" in text  # shown as text
        assert "<img src=x onerror=alert(2)>" in text
        assert page.locator("main script, main img").count() == 0
        page.wait_for_timeout(200)  # give a script that slipped through the time to run
        assert page.dialogs == []
        server.send_signal(2)
        server.communicate(timeout=30)


def _truth(run: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(run / "dvsynth.sqlite") as db:
        items = db.execute("SELECT item, view, doc_1 FROM audit_items").fetchall()
    return {
        item: (("yes", "no") if (doc_1 == "a") == (view == "a") else ("no", "yes"))
        for item, view, doc_1 in items
    }


KEYS = {1: {"yes": "a", "no": "s", "unsure": "d"}, 2: {"yes": "j", "no": "k", "unsure": "l"}}


def _answer(page, truth: dict[str, tuple[str, str]], by_click: bool) -> str:
    item = page.locator("#item").inner_text()
    one, two = truth[item]
    assert HOSTILE not in page.content()  # a hostile passage is never markup here either
    with page.expect_navigation():  # the answer is posted, the next item loads
        if by_click:
            page.locator(f'input[name="doc_1"][value="{one}"]').check()
            page.locator(f'input[name="doc_2"][value="{two}"]').check()
            page.locator("#save").click()
        else:
            page.keyboard.press(KEYS[1][one])
            page.keyboard.press(KEYS[2][two])
            page.keyboard.press("Enter")
    return item


def test_an_audit_by_clicks_and_keys_survives_a_kill(run, page, tmp_path):
    with cli_server("audit", run, "--sample", "5", "--reviewer", "web", "--no-browser") as first:
        page.goto(_url(first))
        truth = _truth(run)
        assert len(truth) == 10
        seen = []
        for k in range(4):
            seen.append(_answer(page, truth, by_click=k % 2 == 0))
            assert page.locator("#progress").get_attribute("value") == str(k + 1)
        first.kill()  # mid-audit, no clean stop
        first.wait()
    with cli_server("audit", run, "--reviewer", "web", "--no-browser") as second:
        page.goto(_url(second))
        assert page.locator("#progress").get_attribute("value") == "4"
        assert page.locator("#item").inner_text() not in seen
        for k in range(6):
            _answer(page, truth, by_click=k % 2 == 1)
        assert "All 10 items answered" in page.locator("#done").inner_text()
        second.terminate()
        second.communicate(timeout=30)
    sheet = tmp_path / "audit.csv"
    assert (
        subprocess.run([*CLI, "audit", run, "--sheet", sheet], capture_output=True).returncode == 0
    )
    lines = sheet.read_text(encoding="utf-8").splitlines()
    filled = [lines[0]] + [
        line.replace(",,,", f",{truth[line.split(',')[0]][0]},{truth[line.split(',')[0]][1]},")
        for line in lines[1:]
    ]
    sheet.write_text("\n".join(filled) + "\n", encoding="utf-8")
    done = subprocess.run(
        [*CLI, "audit", run, "--import", sheet, "--reviewer", "sheet"], capture_output=True
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(
        subprocess.run(
            [*CLI, "audit", run, "--report", "--json"], capture_output=True, text=True
        ).stdout
    )
    assert report["reviewers"]["web"] == report["reviewers"]["sheet"]
    assert report["reviewers"]["web"]["true_flip"] == {
        "n": 5,
        "count": 5,
        "share": 1.0,
        "wilson95": [0.5655, 1.0],
    }
