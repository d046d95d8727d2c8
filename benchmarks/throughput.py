"""Throughput of `dvsynth generate` against a server with a fixed 500 ms latency.

The project's fake OpenAI-compatible server (dvsynth/testing.py) runs in its own
process with --latency 0.5 and no faults. For each concurrency C and each client, N
prompts are sent (the exact bootstrap prompts dvsynth renders for N msmarco seeds):

  * dvsynth:  `dvsynth generate --concurrency C` (the default transport, `auto`, which
    picks the lean HTTP client for an OpenAI-compatible --api-base);
  * dvsynth-litellm: the same with `--transport litellm` (litellm's OpenAI client path);
  * raw:      benchmarks/raw_client.py, a bare aiohttp client (the practical ceiling);
  * raw-uvloop: the same bare client on uvloop, the event loop dvsynth's stages use;
  * curator:  benchmarks/curator_client.py, bespokelabs-curator in /work/curator-venv.

Achieved requests/s is measured by the server (first request in to last response out),
so process start-up is excluded; the ideal is C / 0.5 s. CPU seconds per request and
peak RSS come from GNU time on the client process; for dvsynth the CPU of a 1-seed run
(start-up: imports, manifest) is subtracted. Medians of --repeats runs, the clients of
one repeat run one after the other, so that a change in the machine's load hits all.
`--rss-sizes` then runs dvsynth alone over larger seed counts to check memory stays flat.

`--servers threaded` also runs every measurement against benchmarks/threaded_server.py
(one thread per connection): it takes more of the shared CPU than the aiohttp fake, so
the client's CPU per request shows in its throughput. `--startup N` times a one-seed
`dvsynth generate` against `dvsynth --help` (wall seconds, median of N).

    python benchmarks/throughput.py [--n 5000] [--concurrency 32 128 512] [--repeats 3]
        [--clients dvsynth dvsynth-litellm raw raw-uvloop curator] [--rss-sizes 10000 100000]
        [--servers aiohttp threaded] [--startup 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generate_scale import OUT, mine  # noqa: E402

LATENCY_S = 0.5
CURATOR_PYTHON = Path("/work/curator-venv/bin/python")


def make_inputs(n: int, work: Path) -> tuple[Path, Path]:
    """N unique seeds cycled from the mined msmarco seeds, and the prompts dvsynth sends."""
    from dvsynth.prompts import load_template
    from dvsynth.seeds import SeedReader

    source = OUT / "msmarco-1743-seeds.jsonl"
    mine(source)
    base = [json.loads(line) for line in source.open(encoding="utf-8")]
    template = load_template("bootstrap.v1")
    seeds_path, prompts_path = work / f"seeds-{n}.jsonl", work / f"prompts-{n}.jsonl"
    with seeds_path.open("w", encoding="utf-8") as seeds:
        for i in range(n):
            row = dict(base[i % len(base)])
            row["id"] = f"{row['id']}-{i}"
            row["query"] = f"{row['query']} [{i}]"
            seeds.write(json.dumps(row) + "\n")
    with prompts_path.open("w", encoding="utf-8") as prompts:
        for seed in SeedReader(str(seeds_path)):
            [message] = template.render(
                query=seed.query,
                instruction="",
                positive=seed.positive,
                negative=seed.negative,
                other_negatives=seed.other_negatives,
            )
            prompts.write(json.dumps({"id": seed.seed_id, "prompt": message["content"]}) + "\n")
    return seeds_path, prompts_path


SERVER_COMMANDS = {
    "aiohttp": ["-m", "dvsynth.testing"],
    "threaded": ["benchmarks/threaded_server.py"],
}


class Server:
    def __init__(self, latency: float, kind: str = "aiohttp") -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, *SERVER_COMMANDS[kind], "--latency", str(latency)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.api_base = json.loads(self.proc.stdout.readline())["api_base"]
        self.root = self.api_base.rsplit("/v1", 1)[0]

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.root + "/reset", method="POST"))

    def stats(self) -> dict:
        with urllib.request.urlopen(self.root + "/stats") as response:
            data = json.loads(response.read())
        data.pop("by_query", None)
        return data

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def gnu_time(command: list[str]) -> dict:
    """Run a command under GNU time: wall, CPU (user+sys) seconds, max RSS in MiB."""
    done = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %e %U %S %M", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"{command[:3]} failed: {done.stderr[-2000:]}")
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("TIME ")][-1]
    wall, user, system, rss_kb = line.split()[1:]
    return {
        "wall_s": float(wall),
        "cpu_s": float(user) + float(system),
        "rss_mib": int(rss_kb) / 1024,
        "stdout": done.stdout,
    }


def client_command(
    client: str,
    seeds: Path,
    prompts: Path,
    server: Server,
    c: int,
    out: Path,
    limit: int | None = None,
) -> list[str]:
    if client.startswith("dvsynth"):
        transport = "litellm" if client == "dvsynth-litellm" else "auto"
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
            "openai/fake-model",
            "--api-base",
            server.api_base,
            "--concurrency",
            str(c),
            "--out",
            str(out),
            "--quiet",
            "--transport",
            transport,
        ]
        return command + (["--limit", str(limit)] if limit else [])
    python, script = (
        (sys.executable, "benchmarks/raw_client.py")
        if client.startswith("raw")
        else (str(CURATOR_PYTHON), "benchmarks/curator_client.py")
    )
    command = [
        python,
        script,
        "--prompts",
        str(prompts),
        "--api-base",
        server.api_base,
        "--concurrency",
        str(c),
    ]
    return command + (["--uvloop"] if client == "raw-uvloop" else [])


def startup(seeds: Path, server: Server, repeats: int) -> dict:
    """Wall seconds of a one-seed `dvsynth generate` and of `dvsynth --help`, alternated
    (median of `repeats` each): what a user waits before anything happens."""
    help_s, generate_s = [], []
    for _ in range(repeats):
        help_s.append(gnu_time([sys.executable, "-m", "dvsynth.cli", "--help"])["wall_s"])
        work = Path(tempfile.mkdtemp(prefix="dvsynth-tp-startup-"))
        try:
            command = client_command("dvsynth", seeds, seeds, server, 1, work / "run", 1)
            generate_s.append(gnu_time(command)["wall_s"])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    row = {
        "help_wall_s": statistics.median(help_s),
        "generate_one_seed_wall_s": statistics.median(generate_s),
        "samples_help_s": help_s,
        "samples_generate_s": generate_s,
    }
    row["ratio"] = round(row["generate_one_seed_wall_s"] / row["help_wall_s"], 2)
    return row


def measure(client: str, seeds: Path, prompts: Path, server: Server, c: int, n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="dvsynth-tp-"))
    try:
        server.reset()
        timing = gnu_time(client_command(client, seeds, prompts, server, c, work / "run"))
        stats = server.stats()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if stats["total"] < n:
        raise RuntimeError(f"{client} sent {stats['total']} of {n} requests")
    return {
        "rps": stats["total"] / stats["busy_s"],
        "cpu_s": timing["cpu_s"],
        "rss_mib": timing["rss_mib"],
        "wall_s": timing["wall_s"],
    }


def load() -> str:
    with open("/proc/loadavg", encoding="utf-8") as handle:
        return " ".join(handle.read().split()[:3])


def run_matrix(args, server: Server, seeds: Path, prompts: Path, report: dict) -> None:
    """Every client at every concurrency against one server; the repeats interleave the
    clients (dvsynth, raw, dvsynth, raw, ...) so that load changes hit both."""
    server.reset()
    one = client_command("dvsynth", seeds, prompts, server, 1, Path(tempfile.mkdtemp()) / "r", 1)
    startup_cpu = gnu_time(one)["cpu_s"]
    report.setdefault("dvsynth_startup_cpu_s", {})[server.kind] = startup_cpu
    for c in args.concurrency:
        samples: dict[str, list[dict]] = {client: [] for client in args.clients}
        for _ in range(args.repeats):
            for client in args.clients:
                samples[client].append(measure(client, seeds, prompts, server, c, args.n))
        for client in args.clients:
            runs = samples[client]
            cpu = statistics.median(s["cpu_s"] for s in runs)
            if client.startswith("dvsynth"):
                cpu -= startup_cpu
            rps = statistics.median(s["rps"] for s in runs)
            row = {
                "server": server.kind,
                "client": client,
                "concurrency": c,
                "median_rps": round(rps, 1),
                "ideal_rps": c / LATENCY_S,
                "ratio_to_ideal": round(rps * LATENCY_S / c, 3),
                "cpu_ms_per_request": round(1000 * cpu / args.n, 3),
                "cpu_s_per_1000": round(1000 * cpu / args.n, 2),
                "peak_rss_mib": round(max(s["rss_mib"] for s in runs), 1),
                "samples_rps": [round(s["rps"], 1) for s in runs],
                "load": load(),
            }
            report["runs"].append(row)
            print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[32, 128, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--clients", nargs="+", default=["dvsynth", "dvsynth-litellm", "raw", "curator"]
    )
    parser.add_argument("--servers", nargs="+", default=["aiohttp"], choices=SERVER_COMMANDS)
    parser.add_argument("--startup", type=int, default=0, help="repeats of the start-up timing")
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dvsynth-tp-inputs-"))
    report: dict = {"n": args.n, "latency_s": LATENCY_S, "runs": [], "rss": [], "load": load()}
    try:
        seeds, prompts = make_inputs(args.n, work)
        for kind in args.servers:
            server = Server(LATENCY_S, kind)
            try:
                if args.startup and kind == args.servers[0]:
                    report["startup"] = startup(seeds, server, args.startup)
                    print(json.dumps(report["startup"]), flush=True)
                run_matrix(args, server, seeds, prompts, report)
                if kind == args.servers[0]:
                    for size in args.rss_sizes:
                        big_seeds, big_prompts = make_inputs(size, work)
                        sample = measure("dvsynth", big_seeds, big_prompts, server, 512, size)
                        row = {
                            "seeds": size,
                            "peak_rss_mib": round(sample["rss_mib"], 1),
                            "median_rps": round(sample["rps"], 1),
                        }
                        report["rss"].append(row)
                        print(json.dumps(row), flush=True)
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        (OUT / "throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report, args)


def print_tables(report: dict, args) -> None:
    by = {(r["server"], r["client"], r["concurrency"]): r for r in report["runs"]}
    print(
        "\n| server | C | client | req/s (median) | / ideal | CPU s per 1,000 req | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in report["runs"]:
        print(
            f"| {r['server']} | {r['concurrency']} | {r['client']} | {r['median_rps']} | "
            f"{r['ratio_to_ideal']} | {r['cpu_s_per_1000']} | {r['peak_rss_mib']} |"
        )
    for kind in args.servers:
        for c in args.concurrency:
            ours = by.get((kind, "dvsynth", c))
            for ref in ("dvsynth-litellm", "raw", "raw-uvloop", "curator"):
                theirs = by.get((kind, ref, c))
                if ours and theirs:
                    rps = ours["median_rps"] / theirs["median_rps"]
                    cpu = ours["cpu_s_per_1000"] / max(theirs["cpu_s_per_1000"], 1e-9)
                    print(
                        f"{kind} C={c}: dvsynth / {ref}: throughput {rps:.2f}, "
                        f"CPU per request {cpu:.2f}x"
                    )
    if "startup" in report:
        s = report["startup"]
        print(
            f"start-up: one-seed generate {s['generate_one_seed_wall_s']:.2f} s, "
            f"--help {s['help_wall_s']:.2f} s, ratio {s['ratio']}"
        )


if __name__ == "__main__":
    main()
