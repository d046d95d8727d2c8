"""Keeps secrets out of anything dvsynth writes or prints.

Provider errors can echo request headers or keys; every message that reaches a row, a
log or the terminal passes through `redact` first. What counts as a secret is decided
in one place, `dvsynth.secrets`; this module keeps the name its callers import.
"""

from __future__ import annotations

from dvsynth.secrets import redact, safe_url

__all__ = ["redact", "safe_url"]
