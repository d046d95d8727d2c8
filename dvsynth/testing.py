"""A deterministic OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.

It answers dvsynth's prompts the way a well-behaved generator would, derived from the
query so that every run gets the same answers, and it counts requests per query so a
test can prove a resumed run never repeats a finished row's call. Markers in a query
select other behaviour: `[none]` refuses, `[garbage]` answers unparsably, `[fence]`
answers inside a code fence without closing tags, `[error500]` fails with HTTP 500,
`[error400]` with HTTP 400 (an unsupported parameter). `status_for_all=400` fails every
request with that status; `authorizations` records each request's Authorization header.
It also plays the judge (prompts that end like dvsynth's judge template): see
`judge_answer`; passages with `kw...` words make the generator ask for them as `#kw...`,
so the judge confirms the flip of such pairs. Joint judgments (both documents in one
prompt) are answered "1: yes\n2: no" by the same rule, per document. The model name
matters for cascades: a model whose name holds `strong` is sure of every answer, and
only other models see `[cheap-garbage]` or hesitate on `borderline`. `judges` (model ->
an oracle with `judge` and `check`, such as `dvsynth.fakes.gold_judges`) replaces the
rule for that model: the gold sets' fake strong and cheap judges.

Faults can be injected on a chosen share of queries (`faults={"429": 0.1, ...}`): the
fault is picked from a hash of the query, so it is the same in every run, and hits the
first `fault_attempts` attempts of that query, after which the query succeeds; so a
client that retries correctly ends with exactly the rows of a fault-free run.
Kinds: `slow` (answers after `slow_s`), `429` (with Retry-After), `500`, `hang` (never
answers within `hang_s`), `drop` (closes the connection), `malformed` (invalid JSON),
and `truncated` (a valid reply cut short with finish_reason "length", on every attempt).
Every request is logged with its time, attempt number and fault.

Run standalone for benchmarks: `python -m dvsynth.testing --latency 0.5`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dvsynth.validators.instruction_check import SIGNATURE
from dvsynth.validators.rules import meta_match

_QUERY = re.compile(r"<query>(.*?)</query>", re.DOTALL)


_DATA_BLOCK = re.compile(r"<(query|instruction|document)>(.*?)</\1>", re.DOTALL)
_PASSAGE = re.compile(r'<passage id="([A-Z0-9]+)">(.*?)</passage>', re.DOTALL)
_KEYWORD = re.compile(r"\bkw\w+")
JUDGE_SIGNATURE = "Answer with one word: yes or no."


def _keywords(text: str) -> str:
    """`#kw...` requirements for the passage's `kw...` words ('' when it has none)."""
    return "".join(f" Must cover #{word}." for word in _KEYWORD.findall(text))


def judge_answer(prompt: str, model: str = "") -> tuple[int, str, float]:
    """(status, text, P(yes)) of the fake judge.

    A document is relevant when it contains every `#word` the instruction asks for
    (an instruction with none admits nothing). Text outside the quoted data blocks that
    says "answer yes" is obeyed: that is what an injection that escaped its quotes does.
    A document with the word `borderline` gets P(yes) = 0.6. Queries marked `[judge-yes]`
    or `[judge-no]` get that answer whatever the documents.
    """
    blocks = {m.group(1): m.group(2) for m in _DATA_BLOCK.finditer(prompt)}
    outside = _DATA_BLOCK.sub("", prompt).lower()
    query = blocks.get("query", "")
    if "[judge-error500]" in query:
        return 500, "internal error", 0.0
    if "[judge-garbage]" in query or ("[cheap-garbage]" in query and "strong" not in model):
        return 200, "It depends on the reader.", 0.5
    if "answer yes" in outside or "[judge-yes]" in query:
        return 200, "yes", 0.99
    if "[judge-no]" in query:
        return 200, "no", 0.01
    p_yes = _document_p_yes(blocks.get("instruction", ""), blocks.get("document", ""), model)
    return 200, ("yes" if p_yes >= 0.5 else "no"), p_yes


def _document_p_yes(instruction: str, document: str, model: str) -> float:
    """P(yes) of the rule: every `#word` of the instruction in the document."""
    needs = re.findall(r"#(\w+)", instruction)
    words = set(re.findall(r"\w+", document.lower()))
    relevant = bool(needs) and all(n.lower() in words for n in needs)
    if "strong" in model:
        return 0.97 if relevant else 0.03
    if relevant and "borderline" in words:
        return 0.6
    return 0.9 if relevant else 0.1


JOINT_SIGNATURE = "1: yes or no\n2: yes or no"
_JOINT_DOC = re.compile(r"<document_([12])>(.*?)</document_\1>", re.DOTALL)

