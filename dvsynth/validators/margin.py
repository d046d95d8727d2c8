"""`--escalate-margin auto`: the smallest margin whose cascade keeps a precision target.

The cascade is scored on a gold set (`evaluate.calibrate`) at margins 0, 0.05, ... 0.5,
smallest first, all on one response cache, so each question is paid once whatever the
number of margins tried. The first margin whose keep precision reaches the target wins;
it is reported and recorded in the run's settings with the gold set and the target it
was picked on. None reaching it is one line naming the best precision seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dvsynth.config import ValidateConfig
from dvsynth.errors import UserError

MARGINS = tuple(round(0.05 * i, 2) for i in range(11))


@dataclass
class PickedMargin:
    margin: float
    gold: str
    target: float
    precision: float | None
    recall: float | None
    escalated_share: float | None
    tried: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "margin": self.margin,
            "gold": self.gold,
            "target_precision": self.target,
            "keep_precision": self.precision,
            "keep_recall": self.recall,
            "escalated_share": self.escalated_share,
            "tried": self.tried,
        }

    def describe(self) -> str:
        return (
            f"--escalate-margin auto: {self.margin:g}, the smallest whose cascade keeps "
            f"precision {self.precision} >= {self.target:g} on {self.gold} (recall "
            f"{self.recall}, {self.escalated_share} of questions escalated)"
        )


def resolve_margin(
    config: ValidateConfig, cache: Any = None, pairs: Any = None, mode: str | None = None
) -> tuple[ValidateConfig, PickedMargin]:
    """`config` with `escalate_margin` picked on `config.escalate_gold` (or on `pairs`;
    `mode`: as `evaluate.calibrate.score` scores them)."""
    from dvsynth.evaluate.calibrate import MemoryCache, score
    from dvsynth.evaluate.gold import load_gold

    gold = str(config.escalate_gold)
    if pairs is None:
        pairs = load_gold(gold, "--escalate-gold")
    cache = cache if cache is not None else MemoryCache()
    tried: list[dict[str, Any]] = []
    for margin in MARGINS:
        trial = config.model_copy(update={"escalate_margin": margin})
        found = score(pairs, trial, cache, mode)
        precision = found["keep_precision"]
        tried.append(
            {
                "margin": margin,
                "keep_precision": precision,
                "keep_recall": found["keep_recall"],
                "escalated_share": found.get("escalated_share"),
            }
        )
        if precision is not None and precision >= config.target_precision:
            picked = PickedMargin(
                margin,
                gold,
                config.target_precision,
                precision,
                found["keep_recall"],
                found.get("escalated_share"),
                tried,
            )
            resolved = config.model_copy(update={"escalate_margin": margin})
            resolved._margin_picked = {"gold": gold, "target_precision": config.target_precision}
            return resolved, picked
    best = max((t["keep_precision"] or 0.0) for t in tried)
    raise UserError(
        f"--escalate-margin auto: no margin up to 0.5 keeps precision "
        f"{config.target_precision:g} on {gold} (best {best:g}); lower --target-precision "
        "or choose a stronger --escalate-to"
    )
