"""Where the Ray engine's wall time goes (issue 16): one `dvsynth generate --engine ray`
against the 500 ms fake server, with time stamps around its phases.

The run is a subprocess that runs dvsynth's CLI in-process behind a few wrappers (the
code under dvsynth/ is not changed): the first stage pass (which queues the requests),
`connect` (ray.init), the dataset and processor, the first request and last answer (the
fake server's clock; both are time.monotonic on one machine), the finishing pass, and
the process's exit (Ray's shutdown). Variations, each measured on its own run:

  --rows-per-block N   sets dvsynth.llm.ray.engine.ROWS_PER_BLOCK (default 16);
  --prestarted         a cluster started beforehand (`ray start --head --block`, with a
                       private --temp-dir so no other run on this machine finds it),
                       joined with --ray-address HOST:PORT and RAY_AUTH_MODE=token.

    python benchmarks/ray_engine_phases.py [--n 5000] [--replicas 1 2] [--repeats 1]
        [--rows-per-block 16] [--prestarted]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generate_scale import OUT  # noqa: E402

PHASES = [  # (name, from stamp, to stamp)
    ("dvsynth start-up", "start", "pass_start"),
    ("first pass (queue requests)", "pass_start", "pass_end"),
    ("ray.init / connect", "connect_start", "connect_end"),
    ("dataset + processor", "connect_end", "dataset_ready"),
    ("actors up -> first request", "dataset_ready", "server_first_request"),
    ("calls (server busy window)", "server_first_request", "server_last_answer"),
    ("last answer -> results committed", "server_last_answer", "run_on_ray_end"),
    ("finishing pass", "pass2_start", "pass2_end"),
    ("exit (ray shutdown)", "main_end", "process_exit"),
]


def child(stamps_path: str, argv: list[str]) -> None:
    """Run `dvsynth argv` here, stamping the phases into `stamps_path` at exit."""
    stamps: dict[str, float] = {"start": time.monotonic()}
    passes = [0]

    def dump() -> None:  # registered first, so it runs after Ray's own atexit shutdown
        Path(stamps_path).write_text(json.dumps(stamps))

    atexit.register(dump)
    import dvsynth.llm.batch.rounds as rounds
    import dvsynth.llm.ray.engine as engine

    if os.environ.get("BENCH_ROWS_PER_BLOCK"):
        engine.ROWS_PER_BLOCK = int(os.environ["BENCH_ROWS_PER_BLOCK"])

    def around(module, name, before, after):
        original = getattr(module, name)

        def wrapped(*args, **kwargs):
            stamps.setdefault(before, time.monotonic())
            result = original(*args, **kwargs)
            stamps[after] = time.monotonic()
            return result

        setattr(module, name, wrapped)

    around(engine, "connect", "connect_start", "connect_end")
    around(engine, "run_on_ray", "run_on_ray_start", "run_on_ray_end")
    processor_for = engine.processor_for

    def timed_processor_for(settings):
        run = processor_for(settings)

        def timed_run(dataset):
            stamps.setdefault("dataset_ready", time.monotonic())
            return run(dataset)

        return timed_run

    engine.processor_for = timed_processor_for
    ray_rounds = rounds._ray_rounds

    async def timed_rounds(lanes, one_pass, *args, **kwargs):
        async def timed_pass():
            passes[0] += 1
            tag = "pass" if passes[0] == 1 else f"pass{passes[0]}"
            stamps[f"{tag}_start"] = time.monotonic()
            await one_pass()
            stamps[f"{tag}_end"] = time.monotonic()

        return await ray_rounds(lanes, timed_pass, *args, **kwargs)

    rounds._ray_rounds = timed_rounds
    from dvsynth.cli import main

    sys.argv = ["dvsynth", *argv]
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise
    finally:
        stamps["main_end"] = time.monotonic()


class PrestartedCluster:
    """`ray start --head --block` in a private temp dir; stopped by its own process."""

    def __init__(self, port: int = 6390) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="rayb-", dir="/tmp"))
        self.address = f"127.0.0.1:{port}"
        ray = Path(sys.executable).with_name("ray")
        self.proc = subprocess.Popen(
            [
                str(ray),
                "start",
                "--head",
                f"--port={port}",
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={self.temp}",
                "--block",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(15)  # GCS, raylet and agents up on 2 cores

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # drains (up to 30 s), then stops its children
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)


def one_run(seeds: Path, replicas: int, rows_per_block: int | None, address: str) -> dict:
    from dvsynth.testing import FakeLLMServer

    work = Path(tempfile.mkdtemp(prefix="dvsynth-ray-phases-"))
    server = FakeLLMServer(latency=0.5).start()
    env = dict(os.environ)
    if rows_per_block:
        env["BENCH_ROWS_PER_BLOCK"] = str(rows_per_block)
    if address != "local":
        env["RAY_AUTH_MODE"] = "token"  # `ray start` enables token auth (Ray 2.60)
    args = [
        "generate",
        "--seeds",
        str(seeds),
        "--mode",
        "bootstrap",
        "--model",
        "openai/fake",
        "--api-base",
        server.api_base,
        "--concurrency",
        "128",
        "--quiet",
        "--out",
        str(work / "run"),
        "--engine",
        "ray",
        "--ray-address",
        address,
        "--replicas",
        str(replicas),
    ]
    try:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(work / "stamps.json"), "--", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        ended = time.monotonic()
        if done.returncode:
            raise RuntimeError(done.stderr[-3000:])
        stamps = json.loads((work / "stamps.json").read_text())
        total = server.total_requests
        stamps.update(
            server_first_request=server.first_at,
            server_last_answer=server.last_done_at,
            process_exit=ended,
        )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    found = [(name, a, b) for name, a, b in PHASES if a in stamps and b in stamps]
    phases = {name: round(stamps[b] - stamps[a], 2) for name, a, b in found}
    return {"wall_s": round(ended - started, 2), "requests": total, "phases": phases}


def main() -> None:
    if "--child" in sys.argv:
        at = sys.argv.index("--child")
        child(sys.argv[at + 1], sys.argv[sys.argv.index("--") + 1 :])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rows-per-block", type=int)
    parser.add_argument("--prestarted", action="store_true")
    args = parser.parse_args()
    from benchmarks.throughput import make_inputs

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dvsynth-ray-phases-inputs-"))
    cluster = PrestartedCluster() if args.prestarted else None
    report = {
        "n": args.n,
        "rows_per_block": args.rows_per_block or 16,
        "prestarted": args.prestarted,
        "runs": [],
    }
    try:
        seeds, _ = make_inputs(args.n, work)
        address = cluster.address if cluster else "local"
        for replicas in args.replicas:
            samples = [
                one_run(seeds, replicas, args.rows_per_block, address) for _ in range(args.repeats)
            ]
            row = {
                "replicas": replicas,
                "wall_s": statistics.median(s["wall_s"] for s in samples),
                "phases": {
                    name: round(statistics.median(s["phases"][name] for s in samples), 2)
                    for name in samples[0]["phases"]
                },
                "samples": samples,
            }
            report["runs"].append(row)
            print(json.dumps({k: row[k] for k in ("replicas", "wall_s", "phases")}), flush=True)
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    tag = f"b{report['rows_per_block']}" + ("-prestarted" if args.prestarted else "")
    (OUT / f"ray_engine_phases-{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    names = list(report["runs"][0]["phases"])
    print("\n| phase | " + " | ".join(f"r{r['replicas']}" for r in report["runs"]) + " |")
    print("|---|" + "---|" * len(report["runs"]))
    for name in names:
        print(f"| {name} | " + " | ".join(str(r["phases"][name]) for r in report["runs"]) + " |")
    print("| wall | " + " | ".join(str(r["wall_s"]) for r in report["runs"]) + " |")


if __name__ == "__main__":
    main()
