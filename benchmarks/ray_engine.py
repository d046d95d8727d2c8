"""The Ray engine against the online async engine, with a 500 ms server (issue 16).

The fake OpenAI-compatible server (dvsynth/testing.py, `latency=0.5`, no faults) runs
in a thread of this process; each run is a fresh `dvsynth generate` subprocess over N
bootstrap seeds (msmarco seeds cycled with unique queries, one call per seed), with
--concurrency C:

  * online:  the default engine (async calls from the dvsynth process);
  * ray-rK:  `--engine ray --ray-address local --replicas K` (the HTTP processor, K
             actors; --concurrency is the calls in flight per server, split over them).

Each run gets a new server, so its counters start at zero. Requests/s is the server's:
requests over its busy window (first request in to last response out, monotonic), so
process start-up is excluded; `wall_s` is the whole command. Ray's start-up cost is the
run's wall minus its busy window (split into before the first request and after the
last answer); the same for the online run is dvsynth's own overhead. Separately, the
time to `import ray; ray.init(num_cpus=2); ray.shutdown()` in a fresh interpreter.
Repeats are interleaved (online, ray-r1, ray-r2, ...) and reported as medians.

    python benchmarks/ray_engine.py [--n 5000] [--concurrency 128] [--replicas 1 2 4]
        [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generate_scale import OUT  # noqa: E402
from benchmarks.throughput import make_inputs  # noqa: E402
from dvsynth.testing import FakeLLMServer  # noqa: E402

LATENCY_S = 0.5

RAY_INIT = """
import json, time
t0 = time.perf_counter()
import ray
t1 = time.perf_counter()
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
t2 = time.perf_counter()
ray.shutdown()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "init_s": t2 - t1, "shutdown_s": t3 - t2}))
"""


def generate_command(
    seeds: Path, api_base: str, c: int, out: Path, replicas: int | None
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "dvsynth.cli",
        "generate",
        "--seeds",
        str(seeds),
        "--mode",
        "bootstrap",
        "--model",
        "openai/fake",
        "--api-base",
        api_base,
        "--concurrency",
        str(c),
        "--quiet",
        "--out",
        str(out),
    ]
    if replicas is not None:
        command += ["--engine", "ray", "--ray-address", "local", "--replicas", str(replicas)]
    return command


def one_run(seeds: Path, n: int, c: int, replicas: int | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="dvsynth-ray-bench-"))
    server = FakeLLMServer(latency=LATENCY_S).start()
    try:
        command = generate_command(seeds, server.api_base, c, work / "run", replicas)
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        ended = time.monotonic()
        if done.returncode:
            raise RuntimeError(f"{command} failed:\n{done.stderr[-3000:]}")
        total = server.total_requests
        first, last = server.first_at, server.last_done_at
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if total < n or first is None or last is None:
        raise RuntimeError(f"replicas={replicas}: the server saw {total} of {n} requests")
    busy = last - first
    wall = ended - started
    return {
        "wall_s": wall,
        "busy_s": busy,
        "requests": total,
        "rps": total / busy,
        "wall_rps": total / wall,
        "before_first_request_s": first - started,
        "after_last_answer_s": ended - last,
        "overhead_s": wall - busy,
    }


def ray_init_cost() -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RAY_INIT], cwd=ROOT, capture_output=True, text=True, check=True
    )
    sample = json.loads(done.stdout.strip().splitlines()[-1])
    sample["process_wall_s"] = time.perf_counter() - started
    return sample


def median_of(samples: list[dict]) -> dict:
    return {key: round(statistics.median(s[key] for s in samples), 3) for key in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT / "ray_engine.json")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dvsynth-ray-inputs-"))
    kinds: list[tuple[str, int | None]] = [("online", None)]
    kinds += [(f"ray-r{k}", k) for k in args.replicas]
    samples: dict[str, list[dict]] = {name: [] for name, _ in kinds}
    init_samples: list[dict] = []
    try:
        seeds, _ = make_inputs(args.n, work)
        for repeat in range(args.repeats):
            for name, replicas in kinds:
                sample = one_run(seeds, args.n, args.concurrency, replicas)
                samples[name].append(sample)
                print(json.dumps({"run": name, "repeat": repeat, **sample}), flush=True)
            init_samples.append(ray_init_cost())
            print(json.dumps({"run": "ray.init", "repeat": repeat, **init_samples[-1]}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: median_of(runs) for name, runs in samples.items()}
    online = medians["online"]
    rows = []
    for name, replicas in kinds:
        m = medians[name]
        rows.append(
            {
                "run": name,
                "replicas": replicas,
                **m,
                "ideal_rps": args.concurrency / LATENCY_S,
                "ratio_rps_to_online": round(m["rps"] / online["rps"], 3),
                "ratio_wall_rps_to_online": round(m["wall_rps"] / online["wall_rps"], 3),
                "extra_overhead_vs_online_s": round(m["overhead_s"] - online["overhead_s"], 3),
                "samples_rps": [round(s["rps"], 1) for s in samples[name]],
                "samples_wall_s": [round(s["wall_s"], 2) for s in samples[name]],
            }
        )
    report = {
        "machine": f"{os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "n": args.n,
        "concurrency": args.concurrency,
        "latency_s": LATENCY_S,
        "repeats": args.repeats,
        "runs": rows,
        "ray_init_shutdown": {
            **median_of(init_samples),
            "samples_process_wall_s": [round(s["process_wall_s"], 2) for s in init_samples],
        },
        "samples": samples,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        "\n| run | wall s | busy s | req/s (busy) | / online | req/s (wall) | / online "
        "| wall - busy s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['wall_s']} | {r['busy_s']} | {r['rps']:.1f} | "
            f"{r['ratio_rps_to_online']} | {r['wall_rps']:.1f} | "
            f"{r['ratio_wall_rps_to_online']} | {r['overhead_s']} |"
        )
    init = report["ray_init_shutdown"]
    print(
        f"\nray import {init['import_s']} s, init {init['init_s']} s, shutdown "
        f"{init['shutdown_s']} s; fresh interpreter wall {init['process_wall_s']} s"
    )


if __name__ == "__main__":
    main()