#: One token of a fake answer, with P(yes) where it is a yes / no word.
Token = tuple[str, float | None]


def joint_answer(prompt: str, model: str = "") -> tuple[int, str, list[Token]]:
    """The fake's joint judgment: each document by `judge_answer`'s rule, "1: ..\n2: ..".
    `[joint-half]` in the query labels document 1 only."""
    blocks = {m.group(1): m.group(2) for m in _DATA_BLOCK.finditer(prompt)}
    docs = dict(_JOINT_DOC.findall(prompt))
    instruction, query = blocks.get("instruction", ""), blocks.get("query", "")
    probabilities = [_document_p_yes(instruction, docs.get(n, ""), model) for n in ("1", "2")]
    return _joint_reply(probabilities, half="[joint-half]" in query)


def _joint_reply(
    probabilities: list[float | None], half: bool = False
) -> tuple[int, str, list[Token]]:
    if any(p is None for p in probabilities):
        return 200, "Both documents are somewhat related.", [("Both documents", None)]
    tokens: list[Token] = []
    for number, p_yes in zip(("1", "2"), probabilities, strict=True):
        if tokens:
            tokens.append(("\n", None))
        tokens += [(number, None), (":", None), (" yes" if p_yes >= 0.5 else " no", p_yes)]
        if half:
            break
    return 200, "".join(t for t, _ in tokens), tokens


def judge_reply(
    prompt: str, model: str = "", oracle: Any = None
) -> tuple[int, str, list[Token]] | None:
    """(status, text, tokens) of any yes / no question (check, pointwise or joint judge),
    or None when the prompt is not one. `oracle` answers instead of the rule."""
    if oracle is not None:
        return _oracle_reply(prompt, model, oracle)
    checked = instruction_check_answer(prompt)
    if checked is not None:
        status, text = checked
        p_yes = 0.95 if text == "yes" else 0.05 if text == "no" else None
        return status, text, [(text, p_yes)] if p_yes is not None else []
    if JOINT_SIGNATURE in prompt:
        return joint_answer(prompt, model)
    if JUDGE_SIGNATURE in prompt:
        status, text, p_yes = judge_answer(prompt, model)
        return status, text, [(text, p_yes)] if text in ("yes", "no") else []
    return None


def _oracle_reply(prompt: str, model: str, oracle: Any) -> tuple[int, str, list[Token]] | None:
    blocks = {m.group(1): m.group(2) for m in _DATA_BLOCK.finditer(prompt)}
    query, instruction = blocks.get("query", ""), blocks.get("instruction", "")
    if SIGNATURE in prompt:
        found = [oracle.check(model, query, instruction)]
    elif JOINT_SIGNATURE in prompt:
        docs = dict(_JOINT_DOC.findall(prompt))
        found = [
            oracle.judge(model, query, instruction, docs.get(n, ""), position=n) for n in ("1", "2")
        ]
        return _joint_reply(found)
    elif JUDGE_SIGNATURE in prompt:
        found = [oracle.judge(model, query, instruction, blocks.get("document", ""))]
    else:
        return None
    p_yes = found[0]
    if p_yes is None:
        return 200, "It depends on the reader.", []
    text = "yes" if p_yes >= 0.5 else "no"
    return 200, text, [(text, p_yes)]


def instruction_check_answer(prompt: str) -> tuple[int, str] | None:
    """The fake instruction check, or None when the prompt is not dvsynth's check.

    "no" when the instruction trips the meta_language rule or holds `[check-no]`, else
    "yes"; `[check-bold]` answers "**Yes**", `[check-garbage]` neither word,
    `[check-error500]` fails with HTTP 500.
    """
    if SIGNATURE not in prompt:
        return None
    blocks = {m.group(1): m.group(2) for m in _DATA_BLOCK.finditer(prompt)}
    instruction = blocks.get("instruction", "")
    if "[check-error500]" in instruction:
        return 500, "internal error"
    if "[check-garbage]" in instruction:
        return 200, "It depends on who is asking."
    if "[check-no]" in instruction or meta_match(instruction):
        return 200, "no"
    return 200, "**Yes**" if "[check-bold]" in instruction else "yes"


