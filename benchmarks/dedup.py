"""Near-duplicate dedup at scale: wall time, peak memory, recall of planted duplicates.

Builds N instruction texts of realistic length (query + two instructions, ~30-45 words,
the text dedup compares for a pair) from the msmarco-1743 queries and a grammar of
objective constraints (time, place, audience, source type, format, method, exclusion),
then plants near duplicates: a share of the texts are copies of another text with one
or two word-level edits (a word dropped, inserted, repeated, two words swapped, a typo,
a punctuation or case change). Runs `dvsynth.validators.dedup.find_duplicates` on all
of them in a fresh process per size, measured by GNU time.

Recall: planted copies reported as duplicates (exact or near) of their source's cluster.
Also reported: unplanted texts removed (the grammar can produce genuine near duplicates
by chance, so these are not all false positives).

    python benchmarks/dedup.py [--sizes 100000 1000000] [--planted-share 0.05]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"
QUERIES = ROOT.parent / "shared" / "data" / "msmarco-1743" / "queries.jsonl"

OPENERS = ["Only", "I need", "Focus on", "Show me", "I am looking for", "Give me", "Find"]
SOURCES = [
    "peer-reviewed studies",
    "government reports",
    "news articles",
    "forum threads",
    "encyclopedia entries",
    "manufacturer manuals",
    "court decisions",
    "patient leaflets",
    "textbook chapters",
    "company press releases",
    "travel guides",
    "cookbook recipes",
]
TIMES = [
    "published after {y}",
    "from before {y}",
    "written between {y} and {y2}",
    "covering the period since {y}",
    "updated no earlier than {y}",
]
PLACES = [
    "in Canada",
    "in rural India",
    "across the European Union",
    "in Texas",
    "in Japan",
    "in sub-Saharan Africa",
    "in Australia",
    "in Brazil",
    "in Scotland",
]
AUDIENCES = [
    "for first-year students",
    "for practising nurses",
    "for small landlords",
    "for retirees",
    "for software engineers",
    "for parents of toddlers",
    "for amateur gardeners",
    "for tax advisers",
]
EXCLUDE = [
    "exclude anything that only gives definitions",
    "leave out opinion pieces",
    "skip sources that mention prices",
    "do not include forum advice",
    "nothing aimed at professionals",
    "avoid results older than a decade",
    "drop pages that are mainly advertising",
    "ignore studies on animals",
]
METHODS = [
    "based on randomised trials",
    "with step-by-step instructions",
    "that cite primary data",
    "including worked examples",
    "with a comparison table",
    "reporting survey results",
    "written as a personal account",
]


def instruction(rng: random.Random) -> str:
    year = rng.randint(1950, 2024)
    time_part = rng.choice(TIMES).format(y=year, y2=year + rng.randint(1, 30))
    parts = [
        rng.choice(OPENERS),
        rng.choice(SOURCES),
        time_part,
        rng.choice(PLACES),
        rng.choice(AUDIENCES) if rng.random() < 0.6 else rng.choice(METHODS),
    ]
    return " ".join(parts) + "; " + rng.choice(EXCLUDE) + "."


def perturb(text: str, rng: random.Random) -> str:
    """One or two word-level edits, the kind two generator samples differ by."""
    words = text.split()
    for _ in range(rng.choice((1, 1, 2))):
        kind = rng.choice(["drop", "insert", "repeat", "swap", "typo", "punct", "case"])
        i = rng.randrange(len(words))
        if kind == "drop" and len(words) > 5:
            del words[i]
        elif kind == "insert":
            words.insert(i, rng.choice(["really", "also", "please", "mainly", "just"]))
        elif kind == "repeat":
            words.insert(i, words[i])
        elif kind == "swap" and i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
        elif kind == "typo" and len(words[i]) > 3:
            w = words[i]
            j = rng.randrange(1, len(w) - 1)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        elif kind == "punct":
            words[i] = words[i].rstrip(".,;") + rng.choice([",", ";", ":", ""])
        else:
            words[i] = words[i].upper() if words[i].islower() else words[i].lower()
    return " ".join(words)


def build(n: int, planted_share: float, seed: int = 0) -> tuple[list[str], list[str], dict]:
    rng = random.Random(seed)
    queries = [json.loads(line)["text"] for line in QUERIES.open(encoding="utf-8")]
    n_planted = int(n * planted_share)
    n_base = n - n_planted
    texts = [
        f"{rng.choice(queries)} | {instruction(rng)} | {instruction(rng)}" for _ in range(n_base)
    ]
    ids = [f"base{i:08d}" for i in range(n_base)]
    planted = {}
    for j in range(n_planted):
        source = rng.randrange(n_base)
        pid = f"plant{j:08d}"
        ids.append(pid)
        texts.append(perturb(texts[source], rng))
        planted[pid] = ids[source]
    return ids, texts, planted


def measure_one(n: int, planted_share: float, threshold: float) -> dict:
    """In this process: build, dedup, score (the caller measures RSS)."""
    from dvsynth.validators.dedup import find_duplicates

    ids, texts, planted = build(n, planted_share)
    words = sorted(len(t.split()) for t in texts)
    started = time.perf_counter()
    found = find_duplicates(ids, texts, threshold)
    wall = time.perf_counter() - started
    root = {i: (found[i].survivor if i in found else i) for i in ids}
    recalled = sum(1 for pid, src in planted.items() if pid in found and root[pid] == root[src])
    flagged_base = sum(1 for i in found if i.startswith("base"))
    return {
        "n": n,
        "planted": len(planted),
        "median_words": words[len(words) // 2],
        "dedup_wall_s": round(wall, 1),
        "recall_planted": round(recalled / max(1, len(planted)), 4),
        "planted_found_any": sum(1 for p in planted if p in found),
        "unplanted_removed": flagged_base,
        "exact": sum(1 for d in found.values() if d.kind == "exact"),
        "near": sum(1 for d in found.values() if d.kind == "near"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--planted-share", type=float, default=0.05)
    parser.add_argument("--threshold", type=float, default=90.0)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.planted_share, args.threshold)))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for n in args.sizes:
        done = subprocess.run(
            [
                "/usr/bin/time",
                "-f",
                "TIME %e %M",
                sys.executable,
                __file__,
                "--one",
                str(n),
                "--planted-share",
                str(args.planted_share),
                "--threshold",
                str(args.threshold),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(done.stdout.strip().splitlines()[-1])
        wall, rss_kb = [ln for ln in done.stderr.splitlines() if ln.startswith("TIME ")][
            -1
        ].split()[1:]
        row["process_wall_s"] = float(wall)
        row["peak_rss_mib"] = round(int(rss_kb) / 1024, 1)
        results.append(row)
        print(json.dumps(row), flush=True)
    (OUT / "dedup.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
