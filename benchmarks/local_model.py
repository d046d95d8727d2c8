"""The embedded model's speed on this machine: prefill and per-token decode of
SmolLM2-135M (transformers, from the GGUF file), alone and beside a CPU hog.

Each setting runs in a fresh interpreter (OpenMP reads OMP_WAIT_POLICY when torch
loads): `spin` is OpenMP's default, `passive` what dvsynth's local transport sets.
With `--hog N`, N busy-looping processes share the cores, as a CI job or a second run
would.

    python benchmarks/local_model.py [--hog 2] [--tokens 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"

PROBE = """
import json, sys, time
from dvsynth.llm.transports.local import _LoadedModel, resolve_local_model
import torch
loaded = _LoadedModel(resolve_local_model("local/smollm2"))
from dvsynth.llm.transports.local import _TorchScorer
tokens = int(sys.argv[1])
prompt = list(range(100, 900))
scorer = _TorchScorer(loaded.model, loaded.forward_arguments)
started = time.perf_counter()
scorer.feed(prompt)
prefill = time.perf_counter() - started
started = time.perf_counter()
for _ in range(tokens):
    scorer.feed([5])
decode = (time.perf_counter() - started) / tokens
print(json.dumps({"prefill_800_s": prefill, "per_token_s": decode,
                  "dtype": str(loaded.model.dtype), "threads": torch.get_num_threads()}))
"""


def probe(policy: str | None, tokens: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    else:
        env["OMP_WAIT_POLICY"] = "ACTIVE"  # spin: OpenMP's default when unset
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tokens)], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hog", type=int, default=0, help="busy processes beside it")
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hog)]
    report: dict[str, object] = {"hog_processes": args.hog, "load": os.getloadavg()[0]}
    try:
        for name, policy in (("spin", None), ("passive", "PASSIVE")):
            runs = [probe(policy, args.tokens) for _ in range(args.repeats)]
            report[name] = {
                "median_prefill_800_s": round(
                    statistics.median(r["prefill_800_s"] for r in runs), 3
                ),
                "median_per_token_s": round(statistics.median(r["per_token_s"] for r in runs), 4),
                "dtype": runs[0]["dtype"],
                "threads": runs[0]["threads"],
            }
    finally:
        for hog in hogs:
            hog.kill()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"local_model_hog{args.hog}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
