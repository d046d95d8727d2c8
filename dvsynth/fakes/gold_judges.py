"""Fake judges that know the gold sets' labels: an accurate strong one, a noisy cheap one.

A gold pair says, for each instruction and document, whether the document meets the
need: view a admits doc_a and not doc_b, view b the reverse, and each corrupt variant's
instruction_b its own way (a rewording admits doc_a, `admits_both` both, ...). These
fakes answer dvsynth's judge, joint-judge and check prompts from those labels, then add
noise drawn from a stable hash of (model, prompt part), so every run answers the same.

The noise profiles are fixed here, before any gold row was scored, and never fitted to
one: a judge is wrong with confidence on `wrong_sure` of the questions, wrong and unsure
(P(yes) within 0.2 of 0.5) on `wrong_unsure`, right and unsure on `right_unsure`, and
writes no verdict word on `unparsable`. The strong judge is rarely wrong; the cheap one
is wrong ten times as often, mostly where it is unsure, which is the case a cascade is
for. In a joint judgment the draw also depends on the document's position, and the
cheap judge leans towards "yes" for document 1 (`first_bias`): position bias to measure.

    server = FakeLLMServer().start()
    GoldJudges(pairs).install(server)   # models openai/gold-strong and openai/gold-cheap
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from dvsynth.evaluate.gold import GoldPair
from dvsynth.prompts import quote_data
from dvsynth.records import Doc

STRONG = "gold-strong"
CHEAP = "gold-cheap"


@dataclass(frozen=True)
class Profile:
    wrong_sure: float
    wrong_unsure: float
    right_unsure: float
    unparsable: float
    first_bias: float = 0.0  # added to P(yes) of document 1 in a joint judgment


#: Set before scoring any gold row (see the module docstring); not fitted to the gold sets.
PROFILES = {
    STRONG: Profile(wrong_sure=0.005, wrong_unsure=0.01, right_unsure=0.02, unparsable=0.0),
    CHEAP: Profile(
        wrong_sure=0.01, wrong_unsure=0.08, right_unsure=0.07, unparsable=0.005, first_bias=0.04
    ),
}

#: What each corrupt kind's instruction_b admits: (doc_a, doc_b).
ADMITS = {
    "rewording": (True, False),
    "admits_both": (True, True),
    "admits_neither": (False, False),
    "leak": (False, True),  # the flip holds; the rules catch the copied span
    "meta": (False, True),  # the flip holds; the wording points at the passages
}


def _norm(text: str) -> str:
    return " ".join(text.split())


def _doc(doc: Doc) -> str:
    """The document as the judge prompt quotes it."""
    return _norm(quote_data(f"{doc.title}. {doc.text}" if doc.title else doc.text))


def _draw(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]
    return int(digest, 16) / 16**12


class GoldJudges:
    """The labels of `pairs`, answered by the profile of the asking model."""

    def __init__(self, pairs: Iterable[GoldPair]) -> None:
        self.relevant: dict[tuple[str, str, str], bool] = {}
        self.contained: dict[tuple[str, str], bool] = {}
        for pair in pairs:
            query = _norm(quote_data(pair.query))
            a, b = _doc(pair.doc_a), _doc(pair.doc_b)
            self._label(query, pair.instruction_a, a, True)
            self._label(query, pair.instruction_a, b, False)
            self._label(query, pair.instruction_b, b, True)
            self._label(query, pair.instruction_b, a, False)
            for other in pair.other_negatives:
                for instruction in (pair.instruction_a, pair.instruction_b):
                    self._label(query, instruction, _doc(other), False)
            for instruction in (pair.instruction_a, pair.instruction_b):
                self.contained[(query, _norm(quote_data(instruction)))] = True
            for variant in pair.corrupt:
                admits_a, admits_b = ADMITS[variant.kind]
                self._label(query, variant.instruction_b, a, admits_a)
                self._label(query, variant.instruction_b, b, admits_b)
                for other in pair.other_negatives:
                    self._label(query, variant.instruction_b, _doc(other), False)
                key = (query, _norm(quote_data(variant.instruction_b)))
                self.contained.setdefault(key, variant.kind != "meta")

    def _label(self, query: str, instruction: str, doc: str, relevant: bool) -> None:
        self.relevant.setdefault((query, _norm(quote_data(instruction)), doc), relevant)

    def install(self, server) -> GoldJudges:
        """Answer for the models gold-strong and gold-cheap on `server` (FakeLLMServer)."""
        server.judges[STRONG] = self
        server.judges[CHEAP] = self
        return self

    # ------------------------------------------------------------------ the oracle calls

    def judge(
        self, model: str, query: str, instruction: str, document: str, position: str = ""
    ) -> float | None:
        """P(yes) that `document` meets the need (None: no verdict word)."""
        key = (_norm(query), _norm(instruction), _norm(document))
        truth = self.relevant.get(key, False)  # an unknown document: not relevant
        p_yes = self._noisy(model, truth, "judge", *key, position)
        if p_yes is not None and position == "1":
            p_yes = min(0.999, p_yes + PROFILES[_name(model)].first_bias)
        return p_yes

    def check(self, model: str, query: str, instruction: str) -> float | None:
        truth = self.contained.get((_norm(query), _norm(instruction)), True)
        return self._noisy(model, truth, "check", _norm(query), _norm(instruction))

    def _noisy(self, model: str, truth: bool, *parts: str) -> float | None:
        name = _name(model)
        profile = PROFILES[name]
        u = _draw(name, *parts)
        depth = _draw("depth", name, *parts)  # how far from 0.5, within its band
        edges = [profile.unparsable, profile.wrong_sure, profile.wrong_unsure, profile.right_unsure]
        if u < edges[0]:
            return None
        u -= edges[0]
        if u < edges[1]:
            sure_of, distance = not truth, 0.35 + 0.14 * depth
        elif u - edges[1] < edges[2]:
            sure_of, distance = not truth, 0.01 + 0.19 * depth
        elif u - edges[1] - edges[2] < edges[3]:
            sure_of, distance = truth, 0.01 + 0.19 * depth
        else:
            sure_of, distance = truth, 0.35 + 0.14 * depth
        return 0.5 + distance if sure_of else 0.5 - distance


def _name(model: str) -> str:
    bare = model.rsplit("/", 1)[-1]
    if bare not in PROFILES:
        raise KeyError(f"no gold judge profile for model {model!r} ({', '.join(PROFILES)})")
    return bare
