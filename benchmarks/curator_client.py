"""Send a prompt file through bespokelabs-curator to a local OpenAI-compatible server.

Runs in its own venv (curator is not a dvsynth dependency):

    /work/curator-venv/bin/python benchmarks/curator_client.py --prompts PROMPTS.jsonl \
        --api-base http://127.0.0.1:PORT/v1 --concurrency C [--model fake-model]

PROMPTS.jsonl holds one {"id": ..., "prompt": ...} per line; each prompt goes once as a single
user message (max_tokens 1024, temperature 0) through curator's OpenAI online backend, with at
most C requests in flight (curator's `max_concurrent_requests`, an asyncio.Semaphore) and
request/token rate limits far above anything a run needs. Prints one JSON line to stdout:
{"n": prompts, "ok": successful responses, "wall_s": first request sent -> curator run returned}.
Everything else (curator's logs, progress bar) goes to stderr.

Fully offline: no telemetry, no viewer, no model-cost-map or tiktoken download, no HF hub, and
a fresh temporary curator cache per run so nothing is served from an earlier run's cache.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import importlib.util
import json
import os
import shutil
import sys
import tempfile


def _offline_env(cache_dir: str) -> None:
    """Environment that keeps curator, litellm, tiktoken and HF off the network.

    Must run before curator (and so litellm/tiktoken/datasets) is imported.
    """
    env = os.environ
    # tiktoken: curator counts tokens with cl100k_base. litellm ships the encoding files
    # under litellm_core_utils/tokenizers/, named by the sha1 of their blob URL, which is
    # exactly tiktoken's cache layout; litellm itself points TIKTOKEN_CACHE_DIR there.
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.submodule_search_locations:
        tok_dir = os.path.join(
            list(spec.submodule_search_locations)[0], "litellm_core_utils", "tokenizers"
        )
        if os.path.isdir(tok_dir):
            env["TIKTOKEN_CACHE_DIR"] = tok_dir
    # litellm fetches its model cost map from GitHub at import unless told to use its bundled copy.
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    # curator's PostHog telemetry (bespokelabs/curator/telemetry/client.py).
    env["TELEMETRY_ENABLED"] = "false"
    # curator's hosted viewer (api.bespokelabs.ai) is used only when CURATOR_VIEWER is truthy.
    env["CURATOR_VIEWER"] = "0"
    env.pop("BESPOKE_API_KEY", None)
    # Hugging Face hub / datasets (curator builds a datasets.Dataset from the prompts).
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_DATASETS_OFFLINE"] = "1"
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    # curator turns the prompts into a datasets.Dataset via a generator, which datasets
    # caches on disk; keep that in the per-run temp dir too (not ~/.cache/huggingface).
    env["HF_DATASETS_CACHE"] = os.path.join(cache_dir, "hf_datasets")
    # Fresh cache per run, so every run really sends its requests.
    env["CURATOR_CACHE_DIR"] = cache_dir
    # Plain tqdm progress on stderr instead of a rich live display.
    env.setdefault("CURATOR_DISABLE_RICH_DISPLAY", "1")
    # curator's aiohttp session uses trust_env=True: never route the local server via a proxy.
    no_proxy = ",".join(x for x in (env.get("NO_PROXY", ""), "127.0.0.1,localhost") if x)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy


def _count_responses(run_dir: str) -> tuple[int, datetime.datetime | None]:
    """(successful responses, earliest request creation time) from curator's responses files."""
    ok_rows: set[int] = set()
    first: datetime.datetime | None = None
    for path in glob.glob(os.path.join(run_dir, "**", "responses_*.jsonl"), recursive=True):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                created = datetime.datetime.fromisoformat(rec["created_at"])
                if first is None or created < first:
                    first = created
                if rec.get("response_errors") is None and rec.get("response_message") is not None:
                    ok_rows.add(rec["generic_request"]["original_row_idx"])
    return len(ok_rows), first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", required=True, help="JSONL of {'id', 'prompt'}")
    parser.add_argument("--api-base", required=True, help="e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--concurrency", type=int, required=True, help="max requests in flight")
    parser.add_argument("--model", default="fake-model")
    args = parser.parse_args()
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")

    rows = []
    with open(args.prompts) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                rows.append({"id": str(rec["id"]), "prompt": rec["prompt"]})

    cache_dir = tempfile.mkdtemp(prefix="curator-bench-")
    _offline_env(cache_dir)
    real_stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            from bespokelabs import curator
            from bespokelabs.curator.request_processor.online import (
                openai_online_request_processor as oai,
            )

            # curator's OpenAI backend POSTs an empty chat request at construction to read
            # x-ratelimit-* headers. The limits here are set explicitly, so skip that probe:
            # it is not one of the prompts and would count as a request on the server.
            oai.OpenAIOnlineRequestProcessor.get_header_based_rate_limits = lambda self: (
                None,
                None,
            )

            class PromptLLM(curator.LLM):
                def prompt(self, input):
                    return input["prompt"]  # a str becomes one user message

                def parse(self, input, response):
                    return {"id": input["id"], "response": response}

            llm = PromptLLM(
                model_name=args.model,
                backend="openai",
                generation_params={"max_tokens": 1024, "temperature": 0},
                backend_params={
                    "base_url": args.api_base,
                    "api_key": "dummy-key",
                    # Caps in-flight requests (asyncio.Semaphore in process_requests_from_file).
                    "max_concurrent_requests": args.concurrency,
                    # Far above any run: curator refills these buckets continuously, and
                    # reserves ~4096 output tokens per request for an unknown model.
                    "max_requests_per_minute": 1_000_000_000,
                    "max_tokens_per_minute": 1_000_000_000_000,
                    "require_all_responses": False,
                },
            )
            error = None
            try:
                llm(rows, working_dir=cache_dir)
            except Exception as e:  # e.g. "All requests failed": still report the counts
                error = e
            end = datetime.datetime.now()
            ok, first = _count_responses(cache_dir)
            if error is not None:
                print(f"curator run raised: {type(error).__name__}: {error}", file=sys.stderr)
        wall_s = round((end - first).total_seconds(), 3) if first is not None else None
        print(
            json.dumps({"n": len(rows), "ok": ok, "wall_s": wall_s}), file=real_stdout, flush=True
        )
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
