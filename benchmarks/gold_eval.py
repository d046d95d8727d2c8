"""Judge calibration and instruction sensitivity on the gold sets, on this machine.

    python benchmarks/gold_eval.py [--judge-limit 48]

1. the rule validators alone on the msmarco gold set (false rejects on gold, and what
   share of each corrupt kind the rules catch);
2. `dvsynth calibrate` with local/smollm2 as judge on the bundled sample gold set and
   on the first --judge-limit msmarco gold pairs (the embedded 135M model: expect it to
   be weak; the number is the point);
3. `dvsynth eval-retriever` with the bundled all-MiniLM-L6-v2 on both gold sets.

Each step runs the CLI in a fresh process; JSON lands in benchmarks/out/gold_eval.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
MSMARCO_GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"
SAMPLE_GOLD = ROOT / "dvsynth" / "data" / "sample_gold.jsonl"


def dvsynth(*args: str) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dvsynth.cli", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout), round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--judge-limit", type=int, default=48)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    results["rules_msmarco"], _ = dvsynth("calibrate", "--no-judge", "--gold", str(MSMARCO_GOLD))
    results["rules_sample"], _ = dvsynth("calibrate", "--no-judge", "--gold", str(SAMPLE_GOLD))
    head = Path(tempfile.mkdtemp()) / "msmarco-head.jsonl"
    lines = MSMARCO_GOLD.read_text(encoding="utf-8").splitlines(keepends=True)
    head.write_text("".join(lines[: args.judge_limit]), encoding="utf-8")
    for name, gold in (("sample", SAMPLE_GOLD), ("msmarco_head", head)):
        data, wall = dvsynth(
            "calibrate", "--judge-model", "local/smollm2", "--gold", str(gold), "--concurrency", "1"
        )
        data["wall_s"] = wall
        results[f"smollm2_judge_{name}"] = data
    for name, gold in (("msmarco", MSMARCO_GOLD), ("sample", SAMPLE_GOLD)):
        data, wall = dvsynth("eval-retriever", "--gold", str(gold))
        data["wall_s"] = wall
        results[f"minilm_{name}"] = data
    (OUT / "gold_eval.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
