"""What one client's calls cost: litellm's price for its model, looked up once.

The lean HTTP path reads litellm's flat rates from its bundled table (`llm.prices`)
without importing litellm; everything else asks litellm. The embedded model is free.
"""

from __future__ import annotations

from typing import Any

from dvsynth.llm.litellm_module import litellm
from dvsynth.llm.prices import UNSURE, lean_rates


class Pricing:
    """Prices for `model`; `local`: the embedded model (free); `lean`: its calls go
    through the lean HTTP transport (flat rates read without litellm where certain)."""

    def __init__(self, model: str, *, local: bool, lean: bool) -> None:
        self.model = model
        self.local = local
        self.lean = lean
        self._known: bool | None = None
        self._rates: tuple[float, float] | None | str | bool = False  # False: not looked up

    def known(self) -> bool:
        """Whether litellm's price table has this model (else cost shows as unknown)."""
        if self.local:
            return True
        if self._lean_rates() != UNSURE:
            return self._rates is not None
        try:
            info = litellm().get_model_info(self.model)
        except Exception:
            return False
        return bool(info.get("input_cost_per_token") or info.get("output_cost_per_token"))

    def _lean_rates(self) -> tuple[float, float] | None | str:
        """litellm's flat rates for a lean-path model, read from its bundled table on
        first use (after the first request, not before); UNSURE: ask litellm."""
        if self._rates is False:
            self._rates = lean_rates(self.model) if self.lean else UNSURE
        return self._rates  # type: ignore[return-value]

    def _has_price(self) -> bool:
        """`known()`, looked up once."""
        if self._known is None:
            self._known = self.known()
        return self._known

    def tokens(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """litellm's price for these token counts, or None when it has no price."""
        if self.local:
            return 0.0
        if not self._has_price():
            return None
        if isinstance(self._rates, tuple):  # litellm's own flat rates, from its table
            return float(prompt_tokens * self._rates[0] + completion_tokens * self._rates[1])
        try:
            prompt_cost, completion_cost = litellm().cost_per_token(
                model=self.model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        except Exception:
            return None
        return float(prompt_cost + completion_cost)

    def response(self, response: Any) -> float | None:
        """The price of a litellm response, or None when litellm has no price for it.

        litellm already priced the response while logging it; reuse that figure rather
        than pay for a second lookup on every call.
        """
        if self.local:
            return 0.0
        if not self._has_price():
            return None
        cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        if cost is None:
            try:
                cost = litellm().completion_cost(completion_response=response)
            except Exception:
                return None
        return float(cost)