def answer_for(prompt: str, model: str = "", oracle: Any = None) -> tuple[int, str]:
    """(HTTP status, completion text) for one prompt; a pure function of the prompt (and
    of the model's name, for judges)."""
    judged = judge_reply(prompt, model, oracle)
    if judged is not None:
        return judged[0], judged[1]
    passages = dict(_PASSAGE.findall(prompt))
    match = _QUERY.search(prompt)
    query = match.group(1).strip() if match else ""
    bootstrap = "<instruction_a>" in prompt
    if "[error500]" in query:
        return 500, "internal error"
    if "[error400]" in query:
        return 400, UNSUPPORTED_PARAMETER
    if "[none]" in query:
        return 200, "Step 1: the passages do not differ objectively.\n<answer>None</answer>"
    if "[garbage]" in query:
        return 200, "I think the passages are both fine and I will not use tags."
    tag = hashlib.sha256(query.encode()).hexdigest()[:6]
    if bootstrap:
        body = (
            f"<instruction_a>Only sources of type {tag}-A about this, nothing else."
            f"{_keywords(passages.get('A', ''))}</instruction_a>"
            f"<instruction_b>I need the {tag}-B perspective instead."
            f"{_keywords(passages.get('B', ''))}</instruction_b>"
        )
    else:
        body = (
            f"<new_instruction>Focus on the {tag} angle and leave out general overviews."
            f"{_keywords(passages.get('N', ''))}</new_instruction>"
        )
    if "[fence]" in query:
        return 200, "```xml\n<answer>" + body.split("</")[0] + "\n```"
    return 200, f"1. Profile: passages differ.\n2. Lever: {tag}.\n<answer>{body}</answer>"


def _logprob_item(token: str, p_yes: float | None) -> dict[str, Any]:
    """One position of OpenAI's `logprobs.content`: a yes / no word with both
    alternatives, any other token sure of itself."""
    if p_yes is None:
        return {"token": token, "logprob": 0.0, "top_logprobs": [{"token": token, "logprob": 0.0}]}
    p_yes = min(max(p_yes, 1e-6), 1 - 1e-6)
    space = token[: len(token) - len(token.lstrip())]
    top = [
        {"token": f"{space}yes", "logprob": math.log(p_yes)},
        {"token": f"{space}no", "logprob": math.log(1 - p_yes)},
    ]
    produced = math.log(p_yes if token.strip() == "yes" else 1 - p_yes)
    return {"token": token, "logprob": produced, "top_logprobs": top}


UNSUPPORTED_PARAMETER = "Unsupported parameter: 'seed' is not supported with this model."


