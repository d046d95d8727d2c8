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
from dvsynth.records import Doc, DualView
from dvsynth.validators.step import StepOutcome

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


# Nouns that can name one of the candidate passages the generator was shown.
_CAND = r"(?:passage|document|doc|snippet|text|excerpt|candidate|option|result|example)"
# The narrower set for words that also go with ordinary nouns ("these options", "each example").
_PASSAGE = r"(?:passage|document|doc|snippet|text|excerpt)"
# A label after such a noun: a capital letter (not the pronoun I), a small number, a number word.
_LABEL = r"(?:(?-i:[A-HJ-Z])|(?:number\s+|no\.\s*|\#\s*)?(?:\d{1,2}|one|two|three|four|five))"
# Words that order the shown set ("the second passage", "the top result").
_ORDER = (
    r"(?:first|second|third|fourth|last|former|latter|top|bottom|upper|lower|earlier|later"
    r"|previous|preceding|following|next|higher-ranked|lower-ranked|top-ranked)"
)
# What may follow a standalone "the former", "the second", "the other": a pause or a verb,
# never a noun ("the former Soviet Union", "the second edition", "the other side").
_STANDALONE = (
    r"(?=\s*(?:[,.;:!?)]|$)|\s+(?:one|ones|over|rather|instead|for|is|are|was|fits|has"
    r"|covers|because|since|which|as|than)\b)"
)

_META_GROUPS: dict[str, str] = {
    # Labels: passage B, document 2, doc #1, option two, result number 3, doc labeled B.
    "label": rf"\b{_CAND}s?\s*(?:label(?:l)?ed\s+)?{_LABEL}\b(?!-)"
    r"|\b(?:doc|document|passage)[_\s-]?ids?\b"
    r"|\b(?:instruction|view|query)\s+(?-i:[AB])\b"
    r"|\b(?:item|entry|number)\s+\#?\d+\s+(?:in|on|of)\s+the\s+list\b",
    # Position and order: the second passage, the top result, the other one, listed above.
    "position": rf"\b{_ORDER}\s+(?:{_CAND}|{_PASSAGE}s)\b(?!\s+(?:of|to|message)\b)"
    rf"|\bthe\s+(?:{_ORDER}|other|remaining|alternative|opposite)\s+(?:{_PASSAGE}|candidate|one)\b"
    r"|\b(?:shown|listed|given|provided|presented|displayed|quoted|mentioned|printed)"
    r"\s+(?:above|below)\b"
    rf"|\bthe\s+(?:one|{_CAND}s?)\s+(?:above|below)\b"
    rf"|\bthe\s+(?:above|below)\s+(?:one|{_CAND}s?)\b",
    # "the latter", "rather than the second,": unless the instruction named what it counts.
    "standalone": r"\bthe\s+(?P<ordinal>former|latter|first|second|other)\b" + _STANDALONE,
    # The shown set and its members: the given passages, these documents, the pair. (Not "the
    # one about ...": "not the one about customer credit" disambiguates the query's term.)
    "shown_set": rf"\b(?:the|these|those)\s+(?:shown|given|provided|listed|retrieved|presented"
    rf"|displayed|supplied|attached|aforementioned|above-mentioned|candidate)\s+{_CAND}s?\b"
    rf"|\b(?:this|that|these|those)\s+(?:two\s+)?(?:{_PASSAGE}s?|candidates?|examples?|one)\b(?!-)"
    rf"|\b(?:both|each|either|neither)\s+{_PASSAGE}s?\b|\b(?:either|neither)\s+one\b"
    r"|\b(?:which|whichever|either|neither|out|first|second|last)"
    rf"\s+of\s+(?:the|these|those)\s+(?:two\s+|three\s+)?(?:{_PASSAGE}|candidate|option)s\b"
    rf"|\b(?:of|between|among|from)\s+(?:the|these|those)\s+(?:two|three)\s+(?:{_PASSAGE}|candidate)s\b"
    r"|\b(?:of|between|among)\s+(?:the|these|those)\s+two\s*,\s*"
    r"(?:the|I|pick|choose|return|prefer|rank|take|give|use|go)\b"
    rf"|\bcandidate\s+{_PASSAGE}s?\b|\bthe\s+example\s+{_PASSAGE}\b"
    r"|\b(?:the|this)\s+(?:pair|snippet)\b(?!\s+of\b)",
    # Task and label talk: the positive, the hard negative, the gold document, mark as relevant.
    "task_talk": r"\b(?:the|a|each)\s+(?:positive|negative)\b"
    rf"(?=\s*(?:[,.;:!?)]|$)|\s+(?:{_CAND}s?|ones?|samples?|is|are|was|should|here|as"
    r"|for|rather|instead|over|about|with|which|that)\b)"
    rf"|\b(?:positive|negative)\s+(?:{_PASSAGE}|candidate|sample)s?\b"
    r"|\bhard\s+negatives?\b(?!\s+(?:mining|sampling|selection)\b)"
    r"|\b(?:gold|target|intended|expected)\s+(?:passage|document|doc|snippet|candidate|answer"
    r"|label|match|one)s?\b"
    r"|\b(?:correct|right)\s+(?:passage|document|doc|snippet|candidate|one)s?\b"
    r"|\bthis\s+(?:(?:retrieval|ranking|search)\s+)?task\b"
    r"|\b(?:this|the|our)\s+(?:retrieval|ranking|search)\s+(?:exercise|setting|setup)\b"
    r"|\b(?:retrieval|ranking|relevance|annotation|labell?ing)\s+(?:task|exercise)\b"
    r"|\b(?:swap|flip|switch|reverse|invert)\s+(?:the\s+)?(?:labels|relevance|roles)\b"
    r"|\b(?:mark|label|tag|flag|treat|classify)(?:ed|s)?\b[^.;:]{0,50}?\bas\s+(?:not\s+)?"
    r"(?:relevant|irrelevant|non-relevant|positive|negative|correct)\b"
    r"|\blabel\s+(?:it|them|this|that|(?-i:[A-Z]))\s+(?:not\s+)?(?:relevant|irrelevant)\b"
    r"|\bas\s+(?:the|a)\s+(?:match|answer|target|winner)\b"
    r"|\brank\s+(?:it|this|that|them)\s+(?:first|higher|lower|last|top|above|below)\b"
    r"|\bthe\s+(?:relevant|irrelevant|non-relevant)\s+(?:passage|document|doc|text|snippet"
    r"|one)s?\b(?!\s+(?:must|will|should|would|can|may|need|needs)\b)",
}
_META = re.compile(
    "|".join(f"(?P<{name}>{pattern})" for name, pattern in _META_GROUPS.items()),
    re.IGNORECASE,
)


