"""A source row before adaptation: its data, or why it could not be read, and where it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RawRow:
    """A source row before adaptation, with a human-readable location ("f.jsonl:12")."""

    location: str
    data: dict[str, Any] | None
    error: str | None = None
