"""The arms on a small model, timed: base, orig, dv and dv-add of all-MiniLM-L6-v2 on the
gold set, each evaluated on FollowIR (mteb's own tasks), NanoBEIR
(sentence-transformers' evaluator) and the gold pairs, through baselines/run_arms.py.

    python benchmarks/gpu/arms.py [--data-dir COPIES] [--model NAME] [--max-pairs N]
        [--epochs 2] [--batch-size 32] [--out benchmarks/out/gpu-arms]

Without --data-dir (a machine without the Hub) the FollowIR and NanoBEIR data are the
tests' fixtures (tests/followir_fixture.py, tests/mteb_fixture.py), written to
OUT/copies in mteb's layout, so the run proves the path and gives each arm's wall time,
not the paper's numbers. With --data-dir pointing at real copies (`hf download`, see
baselines/README.md) the same command gives the real ones. Writes OUT/arms.md,
OUT/arms.json and benchmarks/out/gpu_arms.json (wall time per arm, device, versions).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"


def fixture_copies(folder: Path) -> Path:
    from baselines.mteb_tasks import BENCHMARKS
    from tests.mteb_fixture import write_copies

    ids = [f"mteb/{task}" for task in BENCHMARKS["followir"]]
    return write_copies(folder, [*ids, "sentence-transformers/NanoBEIR-en"])


def device() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="real copies (default: the fixtures)")
    parser.add_argument("--data", default=str(GOLD), help="training pairs (default: gold set)")
    parser.add_argument("--model", help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--arms", nargs="+", default=["base", "orig", "dv", "dv-add"])
    parser.add_argument("--max-pairs", type=int)
    parser.add_argument("--epochs", default="2")
    parser.add_argument("--batch-size", default="32")
    parser.add_argument("--mix", help="FILE_OR_HUB_ID:SHARE, passed to run_arms.py")
    parser.add_argument("--rows", help="budget per arm, passed to run_arms.py")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "gpu-arms")
    args = parser.parse_args()

    import torch

    from baselines import run_arms

    data_dir = args.data_dir or fixture_copies(args.out / "copies")
    nano = [] if args.data_dir else ["--nanobeir-datasets", "msmarco", "scifact"]
    argv = ["--data", args.data, "--out", str(args.out), "--arms", *args.arms]
    argv += ["--epochs", args.epochs, "--batch-size", args.batch_size, "--max-seq-length", "256"]
    if args.model:
        argv += ["--model", args.model]
    if args.max_pairs:
        argv += ["--max-pairs", str(args.max_pairs)]
    if args.mix:
        argv += ["--mix", args.mix]
    if args.rows:
        argv += ["--rows", args.rows]
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        argv.append("--bf16")
    argv += ["--", "--data-dir", str(data_dir), *nano, "--gold", str(GOLD)]
    print("$ python baselines/run_arms.py", " ".join(argv), flush=True)
    started = time.perf_counter()
    code = run_arms.main(argv)
    wall = time.perf_counter() - started
    if code:
        return code
    table = json.loads((args.out / "arms.json").read_text())
    report = {
        "device": device(),
        "torch": torch.__version__,
        "argv": argv,
        "fixtures": args.data_dir is None,
        "wall_s": round(wall, 1),
        "seconds_per_arm": {arm: row["seconds"] for arm, row in table["arms"].items()},
        "arms": table["arms"],
    }
    out = ROOT / "benchmarks" / "out" / "gpu_arms.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["seconds_per_arm"]), f"total {wall:.0f} s on {report['device']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
