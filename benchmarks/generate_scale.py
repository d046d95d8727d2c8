"""Wall time, rows/s and peak memory of `dvsynth generate`, as a user runs it.

Two runs, each repeated and reported as the median:
  * api:   every msmarco-1743 seed (mined by `dvsynth mine`) in bootstrap mode against
           the project's fake OpenAI-compatible server (dvsynth/testing.py) on
           127.0.0.1, --concurrency 64. Server and client share this machine's cores.
  * local: the first 20 of those seeds with the embedded local/smollm2.
Each run is a fresh `dvsynth generate` process; peak RSS is that process's max RSS.

    python benchmarks/generate_scale.py [--repeats 3] [--skip-local]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvsynth.testing import FakeLLMServer  # noqa: E402

MSMARCO = ROOT.parent / "shared" / "data" / "msmarco-1743"
OUT = ROOT / "benchmarks" / "out"


def mine(seeds: Path) -> None:
    if seeds.exists():
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dvsynth.cli",
            "mine",
            "--pairs",
            str(MSMARCO / "qrels-test.tsv"),
            "--queries",
            str(MSMARCO / "queries.jsonl"),
            "--corpus",
            str(MSMARCO / "corpus.jsonl"),
            "--out",
            str(seeds),
            "--quiet",
        ],
        check=True,
    )


def timed_run(args: list[str]) -> dict:
    """Run one generate process: wall seconds and peak RSS (MiB).

    RUSAGE_CHILDREN's max RSS covers every child so far; each kind of run executes in its
    own interpreter (see main), so the value is that kind's peak.
    """
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dvsynth.cli", "generate", *args, "--quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"wall_s": wall, "peak_rss_mib": peak / 1024}


def bench(name: str, args_for, rows: int, repeats: int) -> dict:
    results = []
    for _ in range(repeats):
        work = Path(tempfile.mkdtemp(prefix=f"dvsynth-bench-{name}-"))
        try:
            results.append(timed_run(args_for(work / "run")))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    wall = statistics.median(r["wall_s"] for r in results)
    return {
        "name": name,
        "rows": rows,
        "repeats": repeats,
        "median_wall_s": round(wall, 2),
        "median_rows_per_s": round(rows / wall, 2),
        "peak_rss_mib": round(max(r["peak_rss_mib"] for r in results), 1),
        "walls": [round(r["wall_s"], 2) for r in results],
    }


def one_kind(kind: str, repeats: int, seeds: Path) -> dict:
    n_seeds = sum(1 for _ in seeds.open())
    if kind == "api":
        with FakeLLMServer() as server:
            return bench(
                "api-fake-server-c64",
                lambda out: [
                    "--seeds",
                    str(seeds),
                    "--mode",
                    "bootstrap",
                    "--model",
                    "openai/fake",
                    "--api-base",
                    server.api_base,
                    "--concurrency",
                    "64",
                    "--out",
                    str(out),
                ],
                n_seeds,
                repeats,
            )
    return bench(
        "local-smollm2-20",
        lambda out: [
            "--seeds",
            str(seeds),
            "--mode",
            "bootstrap",
            "--model",
            "local/smollm2",
            "--limit",
            "20",
            "--out",
            str(out),
        ],
        20,
        repeats,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--kind", choices=["api", "local"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    seeds = OUT / "msmarco-1743-seeds.jsonl"
    mine(seeds)
    if args.kind:  # child mode: one kind per interpreter, so RUSAGE_CHILDREN is its own
        print(json.dumps(one_kind(args.kind, args.repeats, seeds)))
        return
    report = {"machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0], "runs": []}
    for kind in ["api"] + ([] if args.skip_local else ["local"]):
        child = subprocess.run(
            [sys.executable, __file__, "--kind", kind, "--repeats", str(args.repeats)],
            check=True,
            capture_output=True,
            text=True,
        )
        report["runs"].append(json.loads(child.stdout.strip().splitlines()[-1]))
    (OUT / "generate_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print("| run | rows | median wall (s) | median rows/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for run in report["runs"]:
        print(
            f"| {run['name']} | {run['rows']} | {run['median_wall_s']} | "
            f"{run['median_rows_per_s']} | {run['peak_rss_mib']} |"
        )


if __name__ == "__main__":
    main()