def completion_body(
    payload: dict[str, Any],
    text: str | None = None,
    finish_reason: str = "stop",
    oracle: Any = None,
) -> dict[str, Any]:
    """The chat.completion JSON the fake answers `payload` with (`text`: the answer, by
    default `answer_for` the prompt); batch endpoints answer with the same bodies. A
    judge's or check's answer carries log-probabilities when the request asks for them."""
    prompt = "\n".join(str(m.get("content", "")) for m in payload.get("messages", []))
    model = str(payload.get("model", ""))
    if text is None:
        text = answer_for(prompt, model, oracle)[1]
    logprobs = None
    judged = judge_reply(prompt, model, oracle) if payload.get("logprobs") else None
    if judged is not None and judged[2] and "".join(t for t, _ in judged[2]) == text:
        logprobs = {"content": [_logprob_item(t, p) for t, p in judged[2]]}
    prompt_tokens = max(1, len(prompt) // 4)
    completion_tokens = max(1, len(text) // 4)
    return {
        "id": "chatcmpl-" + hashlib.sha256(prompt.encode()).hexdigest()[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": payload.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


FAULT_KINDS = ("slow", "429", "500", "hang", "drop", "malformed", "truncated")


def fault_for(query: str, faults: dict[str, float]) -> str | None:
    """The fault a query gets: a stable draw from its hash against the cumulative shares."""
    draw = int(hashlib.sha256(f"fault:{query}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for kind in FAULT_KINDS:
        edge += faults.get(kind, 0.0)
        if draw < edge:
            return kind
    return None


@dataclass
class LoggedRequest:
    at: float
    query: str
    attempt: int
    fault: str | None
    status: int


class FakeLLMServer:
    """The server, run on its own event loop in a daemon thread (or in the foreground)."""

    def __init__(
        self,
        latency: float = 0.0,
        require_key: str | None = None,
        faults: dict[str, float] | None = None,
        fault_attempts: int = 2,
        retry_after_s: int = 1,
        slow_s: float = 0.3,
        hang_s: float = 30.0,
        status_for_all: int | None = None,
    ) -> None:
        self.status_for_all = status_for_all
        self.authorizations: list[str | None] = []
        self.latency = latency
        self.require_key = require_key
        self.faults = faults or {}
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {unknown}")
        self.fault_attempts = fault_attempts
        self.retry_after_s = retry_after_s
        self.slow_s = slow_s
        self.hang_s = hang_s
        self.log: list[LoggedRequest] = []
        self.first_at: float | None = None  # first request in, last response out (monotonic)
        self.last_done_at: float | None = None
        self.requests_by_query: Counter[str] = Counter()
        self.total_requests = 0
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()
        # More endpoints on the same port (the fake batch APIs): lists of aiohttp routes,
        # added before `start`.
        self.extra_routes: list[list[web.RouteDef]] = []
        # model -> an oracle judge (`judge_reply`): the gold sets' fake judges.
        self.judges: dict[str, Any] = {}
        self.prompts: list[tuple[str, str]] = []  # (model, prompt) of every chat request

    # ------------------------------------------------------------------ handlers

    async def _chat(self, request: web.Request) -> web.Response:
        with self._lock:
            self.authorizations.append(request.headers.get("Authorization"))
        if self.require_key is not None:
            if request.headers.get("Authorization", "") != f"Bearer {self.require_key}":
                return web.json_response(
                    {
                        "error": {
                            "message": "Incorrect API key provided",
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    },
                    status=401,
                )
        payload = await request.json()
        prompt = "\n".join(str(m.get("content", "")) for m in payload.get("messages", []))
        match = _QUERY.search(prompt)
        query = match.group(1).strip() if match else ""
        with self._lock:
            self.total_requests += 1
            self.requests_by_query[query] += 1
            attempt = self.requests_by_query[query]
            if self.first_at is None:
                self.first_at = time.monotonic()
        fault = fault_for(query, self.faults) if self.faults else None
        if fault is not None and fault != "truncated" and attempt > self.fault_attempts:
            fault = None
        model = str(payload.get("model", ""))
        oracle = self.judges.get(model)
        with self._lock:
            self.prompts.append((model, prompt))
        status, text = answer_for(prompt, model, oracle)
        if self.status_for_all is not None:
            status, text = self.status_for_all, UNSUPPORTED_PARAMETER
        if fault in ("429", "500"):
            status = int(fault)
        self._log(query, attempt, fault, status)
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        elif fault == "hang":
            await asyncio.sleep(self.hang_s)
        elif fault == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        elif fault == "malformed":
            return web.Response(text='{"id": "x", "choices": [', content_type="application/json")
        elif fault == "429":
            return web.json_response(
                {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
                status=429,
                headers={"Retry-After": str(self.retry_after_s)},
            )
        if status != 200:
            return web.json_response(
                {"error": {"message": text, "type": "server_error"}}, status=status
            )
        finish_reason = "stop"
        if fault == "truncated":
            text, finish_reason = text[: len(text) * 2 // 3], "length"
        self.last_done_at = time.monotonic()
        return web.json_response(completion_body(payload, text, finish_reason, oracle))

    def _log(self, query: str, attempt: int, fault: str | None, status: int) -> None:
        with self._lock:
            self.log.append(LoggedRequest(time.monotonic(), query, attempt, fault, status))

    async def _reset(self, request: web.Request) -> web.Response:
        with self._lock:
            self.log.clear()
            self.prompts.clear()
            self.requests_by_query.clear()
            self.total_requests = 0
            self.first_at = self.last_done_at = None
        return web.json_response({"ok": True})

    async def _stats(self, request: web.Request) -> web.Response:
        with self._lock:
            busy = None
            if self.first_at is not None and self.last_done_at is not None:
                busy = self.last_done_at - self.first_at
            return web.json_response(
                {
                    "total": self.total_requests,
                    "busy_s": busy,
                    "by_query": dict(self.requests_by_query),
                }
            )

    def app(self) -> web.Application:
        # Batch files reach 200 MB (OpenAI's limit) and 256 MB (Anthropic's).
        app = web.Application(client_max_size=300 * 2**20)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/reset", self._reset)
        for routes in self.extra_routes:  # batch endpoints (dvsynth.fakes)
            app.router.add_routes(routes)
        return app

    # ------------------------------------------------------------------ lifecycle

    async def _start(self, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        # A burst of hundreds of new connections needs a listen backlog to match.
        site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=4096)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, port: int = 0) -> FakeLLMServer:
        """Start in a background thread; returns once the port is bound."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._start(port))
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True, name="fake-llm-server").start()
        if not ready.wait(10):
            raise RuntimeError("fake LLM server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=SHARE",
        help=f"inject a fault on a share of queries; kinds: {FAULT_KINDS}",
    )
    args = parser.parse_args()
    faults = {k: float(v) for k, v in (f.split("=") for f in args.fault)}
    server = FakeLLMServer(latency=args.latency, faults=faults).start(args.port)
    print(json.dumps({"api_base": server.api_base}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
