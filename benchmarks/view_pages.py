"""How fast `dvsynth view` answers on a large run, and how much memory it holds.

Makes a validated run of 50 seeds against the fake server, multiplies its rows in SQL
to --rows (new seed and pair ids, the same texts), serves it with `dvsynth view`, and
times each page: time to first byte and to the whole page, medians of --repeats. The
first overview is timed apart (it counts every row once, in the background: the page
says how far it got until the figures are there; later ones are cached and only the
chunks a change touched are counted again); so is a search and the overview right
after one row changed. Peak RSS is the server's (VmHWM). Raw JSON: benchmarks/out/.

    python benchmarks/view_pages.py --rows 100000 --rows 10000
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.viewing import CLI, make_run  # noqa: E402 - the tests' run, grown


def grow(run: Path, rows: int) -> None:
    """Copies of the run's rows until it holds `rows` (each with its own ids)."""
    db = sqlite3.connect(run / "dvsynth.sqlite")
    with db:
        base = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
        copies = -(-rows // base) - 1
        db.execute(
            "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?) "
            "INSERT INTO rows SELECT r.seed_id || '-' || n.k, r.ordinal + n.k * ?, r.status, "
            "json_set(r.record, '$.seed_id', r.seed_id || '-' || n.k, "
            "'$.pair_id', json_extract(r.record, '$.pair_id') || '-' || n.k), "
            "r.updated_at, r.validation, "
            "json_set(r.checked, '$.seed_id', r.seed_id || '-' || n.k, "
            "'$.pair_id', json_extract(r.checked, '$.pair_id') || '-' || n.k), "
            "r.checked_status, r.dedup, r.outcome FROM rows r, n",
            (copies, base),
        )
        db.execute(
            "DELETE FROM rows WHERE seed_id IN (SELECT seed_id FROM rows "
            "ORDER BY ordinal DESC LIMIT max(0, (SELECT COUNT(*) FROM rows) - ?))",
            (rows,),
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def timed(host: str, port: int, path: str) -> tuple[float, float, int]:
    """(seconds to the first byte, to the whole body, status) of one GET."""
    connection = http.client.HTTPConnection(host, port, timeout=120)
    start = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    response.read(1)
    first = time.perf_counter() - start
    response.read()
    whole = time.perf_counter() - start
    connection.close()
    return first, whole, response.status


def peak_rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def after_a_change(run: Path, host: str, port: int, base: str) -> dict:
    """One row changed (as dedup writes it): a text search, then the overview polled
    until its figures are fresh again (the changed chunk counted again)."""
    db = sqlite3.connect(run / "dvsynth.sqlite")
    with db:
        db.execute(
            "UPDATE rows SET dedup = 'dedup:near:x', outcome = 'rejected' WHERE seed_id = 's21'"
        )
    db.close()
    search = timed(host, port, base + "/rows?q=number+17")
    start = time.perf_counter()
    while True:
        if b'id="stale"' not in fetch(host, port, base + "/"):
            break
        time.sleep(0.05)
    return {
        "after one row changed: text search": {"total_s": round(search[1], 4)},
        "after one row changed: overview fresh": {"total_s": round(time.perf_counter() - start, 4)},
    }


def fetch(host: str, port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection(host, port, timeout=120)
    connection.request("GET", path)
    body = connection.getresponse().read()
    connection.close()
    return body


def measure(rows: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp), 50)
        grow(run, rows)
        process = subprocess.Popen(
            [*CLI, "view", str(run), "--no-browser"], stdout=subprocess.PIPE, text=True
        )
        try:
            url = urlsplit(re.search(r"http://\S+", process.stdout.readline()).group(0))
            host, port, base = url.hostname, url.port, url.path.rstrip("/")
            first_overview = timed(host, port, base + "/")
            start = time.perf_counter()
            while b'id="counting"' in fetch(host, port, base + "/"):
                time.sleep(0.2)
            counted = first_overview[1] + time.perf_counter() - start
            pages = {
                "overview (cached)": base + "/",
                "rows: rejected, page 1": base + "/rows?outcome=rejected",
                "rows: text search": base + "/rows?q=number+17",
                "rows: page 1000 of all": base + f"/rows?page={max(1, rows // 100)}",
                "pair (with neighbours in a filter)": base + "/pair?outcome=verified&src=0&id=s20",
            }
            result = {
                "rows": rows,
                "first overview": {"ttfb_s": first_overview[0], "total_s": first_overview[1]},
                "first overview: figures there": {"total_s": round(counted, 4)},
            }
            for name, path in pages.items():
                samples = [timed(host, port, path) for _ in range(repeats)]
                assert all(s[2] == 200 for s in samples), (name, samples)
                result[name] = {
                    "ttfb_s": round(statistics.median(s[0] for s in samples), 4),
                    "total_s": round(statistics.median(s[1] for s in samples), 4),
                }
            result.update(after_a_change(run, host, port, base))
            result["peak_rss_mib"] = round(peak_rss_mib(process.pid), 1)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = [measure(n, args.repeats) for n in args.rows or [100_000]]
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "view_pages.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
