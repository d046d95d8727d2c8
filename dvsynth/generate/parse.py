"""Reads the generator's answer out of free text.

Models wrap answers in code fences, add prose after them, or stop before the closing
tag. The parser takes the last `<answer>` block, tolerates all of that, and tells apart
an honest refusal (`None`) from text it cannot read. Fields are read only inside that
final block: a model that quotes a passage's own `<new_instruction>` tags in its
reasoning (the prompts escape them as `&lt;`) never has them taken as its answer, and
text without any `<answer>` is unparsable, not searched for tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_FENCE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
_QUOTES = "\"'`“”‘’ \n\t"
#: Placeholders from the prompt's own output format; a model that echoes them said nothing.
_PLACEHOLDERS = {"the new instruction", "instruction a", "instruction b", "..."}


@dataclass(frozen=True)
class ParsedAnswer:
    """`fields` when the answer was read; `refused` for `<answer>None</answer>`."""

    fields: dict[str, str] | None
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.fields is not None


def _answer_body(text: str) -> str | None:
    """The final answer block (to `</answer>` or the end); None when there is none."""
    text = _FENCE.sub("", text)
    opens = list(_ANSWER_OPEN.finditer(text))
    if not opens:
        return None
    body = text[opens[-1].end() :]
    close = _ANSWER_CLOSE.search(body)
    return body[: close.start()] if close else body


def _is_none(body: str) -> bool:
    return body.strip(_QUOTES + ".").lower() == "none"


@lru_cache(maxsize=64)
def _tag_pattern(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<{tag}>(.*?)(?:</{tag}>|<[a-z_/]+>|$)", re.IGNORECASE | re.DOTALL)


def _extract(body: str, tag: str) -> str | None:
    """The text of <tag>; ends at its closing tag, the next tag, or the end of the text."""
    match = _tag_pattern(tag).search(body)
    if not match:
        return None
    value = " ".join(match.group(1).split()).strip(_QUOTES)
    normalised = value.lower().replace("_", " ").strip(".")
    if not value or normalised in _PLACEHOLDERS or normalised == "none":
        return None
    return value


def parse_answer(text: str, tags: tuple[str, ...]) -> ParsedAnswer:
    """Parse the required `tags` from the last answer block of `text` (content that is
    not text, such as a JSON number or list, is unparsable)."""
    body = _answer_body(text) if isinstance(text, str) else None
    if body is None:
        return ParsedAnswer(fields=None)
    if _is_none(body):
        return ParsedAnswer(fields=None, refused=True)
    fields = {tag: _extract(body, tag) for tag in tags}
    if any(value is None for value in fields.values()):
        return ParsedAnswer(fields=None)
    return ParsedAnswer(fields={k: v for k, v in fields.items() if v is not None})
