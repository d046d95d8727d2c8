"""`llm.prices` gives litellm's own answer wherever it answers without litellm.

The lean path prices calls from litellm's bundled table without importing litellm; a
price that differed from litellm's would change every row's cost. Checked over every
entry of the table that a lean provider can name, and over names it does not list.
"""

from __future__ import annotations

import pytest

from dvsynth.llm.prices import LEAN_PROVIDERS, UNSURE, _table, lean_rates

UNLISTED = (
    "fake",
    "fake-model",
    "meta-llama/Llama-3.1-8B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "my-finetune-2024-05-01",
)


def lean_names() -> list[str]:
    table = _table()
    assert table is not None, "litellm's bundled price table was not found"
    entries = table[0]
    names = set(UNLISTED)
    for key, info in entries.items():
        provider = info.get("litellm_provider")
        if provider in LEAN_PROVIDERS:
            names.add(key.removeprefix(f"{provider}/"))
    return [f"{p}/{n}" for p in LEAN_PROVIDERS for n in sorted(names)]


def litellm_price(litellm, model: str, prompt: int, completion: int) -> float | None:
    """What LLMClient priced a call at through litellm before `llm.prices` existed."""
    try:
        info = litellm.get_model_info(model)
    except Exception:
        return None
    if not (info.get("input_cost_per_token") or info.get("output_cost_per_token")):
        return None
    prompt_cost, completion_cost = litellm.cost_per_token(
        model=model, prompt_tokens=prompt, completion_tokens=completion
    )
    return float(prompt_cost + completion_cost)


def test_lean_rates_match_litellm(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    answered = priced = 0
    for model in lean_names():
        rates = lean_rates(model)
        if rates == UNSURE:
            continue
        answered += 1
        for prompt, completion in ((0, 0), (1, 1), (1000, 200), (123_457, 999)):
            ours = None if rates is None else prompt * rates[0] + completion * rates[1]
            assert ours == litellm_price(litellm, model, prompt, completion), model
        priced += rates is not None
    # The check means something: unlisted names and some priced entries are answered.
    assert answered > len(UNLISTED) and priced > 0


def test_unlisted_self_hosted_model_has_no_price(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    assert lean_rates("hosted_vllm/meta-llama/Llama-3.1-8B-Instruct") is None
    assert lean_rates("openai/fake-model") is None


def test_only_litellm_can_tell_elsewhere(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    assert lean_rates("anthropic/claude-3-5-haiku-latest") == UNSURE  # not a lean provider
    assert lean_rates("openai/ft:gpt-4o-mini:org::abc") == UNSURE  # litellm strips ft:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "False")  # a fetched table
    assert lean_rates("openai/fake-model") == UNSURE
