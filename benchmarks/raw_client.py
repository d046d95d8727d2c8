"""The practical ceiling: a minimal asyncio HTTP client (aiohttp, no framework).

Sends every prompt of a JSONL file ({"id", "prompt"}) once as a chat completion, at
most C in flight, and prints {"n", "ok"}. Used by throughput.py as the reference;
`--uvloop` runs the same loop on uvloop, the event loop dvsynth's stages use.

    python benchmarks/raw_client.py --prompts P.jsonl --api-base URL --concurrency C [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp


async def run(prompts: list[str], api_base: str, concurrency: int, model: str) -> int:
    url = api_base.rstrip("/") + "/chat/completions"
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(prompt: str) -> bool:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 1024,
                "temperature": 0,
            }
            async with semaphore, session.post(url, json=body) as response:
                data = await response.json()
                return bool(data["choices"][0]["message"]["content"])

        results = await asyncio.gather(*(one(p) for p in prompts), return_exceptions=True)
    return sum(r is True for r in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", required=True)
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    with open(args.prompts, encoding="utf-8") as handle:
        prompts = [json.loads(line)["prompt"] for line in handle]
    ok = asyncio.run(run(prompts, args.api_base, args.concurrency, args.model))
    print(json.dumps({"n": len(prompts), "ok": ok}))


if __name__ == "__main__":
    main()
