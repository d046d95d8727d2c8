"""Retake the README's screenshots of `dvsynth view` and `dvsynth audit`.

Makes the tests' small validated run on the fake server (judge rejections, a hostile
passage), serves it, and photographs each page with headless Chromium (Debian's
`chromium`, through Playwright; no browser download) into docs/img/.

    python docs/screenshots.py [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.viewing import cli_server, make_run  # noqa: E402 - the tests' run

OUT = ROOT / "docs" / "img"
SIZE = {"width": 1280, "height": 900}


def _url(process) -> str:
    for _ in range(3):
        found = re.search(r"http://\S+", process.stdout.readline())
        if found:
            return found.group(0)
    raise SystemExit("the server printed no URL")


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as driver:
        run = make_run(Path(tmp), 30)
        browser = driver.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport=SIZE)
        with cli_server("view", run, "--no-browser") as server:
            base = _url(server)
            shots = {
                "view-overview.png": base,
                "view-rows.png": base + "rows?outcome=rejected",
                "view-pair.png": base + "pair?outcome=rejected&src=0&id=s13",
            }
            for name, url in shots.items():
                page.goto(url)
                page.screenshot(path=OUT / name, full_page=name != "view-overview.png")
            server.terminate()
            server.wait()
        with cli_server("audit", run, "--sample", "5", "--no-browser") as server:
            page.goto(_url(server))
            page.keyboard.press("a")
            page.screenshot(path=OUT / "audit-item.png")
            server.terminate()
            server.wait()
        browser.close()
    for name in sorted(p.name for p in OUT.glob("*.png")):
        print(OUT / name)


if __name__ == "__main__":
    main()
