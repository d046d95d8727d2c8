"""How a batch's answer is read: one rule for every source of results (provider batches
of either API, imported OpenAI batch files, Ray), since they all reach the run through
`engine.ResultSink`.

A result line that names its request but whose answer cannot be read (no message
content, token counts that are not whole numbers, a body that is not an object) is
unreadable: it is counted with the bad lines, its request is sent again, and every
other line of the batch is collected. An unreadable line never stops a collection.
"""

from __future__ import annotations

from typing import Any

from dvsynth.llm.client import Completion, completion_from_batch


class Unreadable(ValueError):
    """A result for a known request whose answer cannot be read; the message says why."""


def token_count(usage: Any, *names: str) -> int:
    """The sum of `usage[name]` over `names`: whole, non-negative numbers (a missing or
    null count is 0); anything else is `Unreadable`."""
    if usage is None:
        return 0
    if not isinstance(usage, dict):
        raise Unreadable(f"usage is {type(usage).__name__}, not an object")
    total = 0
    for name in names:
        value = usage.get(name)
        if value is None:
            continue
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole or value < 0:
            raise Unreadable(f"usage.{name} is {value!r}, not a token count")
        total += int(value)
    return total


def read_answer(model: str, body: Any) -> Completion:
    """A chat.completion body as the completion an online call would give (priced at
    the batch rate), or `Unreadable`."""
    if not isinstance(body, dict):
        raise Unreadable(f"the answer is {type(body).__name__}, not a chat.completion object")
    token_count(body.get("usage"), "prompt_tokens", "completion_tokens")
    try:
        return completion_from_batch(model, body)
    except Exception as exc:  # the client's parser: MalformedResponse, or a shape it trips on
        raise Unreadable(f"{type(exc).__name__}: {exc}"[:300]) from None
