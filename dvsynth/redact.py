"""Keeps secrets out of anything dvsynth writes or prints.

Provider errors can echo request headers or keys; every message that reaches a row, a
log or the terminal passes through `redact` first.
"""

from __future__ import annotations

import os
import re

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_KEY_LIKE = re.compile(r"\b(sk|hf|pk|rk)[-_][A-Za-z0-9_-]{12,}")


def redact(text: str, extra: tuple[str, ...] = ()) -> str:
    """Replace known secret values, bearer tokens and key-shaped strings with ***."""
    for name, value in os.environ.items():
        if value and len(value) >= 8 and _SECRET_NAME.search(name):
            text = text.replace(value, "***")
    for value in extra:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    text = _BEARER.sub(r"\1***", text)
    return _KEY_LIKE.sub("***", text)
