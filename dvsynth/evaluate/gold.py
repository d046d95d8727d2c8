"""Gold dual-view pairs: hand-checked reversals, and corrupt variants a judge must reject.

A gold pair is a DualView whose labels a person verified by reading both documents
under both instructions. Each carries corrupt variants (the same pair with a broken
instruction_b) labelled with how they are broken, so a judge or a rule can be scored on
what it keeps and what it rejects (`dvsynth calibrate`), and a retriever on whether it
follows instructions (`dvsynth eval-retriever`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dvsynth.errors import UserError
from dvsynth.records import Doc, DualView, Provenance
from dvsynth.redact import redact

Lever = Literal[
    "scope", "time", "geography", "audience", "format", "source", "methodology", "exclusion"
]
Style = Literal["constraint", "persona", "background", "negation"]
CorruptKind = Literal["rewording", "admits_both", "admits_neither", "leak", "meta"]
CORRUPT_KINDS: tuple[str, ...] = CorruptKind.__args__  # type: ignore[attr-defined]
BUNDLED_GOLD = Path(__file__).resolve().parents[1] / "data" / "sample_gold.jsonl"
BUNDLED = "bundled"  # `--gold bundled`: the sample set shipped in the package
GOLD_CONFIGS = ("pairs", "corrupt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")  # ORG/NAME[@REVISION]


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


# --- gold sets as dataset rows (`dvsynth export-gold`) and back ---------------------------
#
# A gold record holds a pair and its corrupt variants. As a dataset they are two configs:
# `pairs`, one row per pair (the corrupt list dropped), and `corrupt`, one row per
# variant: the whole pair with instruction_b replaced by the broken one, i.e. exactly the
# row `calibrate` feeds the validators and expects rejected, so a judge can be scored on
# the `corrupt` config alone. `gold_id` and `variant` (the index in the record's list)
# join them back into records; `gold_set` names the file each pair came from.

_PAIR_FIELDS = tuple(name for name in GoldPair.model_fields if name != "corrupt")


def set_name(path: Path) -> str:
    """The name a JSONL file's pairs carry as `gold_set`: the bundled file is `sample`,
    others their stem without a trailing -gold (msmarco-gold.jsonl -> `msmarco`)."""
    if Path(path).resolve() == BUNDLED_GOLD:
        return "sample"
    return re.sub(r"[-_]gold$", "", Path(path).stem) or Path(path).stem


def pair_row(pair: GoldPair, gold_set: str) -> dict[str, Any]:
    row = pair.model_dump(exclude={"corrupt"})
    return {"gold_id": row.pop("gold_id"), "gold_set": gold_set, **row}


def corrupt_rows(pair: GoldPair, gold_set: str) -> list[dict[str, Any]]:
    base = pair.model_dump(include={"query", "instruction_a", "doc_a", "doc_b", "other_negatives"})
    return [
        {
            "corrupt_id": f"{pair.gold_id}~{variant.kind}{i}",  # calibrate's pair_id for it
            "gold_id": pair.gold_id,
            "gold_set": gold_set,
            "variant": i,
            "kind": variant.kind,
            **base,
            "instruction_b": variant.instruction_b,
        }
        for i, variant in enumerate(pair.corrupt)
    ]


def pairs_from_rows(
    pairs: Iterable[dict[str, Any]], corrupt: Iterable[dict[str, Any]], where: str
) -> list[tuple[str, GoldPair]]:
    """(gold_set, GoldPair) from the two configs' rows; a bad row is one UserError line."""
    variants: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for row in corrupt:
        entry = {"kind": row.get("kind"), "instruction_b": row.get("instruction_b")}
        variants.setdefault(str(row.get("gold_id")), []).append((row.get("variant") or 0, entry))
    out = []
    for number, row in enumerate(pairs):
        fields = {name: row.get(name) for name in _PAIR_FIELDS if row.get(name) is not None}
        found = sorted(variants.get(str(row.get("gold_id")), []), key=lambda v: v[0])
        fields["corrupt"] = [entry for _, entry in found]
        try:
            pair = GoldPair.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise UserError(
                f"{where}: pairs row {number} ({row.get('gold_id')}): {loc}: {first['msg']}"
            ) from None
        out.append((str(row.get("gold_set") or "gold"), pair))
    return out


# --- one reader for --gold: a JSONL file, an export-gold folder, or a Hub dataset id -----


def read_gold_sets(value: str | Path | None, option: str = "--gold") -> list[tuple[str, GoldPair]]:
    """(gold_set, pair) for every pair `value` names, in order.

    `value` may be None or `bundled` (the bundled sample set), a JSONL file of gold
    records, a folder written by `dvsynth export-gold`, or a Hub dataset id
    ORG/NAME[@REVISION] holding one (loaded with `datasets.load_dataset`, configs `pairs`
    and `corrupt`). What it is is decided in that order, by what exists on disk first,
    so a local folder is never mistaken for a Hub id. Anything else is one UserError line
    naming the option and the value.
    """
    text = str(value) if value is not None else BUNDLED
    path = Path(text)
    if path.is_dir():
        if not all((path / part).exists() for part in ("README.md", *GOLD_CONFIGS)):
            raise UserError(
                f"{option} {text}: folder is not a gold dataset (written by `dvsynth "
                "export-gold`: README.md, pairs/, corrupt/)"
            )
        return _from_dataset(str(path), None, option, text)
    if path.exists() or path.suffix in (".jsonl", ".json"):
        return [(set_name(path), pair) for pair in read_gold(path)]
    if text == BUNDLED:
        return [("sample", pair) for pair in read_gold(BUNDLED_GOLD)]
    if _HUB_ID.match(text):
        repo, _, revision = text.partition("@")
        return _from_dataset(repo, revision or None, option, text)
    raise UserError(
        f"{option} {text}: not a gold JSONL file, a folder written by `dvsynth export-gold`, "
        f"a Hub dataset id (ORG/NAME[@REVISION]) or `{BUNDLED}`"
    )


def load_gold(value: str | Path | None, option: str = "--gold") -> list[GoldPair]:
    """The pairs of `read_gold_sets(value)`, for calibrate and eval-retriever."""
    return [pair for _, pair in read_gold_sets(value, option)]


def _from_dataset(
    path: str, revision: str | None, option: str, value: str
) -> list[tuple[str, GoldPair]]:
    import datasets

    rows: dict[str, list[dict[str, Any]]] = {}
    for config in GOLD_CONFIGS:
        try:
            loaded = datasets.load_dataset(path, config, revision=revision)
        except Exception as exc:
            detail = " ".join(redact(str(exc)).split())[:300]
            raise UserError(
                f"{option} {value}: cannot load config '{config}' ({type(exc).__name__}: {detail})"
            ) from None
        rows[config] = [row for split in loaded.values() for row in split]
    return pairs_from_rows(rows["pairs"], rows["corrupt"], f"{option} {value}")


def check_unique(sets: Sequence[tuple[str, GoldPair]]) -> None:
    """Gold ids join pairs to their corrupt rows, so one id may appear once only."""
    seen: dict[str, str] = {}
    for name, pair in sets:
        if pair.gold_id in seen:
            raise UserError(
                f"--gold: gold_id {pair.gold_id} appears twice (sets '{seen[pair.gold_id]}' "
                f"and '{name}'); ids join pairs to their corrupt rows, so they must be unique"
            )
        seen[pair.gold_id] = name
