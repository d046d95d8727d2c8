"""Prices for the lean OpenAI-compatible path, read from litellm's bundled table without
importing litellm.

Importing litellm costs 6 to 12 s of CPU on a small machine (thousands of pydantic
classes built at import), which a one-seed `dvsynth generate` against a self-hosted
server would otherwise pay before its first request only to learn that `openai/<name>`
has no price. litellm ships its price table as a JSON file inside the package and, with
LITELLM_LOCAL_MODEL_COST_MAP=True (dvsynth's default), prices from exactly that file.

`lean_rates` answers only where the answer is certainly litellm's own: a model whose
every lookup name is absent from the table and matched by no fallback rule (no price), or
one plain entry of the same provider with flat per-token rates. Anything else (tiers,
fine-tuned or dated names, rule-derived entries, another cost map) is UNSURE and the
caller asks litellm itself. tests/test_prices.py checks the answers against litellm over
every entry of the table.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

TABLE_FILE = "model_prices_and_context_window_backup.json"
#: Providers of the lean transport whose names litellm resolves by their prefix alone.
LEAN_PROVIDERS = ("openai", "hosted_vllm", "openai_like")
RULES_KEY = "fallback_generalizations"
UNSURE = "unsure"
#: Price fields that make litellm's price depend on more than the two token counts.
_COMPLEX_FIELD = re.compile(
    r"_above_\d+k?_tokens|tiered_pricing|per_second|per_character|per_query|off_peak"
    r"|per_request|per_image|per_pixel|per_audio|per_video"
)
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@lru_cache(maxsize=1)
def _text() -> str | None:
    """The table file's text, or None when litellm or the file is missing."""
    spec = find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / TABLE_FILE
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


@lru_cache(maxsize=1)
def _lower_text() -> str:
    """The file in lower case, where a name (as a quoted key) is looked for before the
    whole 3.5 MB file is parsed (half a second of CPU) to read its entry."""
    return (_text() or "").lower()


def _compile(rules: Any) -> list[re.Pattern] | None:
    patterns = []
    for rule in rules.get("rules", []) if isinstance(rules, dict) else []:
        try:
            patterns.append(re.compile(str(rule.get("pattern")), re.IGNORECASE))
        except (re.error, AttributeError):
            return None  # a rule litellm may read differently: not sure of anything
    return patterns


@lru_cache(maxsize=1)
def _rules() -> list[re.Pattern] | None:
    """The fallback rules' patterns, parsed from their block alone; None if unreadable."""
    text = _text()
    start = text.find(f'"{RULES_KEY}"') if text else -1
    if text is None or start < 0:
        return [] if text is not None else None
    colon = text.find(":", start + len(RULES_KEY) + 2)
    try:
        rules, _ = json.JSONDecoder().raw_decode(text, colon + 1 + _spaces(text, colon + 1))
    except ValueError:
        return None
    return _compile(rules)


def _spaces(text: str, at: int) -> int:
    return len(text[at : at + 64]) - len(text[at : at + 64].lstrip())


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, dict[str, Any]], dict[str, str], list[re.Pattern]] | None:
    """(entries, lower-case key -> key, fallback rule patterns), or None when the file
    or litellm is missing."""
    text = _text()
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    rules = data.pop(RULES_KEY, None) or {}
    data.pop("sample_spec", None)
    entries = {k: v for k, v in data.items() if isinstance(v, dict)}
    patterns = _compile(rules)
    if patterns is None:
        return None
    return entries, {k.lower(): k for k in entries}, patterns


def _may_be_listed(names: tuple[str, ...]) -> bool:
    """Whether any name might be a key of the table: it appears quoted in the file (or
    the file escapes characters, so that a plain search could miss one)."""
    lower = _lower_text()
    if "\\/" in lower or "\\u" in lower:
        return True
    return any(f'"{json.dumps(n.lower())[1:-1]}"' in lower for n in names)


def _local_table_in_use() -> bool:
    """Whether litellm would price from its bundled file (not one fetched at import)."""
    return os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP", "").lower() == "true"


def lean_rates(model: str) -> tuple[float, float] | None | str:
    """(USD per prompt token, USD per completion token), None for no price, or UNSURE.

    None means litellm's `get_model_info` finds no entry (or one priced at zero), so
    dvsynth shows the cost as unknown; UNSURE means only litellm can tell.
    """
    provider, _, name = model.partition("/")
    if provider not in LEAN_PROVIDERS or not name or not _local_table_in_use():
        return UNSURE
    patterns = _rules()
    if patterns is None:
        return UNSURE
    names = (model, name, f"{provider}/{model}")  # litellm's lookup order, less the
    if any(p.search(n) for p in patterns for n in names):  # stripped names
        return UNSURE  # a fallback rule may fill in or derive an entry
    found: list[str] = []
    if _may_be_listed(names):
        table = _table()
        if table is None:
            return UNSURE
        entries, lower, _ = table
        found = [lower[n.lower()] for n in names if n.lower() in lower]
    if not found:
        if "ft:" in name or _DATED.search(name):
            return UNSURE  # litellm then tries the name without its suffix
        return None
    key = found[0]
    info = entries[key]
    if key.lower() not in (model.lower(), name.lower()) or info.get("litellm_provider") != provider:
        return UNSURE
    if any(_COMPLEX_FIELD.search(field) for field, value in info.items() if value):
        return UNSURE
    prompt = float(info.get("input_cost_per_token") or 0.0)
    completion = float(info.get("output_cost_per_token") or 0.0)
    if not (prompt or completion):
        return None
    return prompt, completion