def meta_match(text: str) -> tuple[str, str] | None:
    """(pattern group, matched words) of the first meta-language in `text`, else None."""
    text = text or ""
    for match in _META.finditer(text):
        group = next(name for name in _META_GROUPS if match.group(name))
        if group == "standalone" and _names_its_noun(text[: match.start()], match["ordinal"]):
            continue
        return group, match.group(0)
    return None


def _names_its_noun(before: str, ordinal: str) -> bool:
    """Whether the ordinal's noun was named earlier ("the second edition ..., not the first")."""
    partners = {"first": "second|last", "second": "first", "former": "latter", "latter": "former"}
    words = partners.get(ordinal.lower(), "other|another|one")
    noun = rf"(?!(?:{_CAND}s?|about|on|with|from|that|which|of|in|for|is|was)\b)[a-z]{{3,}}"
    return bool(re.search(rf"\b(?:{words})\s+{noun}", before, re.I))


def meta_language(row: DualView) -> str | None:
    """Points at the shown passages or talks about the task instead of stating a need.

    A generator that saw the candidates may write "return the second passage, not the
    first": no user could, and a retriever trained on it learns to read labels. Caught:
    the candidates by label, position or order, the shown set and its members, and talk
    of the task, labels and negatives. A need that merely says "document" or "passage"
    ("Relevant documents describe ...", "A relevant passage explains ...") passes, as do
    ordinary uses of the same words ("first-hand", "HIV-negative", "listed companies").
    """
    for name, text in generated_instructions(row):
        if meta_match(text or "") is not None:
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


@dataclass
class RulesStep:
    """The rules as one validation step (`validators.step.Step`): every failing rule's
    reason, so stats can count each rule."""

    rules: list[Rule]
    name: str = "rules"
    reason_prefix: str = "rule"

    def settings(self) -> dict[str, Any]:
        return {
            rule.name: {"options": rule.options, "function": _qualified(rule.function)}
            for rule in self.rules
        }

    def describe(self) -> str:
        return "rules " + ", ".join(f"`{rule.name}`" for rule in self.rules)

    async def __call__(self, row: DualView) -> StepOutcome:
        return StepOutcome(reasons=apply_rules(self.rules, row))


def _qualified(function: RuleFunction) -> str:
    """module:function, so that a user's rule of the same name is another setting."""
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', '?')}"


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
