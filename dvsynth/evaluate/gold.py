"""Gold dual-view pairs: hand-checked reversals, and corrupt variants a judge must reject.

A gold pair is a DualView whose labels a person verified by reading both documents
under both instructions. Each carries corrupt variants (the same pair with a broken
instruction_b) labelled with how they are broken, so a judge or a rule can be scored on
what it keeps and what it rejects (`dvsynth calibrate`), and a retriever on whether it
follows instructions (`dvsynth eval-retriever`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dvsynth.errors import UserError
from dvsynth.records import Doc, DualView, Provenance

Lever = Literal[
    "scope", "time", "geography", "audience", "format", "source", "methodology", "exclusion"
]
Style = Literal["constraint", "persona", "background", "negation"]
CorruptKind = Literal["rewording", "admits_both", "admits_neither", "leak", "meta"]
CORRUPT_KINDS: tuple[str, ...] = CorruptKind.__args__  # type: ignore[attr-defined]
BUNDLED_GOLD = Path(__file__).resolve().parents[1] / "data" / "sample_gold.jsonl"


class CorruptVariant(BaseModel):
    """instruction_b replaced by a broken one; `kind` says how it is broken."""

    model_config = ConfigDict(extra="forbid")

    kind: CorruptKind
    instruction_b: str = Field(min_length=1)


class GoldPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gold_id: str
    seed_id: str
    query: str = Field(min_length=1)
    instruction_a: str = Field(min_length=1)
    doc_a: Doc
    instruction_b: str = Field(min_length=1)
    doc_b: Doc
    other_negatives: list[Doc] = Field(default_factory=list)
    lever: Lever
    style: Style
    check: str = Field(min_length=10)  # why each document meets one view and not the other
    corrupt: list[CorruptVariant] = Field(min_length=1)

    def as_dual_view(self, instruction_b: str | None = None, suffix: str = "") -> DualView:
        """The pair (or one of its corrupt variants) as a row the validators take."""
        return DualView(
            pair_id=self.gold_id + suffix,
            seed_id=self.seed_id,
            query=self.query,
            instruction_a=self.instruction_a,
            doc_a=self.doc_a,
            instruction_b=instruction_b or self.instruction_b,
            doc_b=self.doc_b,
            other_negatives=self.other_negatives,
            mode="bootstrap",
            status="kept",
            stages=["gold"],
            provenance=Provenance(
                generator_model="gold",
                prompt_name="gold",
                prompt_sha256="",
                dvsynth_version="",
                created_at="",
            ),
        )


def read_gold(path: Path) -> Iterator[GoldPair]:
    """Gold pairs from a JSONL file; a bad line is a UserError naming file and line."""
    try:
        handle = Path(path).open(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--gold {path}: cannot read ({exc.strerror})") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield GoldPair.model_validate_json(line)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise UserError(f"{path}:{number}: {where}: {first['msg']}") from None
