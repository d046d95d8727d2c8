"""The OpenAI batch file format: one request per line in, one result per line out.

OpenAI's Batch API, Azure's, vLLM's `run-batch` and SGLang all read and write it, so the
same two functions serve provider batches, `--batch-out` files and `dvsynth batch import`.
"""

from __future__ import annotations

import json
from typing import Any

from dvsynth.llm.batch.provider import BatchRequest, BatchResult

ENDPOINT = "/v1/chat/completions"
#: OpenAI's error code for a request the batch never ran before it expired.
EXPIRED_CODES = frozenset({"batch_expired", "batch_cancelled", "expired", "cancelled"})


def request_line(request: BatchRequest) -> str:
    """One JSONL line of a batch input file (no trailing newline), pure ASCII."""
    return json.dumps(
        {"custom_id": request.custom_id, "method": "POST", "url": ENDPOINT, "body": request.body},
        # ASCII only: U+0085 or U+2028 in a passage would split the line for any parser
        # that splits on Unicode line breaks (Python's str.splitlines does).
        ensure_ascii=True,
        separators=(",", ":"),
    )


class BadResultLine(ValueError):
    """A line of a results file that is not an OpenAI batch result."""


def parse_result_line(line: str) -> BatchResult:
    """One line of an output or error file as a `BatchResult`.

    Success: `response.status_code` 200 with a chat.completion `body`. A failed request:
    another status, or a top-level `error` (expired and cancelled requests say so in
    its code)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadResultLine(f"not JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("custom_id"), str):
        raise BadResultLine("no custom_id")
    custom_id = data["custom_id"]
    response = data.get("response") if isinstance(data.get("response"), dict) else None
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    status = response.get("status_code") if response else None
    body = response.get("body") if response else None
    if status == 200 and not error:
        if not isinstance(body, dict):  # an answer that cannot be read: sent again
            return BatchResult(custom_id, status_code=200, malformed="no response body")
        return BatchResult(custom_id, response=body, status_code=200)
    code = str((error or {}).get("code") or "")
    message = (error or {}).get("message") or _body_error(body) or code or "no response"
    return BatchResult(
        custom_id,
        status_code=status if isinstance(status, int) else None,
        error=str(message)[:300],
        expired=code in EXPIRED_CODES,
    )


def _body_error(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or "")
    return None
