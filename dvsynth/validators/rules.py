"""Rule validators: cheap, deterministic checks that run before any judge call.

Each rule is a small named function `rule(row, **options) -> str | None`: None passes,
a string rejects the row with reason `rule:<name>` (plus `:<detail>` when the string is
not empty). Thresholds are keyword options with defaults, set from the CLI. Users add
their own with `--validator module:function` (same signature, options not passed).

Only the instructions the generator wrote are checked: in reverse mode instruction_a is
the seed's own and only instruction_b is new; in bootstrap mode both are new.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz

from dvsynth.errors import UserError
from dvsynth.schema import Doc, DualView

RuleFunction = Callable[..., "str | None"]

_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Lowercase, NFKC, punctuation dropped, whitespace collapsed: what copying preserves."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def generated_instructions(row: DualView) -> Iterator[tuple[str, str | None]]:
    """(field name, text) of each instruction the generator wrote for this row."""
    if row.mode == "bootstrap":
        yield "instruction_a", row.instruction_a
    yield "instruction_b", row.instruction_b


def _doc_text(doc: Doc) -> str:
    return f"{doc.title} {doc.text}" if doc.title else doc.text


# ---------------------------------------------------------------------------- rules


def empty(row: DualView) -> str | None:
    """Both views need an instruction with words in it."""
    for name, text in (("instruction_a", row.instruction_a), ("instruction_b", row.instruction_b)):
        if not text or not _WORD.search(text):
            return name
    return None


def length(row: DualView, *, min_words: int = 4, max_words: int = 80) -> str | None:
    """A real user's instruction: more than a fragment, less than an essay."""
    for name, text in generated_instructions(row):
        words = len(_WORD.findall(text or ""))
        if words < min_words:
            return f"{name}:short"
        if words > max_words:
            return f"{name}:long"
    return None


def leakage(row: DualView, *, span_words: int = 8, min_similarity: float = 95.0) -> str | None:
    """The instruction copies a span of `span_words` words from a document (near-verbatim).

    Copied spans let a retriever match the instruction to the document by surface
    overlap instead of reading it. Each window of the instruction is aligned against
    each document with rapidfuzz's partial_ratio, which tolerates small edits.
    """
    docs = [("doc_a", row.doc_a), ("doc_b", row.doc_b)]
    docs += [(f"other_{i}", d) for i, d in enumerate(row.other_negatives)]
    normalized_docs = [(name, normalize(_doc_text(doc))) for name, doc in docs]
    for name, text in generated_instructions(row):
        words = normalize(text or "").split()
        if len(words) < span_words:
            continue
        windows = [" ".join(words[i : i + span_words]) for i in range(len(words) - span_words + 1)]
        for doc_name, doc_text in normalized_docs:
            for window in windows:
                if len(doc_text) < len(window):
                    continue  # partial_ratio would align the document inside the window
                score = fuzz.partial_ratio(window, doc_text, score_cutoff=min_similarity)
                if score:
                    return f"{name}:{doc_name}"
    return None


_META = re.compile(
    r"""
    \b(?:passage|document|doc|candidate)s?\s*
        (?:(?-i:[A-Z])\b|\#?\d+\b|ids?\b)              # passage A, document 2, doc #1
    | \b(?:doc|document|passage)[_\s-]?ids?\b          # doc_id, passage ids
    | \b(?:the|a|each)\s+(?:positive|negative)\b       # the positive, a negative
    | \b(?:positive|negative)\s+(?:passage|document|doc|example|sample)s?\b
    | \bhard\s+negatives?\b
    | \b(?:instruction|view)\s+[AB]\b                  # instruction A, view B
    | \bthis\s+(?:task|exercise|instruction)\b
    | \b(?:the\s+)?(?:relevant|irrelevant)\s+(?:passage|document|doc)s?\b
    """,
    re.VERBOSE | re.IGNORECASE,
)


def meta_language(row: DualView) -> str | None:
    """Talks about the dataset instead of the information need (letters, ids, labels).

    "positive" and "negative" are flagged only where they label a passage ("the
    negative", "negative passage"): "HIV-negative patients" is a real constraint.
    """
    for name, text in generated_instructions(row):
        match = _META.search(text or "")
        if match:
            return name
    return None


def rewording(row: DualView, *, max_similarity: float = 85.0) -> str | None:
    """instruction_b restates instruction_a: a rewording is not a reversal."""
    if not row.instruction_a or not row.instruction_b:
        return None
    score = fuzz.token_set_ratio(normalize(row.instruction_a), normalize(row.instruction_b))
    return "" if score >= max_similarity else None


# ---------------------------------------------------------------------------- registry


@dataclass
class Rule:
    name: str
    function: RuleFunction
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, row: DualView) -> str | None:
        """`rule:<name>[:detail]` when the row fails, else None."""
        detail = self.function(row, **self.options)
        if detail is None:
            return None
        return f"rule:{self.name}:{detail}" if detail else f"rule:{self.name}"


BUILTIN_RULES: dict[str, RuleFunction] = {
    "empty": empty,
    "length": length,
    "leakage": leakage,
    "meta_language": meta_language,
    "rewording": rewording,
}


def load_custom_rule(spec: str) -> Rule:
    """`module:function` from `--validator`; a bad spec is a one-line user error."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise UserError(f"--validator: '{spec}' is not module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"--validator {spec}: cannot import {module_name} ({exc})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UserError(f"--validator {spec}: {module_name} has no function {function_name}")
    return Rule(function_name, function)


def build_rules(
    options: dict[str, dict[str, Any]] | None = None,
    disabled: tuple[str, ...] = (),
    custom: tuple[str, ...] = (),
) -> list[Rule]:
    """The built-in rules (minus `disabled`, with `options` per rule), then custom ones."""
    options = options or {}
    unknown = [n for n in (*disabled, *options) if n not in BUILTIN_RULES]
    if unknown:
        raise UserError(
            f"--no-rule: unknown rule '{unknown[0]}' (known: {', '.join(BUILTIN_RULES)})"
        )
    rules = [
        Rule(name, function, dict(options.get(name, {})))
        for name, function in BUILTIN_RULES.items()
        if name not in disabled
    ]
    return rules + [load_custom_rule(spec) for spec in custom]


def apply_rules(rules: list[Rule], row: DualView) -> list[str]:
    """Every failing rule's reason (all of them, so stats can count each rule)."""
    reasons = []
    for rule in rules:
        try:
            reason = rule(row)
        except Exception as exc:  # a user's rule that crashes rejects the row, not the run
            reason = f"rule:{rule.name}:error:{type(exc).__name__}"
        if reason:
            reasons.append(reason)
    return reasons
