"""CPU, memory and cost of the batch engine (`--batch --wait`) at 1,000 and 10,000 seeds.

For each size N (a fresh run directory each time):

    dvsynth generate --seeds S --model openai/gpt-4o-mini --api-base B \\
        --batch --wait --poll-interval 0.01 --quiet --out RUN
    dvsynth validate RUN --judge-model openai/gpt-4o-mini --judge-api-base B \\
        --batch --wait --poll-interval 0.01 --quiet

against the project's loopback fakes: `dvsynth.testing.FakeLLMServer` with
`dvsynth.fakes.openai_batches.FakeOpenAIBatches` (polls_to_complete=1) on its port, both
in this process's thread; dvsynth runs as a subprocess under GNU time, which gives that
process's own wall seconds, CPU seconds (user + sys) and peak RSS. Requests are counted
by the fake (lines received in created batches; online chat calls apart), and the cost
comes from `dvsynth stats RUN --json` ("batch": per stage tokens and batch cost); the
same token counts are priced online with `dvsynth.llm.cost.online_price`, hence the
ratio batch / online (goal at most 0.5, plus rounding).

CPU per 10,000 requests is the two commands' CPU less their start-up (a 1-seed run of
each: imports, manifest, one round), divided by the requests sent. `--online N [N ...]`
(default 1000) also generates N seeds online (`--concurrency 64`, start-up subtracted
the same way) against the same server, to compare dvsynth's CPU per request online and
in batch mode. `--profile` runs the first size's commands under cProfile, prints their
top functions and keeps the profiles in benchmarks/out/batch-*.prof. The fake server here
accepts uploads up to 256 MiB (FakeLLMServer's own cap, 64 MiB, is below the 200 MB batch
files dvsynth writes, as OpenAI allows: at 10,000 seeds validate's first file is 76 MB).

Seeds: N triples built from ../shared/data/msmarco-1743 (real MS MARCO queries and
passages). Seed i takes query i mod 1,743; the k-th time a query is used (k = i div
1,743) it gets other passages (k = 0: its judged passage as positive), so every seed's
prompts differ and every seed has its own id. Positive and negative start with distinct
`kw...` words (the fake generator asks for them, so the fake judge confirms the pair) and
two more passages are other negatives (so the judge's negative calls happen); the 8
passages' U+0085 characters become the ellipsis they were (the fake's line splitting
breaks on them). Generation is bootstrap (no seed instruction): per seed 1 generator
call, then 2 instruction checks, 4 judgments and 2 negative judgments: 9 requests.

    python benchmarks/batch.py [--sizes 1000 10000] [--repeats 1] [--online 1000 10000] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvsynth.fakes.openai_batches import FakeOpenAIBatches  # noqa: E402
from dvsynth.testing import FakeLLMServer  # noqa: E402

MSMARCO = ROOT.parent / "shared" / "data" / "msmarco-1743"
OUT = ROOT / "benchmarks" / "out"
MODEL = "openai/gpt-4o-mini"
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


class FakeServer(FakeLLMServer):
    """The fake server, accepting uploads up to OpenAI's 200 MB batch-file limit.

    FakeLLMServer caps request bodies at 64 MiB (aiohttp's client_max_size), below the
    200 MiB that dvsynth fills a batch file to (OpenAIBatches.max_bytes): at 10,000 seeds
    validate's first 50,000-request file is about 76 MB and would get HTTP 413.
    """

    def app(self):  # type: ignore[no-untyped-def]
        app = super().app()
        app._client_max_size = 256 * 2**20  # aiohttp reads it per request
        return app


# ---------------------------------------------------------------------------- seeds


def load_msmarco() -> tuple[list[str], list[str], list[int]]:
    """(query texts, passage texts, index of each query's judged passage)."""
    queries = [json.loads(line) for line in (MSMARCO / "queries.jsonl").open(encoding="utf-8")]
    corpus = [json.loads(line) for line in (MSMARCO / "corpus.jsonl").open(encoding="utf-8")]
    position = {doc["_id"]: i for i, doc in enumerate(corpus)}
    judged: dict[str, int] = {}
    with (MSMARCO / "qrels-test.tsv").open(encoding="utf-8") as qrels:
        next(qrels)
        for line in qrels:
            qid, pid, score = line.rstrip("\n").split("\t")
            if int(score) > 0 and pid in position:
                judged.setdefault(qid, position[pid])
    # MS MARCO holds U+0085 (NEL) where cp1252 had an ellipsis; the fake batch API's
    # str.splitlines() cuts a request line there and fails the whole batch, so it is
    # turned back into the ellipsis it was (see benchmarks/README.md, issue 15).
    texts = [doc["text"].replace("\x85", "\u2026") for doc in corpus]
    base = [judged.get(q["_id"], i % len(texts)) for i, q in enumerate(queries)]
    return [q["text"] for q in queries], texts, base


def seed_rows(n: int) -> list[dict]:
    """N deterministic triples (see the module doc)."""
    queries, passages, base = load_msmarco()
    size = len(passages)
    rows = []
    for i in range(n):
        q, k = i % len(queries), i // len(queries)
        picks = [(base[q] + 7 * k) % size] + [(base[q] + j + 13 * k) % size for j in (1, 2, 3)]
        for j in range(1, 4):  # four distinct passages, whatever k is
            while picks[j] in picks[:j]:
                picks[j] = (picks[j] + 1) % size
        pos, neg, *others = (passages[p] for p in picks)
        rows.append(
            {
                "id": f"msm{i:06d}",
                "query": queries[q],
                "positive": f"kwpos{i} {pos}",
                "negative": f"kwneg{i} {neg}",
                "other_negatives": others,
            }
        )
    return rows


def write_seeds(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in seed_rows(n):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# ---------------------------------------------------------------------------- running


def dvsynth(args: list[str], profile: Path | None = None) -> list[str]:
    if profile is not None:
        return [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "dvsynth.cli", *args]
    return [sys.executable, "-m", "dvsynth.cli", *args]


def gnu_time(command: list[str]) -> dict:
    """Run under GNU time: wall, CPU (user + sys) seconds and peak RSS (MiB) of that process."""
    done = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %e %U %S %M", *command],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"{command[3:6]} exited {done.returncode}: {done.stderr[-3000:]}")
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("TIME ")][-1]
    wall, user, system, rss_kb = line.split()[1:]
    return {
        "wall_s": float(wall),
        "cpu_s": round(float(user) + float(system), 2),
        "peak_rss_mib": round(int(rss_kb) / 1024, 1),
    }


class Counters:
    """What the fakes saw during one command."""

    def __init__(self, server: FakeLLMServer, fake: FakeOpenAIBatches) -> None:
        self.server, self.fake = server, fake
        self.before = self.now()

    def now(self) -> dict:
        fake = self.fake
        return {
            "batch_requests": sum(fake.requests_by_custom_id.values()),
            "batches": fake.batches_created,
            "uploaded_bytes": sum(len(u) for u in fake.uploads),
            "http_calls": sum(fake.calls.values()),
            "status_polls": fake.calls["GET /v1/batches/{id}"],
            "online_requests": self.server.total_requests,
        }

    def delta(self) -> dict:
        after = self.now()
        self.fake.uploads.clear()  # the bytes are counted; do not hold them
        return {k: after[k] - self.before[k] for k in after}


def generate_args(seeds: Path, run: Path, server: FakeLLMServer, batch: bool) -> list[str]:
    args = ["generate", "--seeds", str(seeds), "--model", MODEL, "--api-base", server.api_base]
    if batch:
        args += ["--batch", "--wait", "--poll-interval", "0.01"]
    else:
        args += ["--concurrency", "64"]
    return [*args, "--quiet", "--out", str(run)]


def validate_args(run: Path, server: FakeLLMServer) -> list[str]:
    return [
        "validate",
        str(run),
        "--judge-model",
        MODEL,
        "--judge-api-base",
        server.api_base,
        "--batch",
        "--wait",
        "--poll-interval",
        "0.01",
        "--quiet",
    ]


def run_stats(run: Path) -> dict:
    done = subprocess.run(
        dvsynth(["stats", str(run), "--json"]),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def price(stats: dict) -> dict:
    """Per stage: tokens, batch cost (dvsynth's), the same tokens online, the ratio."""
    from dvsynth.llm.cost import online_price

    out = {}
    for stage, spend in stats["batch"].items():
        online = online_price(MODEL, spend["prompt_tokens"], spend["completion_tokens"])
        out[stage] = {
            **spend,
            "online_usd_same_tokens": None if online is None else round(online, 6),
            "batch_over_online": round(spend["cost_usd"] / online, 4) if online else None,
        }
    return out


def one_batch_run(n: int, work: Path, profile_dir: Path | None = None) -> dict:
    seeds = write_seeds(work / f"seeds-{n}.jsonl", n)
    run = work / f"run-{n}"
    server = FakeServer()
    fake = FakeOpenAIBatches(server, polls_to_complete=1)
    result: dict = {"seeds": n}
    with server:
        for name, args in (
            ("generate", generate_args(seeds, run, server, batch=True)),
            ("validate", validate_args(run, server)),
        ):
            counters = Counters(server, fake)
            profile = None if profile_dir is None else profile_dir / f"{name}-{n}.prof"
            result[name] = {**gnu_time(dvsynth(args, profile)), **counters.delta()}
        stats = run_stats(run)
    result["rows"] = {
        "rows": stats["rows"],
        "status": stats["status"],
        "verified": stats["verified"],
        "reasons": stats["reasons"],
        "other_negatives_kept": stats["other_negatives_kept"],
    }
    failed = {k: v for k, v in stats["status"].items() if k not in ("kept", "rejected")}
    online = result["generate"]["online_requests"] + result["validate"]["online_requests"]
    if failed or online:
        print(f"WARNING {n} seeds: rows {failed}, {online} online requests", file=sys.stderr)
    result["online_spend"] = {"generator": stats.get("generator"), "judge": stats.get("judge")}
    result["cost"] = price(stats)
    return result


def one_online_run(n: int, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    seeds = write_seeds(work / f"seeds-online-{n}.jsonl", n)
    server = FakeServer()
    fake = FakeOpenAIBatches(server, polls_to_complete=1)
    with server:
        counters = Counters(server, fake)
        timing = gnu_time(dvsynth(generate_args(seeds, work / f"online-{n}", server, False)))
        return {"seeds": n, "generate": {**timing, **counters.delta()}}


def top_functions(path: Path, count: int = 15) -> list[str]:
    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tottime, cumtime, calls, f"{Path(filename).name}:{line}({name})"))
    rows.sort(reverse=True)
    return [
        f"{tot:7.2f}s self {cum:7.2f}s cum {calls:9d} calls  {where}"
        for tot, cum, calls, where in rows[:count]
    ]


# ---------------------------------------------------------------------------- report


def median_of(results: list[dict], *keys: str) -> float:
    values = []
    for result in results:
        value = result
        for key in keys:
            value = value[key]
        values.append(value)
    return statistics.median(values)


def summarize(size: int, results: list[dict], startup: dict) -> dict:
    gen_cpu = median_of(results, "generate", "cpu_s")
    val_cpu = median_of(results, "validate", "cpu_s")
    gen_req = results[0]["generate"]["batch_requests"]
    val_req = results[0]["validate"]["batch_requests"]
    net = gen_cpu + val_cpu - startup["generate"]["cpu_s"] - startup["validate"]["cpu_s"]
    net_req = gen_req + val_req - startup["generate"]["batch_requests"]
    net_req -= startup["validate"]["batch_requests"]
    return {
        "seeds": size,
        "repeats": len(results),
        "generate": {
            "requests": gen_req,
            "median_wall_s": median_of(results, "generate", "wall_s"),
            "median_cpu_s": gen_cpu,
            "peak_rss_mib": max(r["generate"]["peak_rss_mib"] for r in results),
            "cpu_ms_per_request_net": round(
                1000
                * (gen_cpu - startup["generate"]["cpu_s"])
                / max(1, gen_req - startup["generate"]["batch_requests"]),
                3,
            ),
        },
        "validate": {
            "requests": val_req,
            "median_wall_s": median_of(results, "validate", "wall_s"),
            "median_cpu_s": val_cpu,
            "peak_rss_mib": max(r["validate"]["peak_rss_mib"] for r in results),
            "cpu_ms_per_request_net": round(
                1000
                * (val_cpu - startup["validate"]["cpu_s"])
                / max(1, val_req - startup["validate"]["batch_requests"]),
                3,
            ),
        },
        "cpu_s_per_10k_requests_net": round(10_000 * net / max(1, net_req), 2),
        "cpu_s_per_10k_requests_gross": round(
            10_000 * (gen_cpu + val_cpu) / (gen_req + val_req), 2
        ),
        "cost": results[0]["cost"],
        "rows": results[0]["rows"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--online", type=int, nargs="*", default=[1000], help="seed counts generated online"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the first size")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "machine": f"{os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "model": MODEL,
        "command": "python benchmarks/batch.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
    }
    work = Path(tempfile.mkdtemp(prefix="dvsynth-bench-batch-"))
    try:
        started = time.perf_counter()
        runs = [one_batch_run(1, work / f"startup-{r}") for r in range(args.repeats)]
        startup = {
            name: {
                "cpu_s": median_of(runs, name, "cpu_s"),
                "wall_s": median_of(runs, name, "wall_s"),
                "peak_rss_mib": median_of(runs, name, "peak_rss_mib"),
                "batch_requests": runs[0][name]["batch_requests"],
            }
            for name in ("generate", "validate")
        }
        report["startup_1_seed"] = {**startup, "runs": runs}
        print(f"start-up (1 seed): {json.dumps(startup)}", flush=True)
        report["sizes"] = []
        for index, size in enumerate(args.sizes):
            results = []
            for repeat in range(args.repeats):
                folder = work / f"n{size}-r{repeat}"
                folder.mkdir(parents=True)
                profile_dir = folder if args.profile and index == 0 and repeat == 0 else None
                result = one_batch_run(size, folder, profile_dir)
                if profile_dir is not None:
                    result["profile"] = {
                        name: top_functions(profile_dir / f"{name}-{size}.prof")
                        for name in ("generate", "validate")
                    }
                    for prof in profile_dir.glob("*.prof"):  # for pstats / snakeviz
                        shutil.copy(prof, OUT / f"batch-{prof.name}")
                    for name, lines in result["profile"].items():
                        print(f"--- cProfile {name} {size} (top by self time)")
                        print("\n".join(lines))
                results.append(result)
                shutil.rmtree(folder, ignore_errors=True)
                print(f"{size} seeds, repeat {repeat + 1}: {json.dumps(result)}", flush=True)
            summary = summarize(size, results, startup)
            summary["runs"] = results
            report["sizes"].append(summary)
        report["online_generate"] = []
        if args.online:
            folder = work / "online"
            ones = [one_online_run(1, folder / f"one-{r}") for r in range(args.repeats)]
        for size in args.online:
            fulls = [one_online_run(size, folder / f"{size}-{r}") for r in range(args.repeats)]
            cpu = median_of(fulls, "generate", "cpu_s") - median_of(ones, "generate", "cpu_s")
            requests = size - 1
            online = {
                "seeds": size,
                "repeats": args.repeats,
                "median_wall_s": median_of(fulls, "generate", "wall_s"),
                "median_cpu_s": median_of(fulls, "generate", "cpu_s"),
                "peak_rss_mib": max(r["generate"]["peak_rss_mib"] for r in fulls),
                "startup_median_cpu_s": median_of(ones, "generate", "cpu_s"),
                "cpu_ms_per_request_net": round(1000 * cpu / requests, 3),
                "runs": fulls,
                "startup_runs": ones,
            }
            report["online_generate"].append(online)
            brief = {k: v for k, v in online.items() if not k.endswith("runs")}
            print(f"online generate: {json.dumps(brief)}", flush=True)
        report["total_wall_s"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (OUT / "batch.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)


def print_table(report: dict) -> None:
    print("| seeds | command | requests | wall s | CPU s | CPU ms/req (net) | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for size in report["sizes"]:
        for name in ("generate", "validate"):
            part = size[name]
            print(
                f"| {size['seeds']:,} | {name} | {part['requests']:,} | {part['median_wall_s']} | "
                f"{part['median_cpu_s']} | {part['cpu_ms_per_request_net']} | "
                f"{part['peak_rss_mib']} |"
            )
    for size in report["sizes"]:
        print(
            f"{size['seeds']:,} seeds: {size['cpu_s_per_10k_requests_net']} CPU s per 10,000 "
            f"requests net of start-up ({size['cpu_s_per_10k_requests_gross']} gross)"
        )
        for stage, cost in size["cost"].items():
            print(
                f"  {stage}: {cost['answered']:,} answered, {cost['prompt_tokens']:,} prompt + "
                f"{cost['completion_tokens']:,} completion tokens, batch ${cost['cost_usd']:.4f} "
                f"vs online ${cost['online_usd_same_tokens']:.4f}: {cost['batch_over_online']}"
            )
    for online in report["online_generate"]:
        print(
            f"online generate, {online['seeds']:,} seeds, --concurrency 64: "
            f"{online['median_wall_s']} s wall, {online['median_cpu_s']} CPU s, "
            f"{online['cpu_ms_per_request_net']} CPU ms/request net, "
            f"peak RSS {online['peak_rss_mib']} MiB"
        )


if __name__ == "__main__":
    main()
