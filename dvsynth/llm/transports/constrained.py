"""Constrained decoding for the embedded model: the answer format, enforced token by token.

A 135M model rarely keeps to an output format on its own, so its output is built from a
small template: free text of bounded length over an allowed alphabet, fixed literals
(forced, never sampled), and a choice between alternatives (decided by the model's score
for each alternative's first token). That guarantees a parsable answer (or an honest
`None`) and bounds the time per row, with no grammar engine and no compiler.

The decoder knows nothing of torch: it drives a `Scorer` (feed tokens, get the next
token's logits) over a vocabulary of decoded token strings, so it is tested with a
scripted scorer and run with transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Characters of free reasoning the generator may write before its answer block: a few
#: words. A 135M model's longer "reasoning" only echoed the prompt, and each token of it
#: costs about 0.1 s on 2 cores (the default run's 48 rows spent most of their time there).
REASONING_CHARS = 48
#: How many of the best-scored tokens are tried before the whole vocabulary is sorted.
SHORTLIST = 64


@dataclass(frozen=True)
class Free:
    """Free text of `min_chars`..`max_chars` characters, none of them in `forbidden`.

    The model ends it by preferring a token that holds a forbidden character (or an
    end-of-text token) once `min_chars` are written; at `max_chars` it is ended for it.
    """

    forbidden: str = ""
    min_chars: int = 0
    max_chars: int | None = None


@dataclass(frozen=True)
class Literal:
    """Fixed text, appended as the tokenizer encodes it."""

    text: str


@dataclass(frozen=True)
class Choice:
    """One of several alternatives, each a sequence that starts with a Literal."""

    options: tuple[tuple[Free | Literal | Choice, ...], ...]


Segment = Free | Literal | Choice


def answer_template(tags: Sequence[str]) -> tuple[Segment, ...]:
    """Short reasoning, then `<answer>` holding each of `tags`, or `<answer>None`."""
    fields: list[Segment] = []
    for tag in tags:
        fields += [Literal(f"<{tag}>"), Free("<\n", 8, 300), Literal(f"</{tag}>")]
    return (
        Free("<", 0, REASONING_CHARS),
        Literal("<answer>"),
        Choice(((Literal("None"),), tuple(fields))),
        Literal("</answer>"),
    )


def choice_template(choices: Sequence[str]) -> tuple[Segment, ...]:
    """Exactly one of `choices` (the judge's yes / no)."""
    return (Choice(tuple((Literal(choice),) for choice in choices)),)


FREE_TEXT: tuple[Segment, ...] = (Free(),)


class Scorer:
    """What the decoder needs of a model: feed tokens, get the logits for the next one."""

    def feed(self, token_ids: list[int]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Vocabulary:
    """Each token id's decoded text, the ids that end text, and the tokenizer's encoder."""

    pieces: list[str]
    stop_ids: frozenset[int]
    encode: Callable[[str], list[int]]


@dataclass
class Decoded:
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "stop"


class _Budget(Exception):
    """max_tokens reached before the template was complete."""


class ConstrainedDecoder:
    """Greedy (temperature 0) or seeded sampling, within a template."""

    def __init__(
        self,
        scorer: Scorer,
        vocabulary: Vocabulary,
        *,
        max_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.scorer = scorer
        self.vocab = vocabulary
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.rng = np.random.default_rng(seed)
        self.out = Decoded()
        self.logits: np.ndarray | None = None
        self._pending: list[int] = []

    def run(self, prompt_ids: list[int], template: Sequence[Segment]) -> Decoded:
        self._pending = list(prompt_ids)
        try:
            self._segments(template)
        except _Budget:
            self.out.finish_reason = "length"
        return self.out

    def _segments(self, segments: Sequence[Segment]) -> None:
        for segment in segments:
            if isinstance(segment, Literal):
                self._emit(self.vocab.encode(segment.text))
            elif isinstance(segment, Choice):
                self._segments(self._choose(segment))
            else:
                self._free(segment)

    def _emit(self, token_ids: list[int]) -> None:
        """Append tokens; the model reads them only when its next scores are needed (so
        the closing literal costs no forward pass)."""
        room = self.max_tokens - len(self.out.token_ids)
        self.out.token_ids += token_ids[:room]
        if len(token_ids) > room:
            raise _Budget
        self._pending += token_ids

    def _scores(self) -> np.ndarray:
        if self._pending:
            self.logits = self.scorer.feed(self._pending)
            self._pending = []
        return self.logits

    def _choose(self, choice: Choice) -> tuple[Segment, ...]:
        """The alternative whose first token the model scores highest (or samples)."""
        firsts = []
        for option in choice.options:
            head = option[0]
            if not isinstance(head, Literal):
                raise ValueError("each alternative of a Choice starts with a Literal")
            firsts.append(self.vocab.encode(head.text)[0])
        scores = self._scores()[firsts]
        return choice.options[self._pick(np.asarray(scores))]

    def _pick(self, scores: np.ndarray) -> int:
        if self.temperature <= 0:
            return int(np.argmax(scores))
        scaled = (scores - scores.max()) / self.temperature
        weights = np.exp(scaled)
        return int(self.rng.choice(len(scores), p=weights / weights.sum()))

    def _free(self, segment: Free) -> None:
        written = 0
        while segment.max_chars is None or written < segment.max_chars:
            token = self._next_free_token(segment, written)
            if token is None:
                return
            self._emit([token])
            written += len(self.vocab.pieces[token])

    def _next_free_token(self, segment: Free, written: int) -> int | None:
        """The model's token for the next stretch of free text; None ends the segment.

        Tokens are tried best first: one holding a forbidden character (or one that ends
        text) ends the segment if it may end, and is skipped if not; one too long for the
        room left is skipped.
        """
        room = None if segment.max_chars is None else segment.max_chars - written
        for token in self._ranked():
            piece = self.vocab.pieces[token]
            ends = token in self.vocab.stop_ids or any(c in piece for c in segment.forbidden)
            if ends:
                if written >= segment.min_chars:
                    return None
                continue
            if not piece or (room is not None and len(piece) > room):
                continue
            return token
        return None

    def _ranked(self):
        """Token ids, best first: a shortlist, then (rarely needed) the rest."""
        logits = self._scores()
        if self.temperature > 0:
            scaled = logits / self.temperature
            noisy = scaled + self.rng.gumbel(size=scaled.shape)  # Gumbel-max sampling
            order_source = noisy
        else:
            order_source = logits
        if len(order_source) > SHORTLIST:
            short = np.argpartition(-order_source, SHORTLIST)[:SHORTLIST]
            short = short[np.argsort(-order_source[short], kind="stable")]
            yield from (int(t) for t in short)
            seen = set(short.tolist())
        else:
            seen = set()
        rest = np.argsort(-order_source, kind="stable")
        yield from (int(t) for t in rest if int(t) not in seen)
