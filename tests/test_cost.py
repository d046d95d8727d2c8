"""Online and batch prices from litellm's bundled table, prompt tokens, and the estimate."""

from __future__ import annotations

import math
import os
from importlib import resources

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402

from dvsynth.llm import cost  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You write retrieval instructions."},
    {
        "role": "user",
        "content": "Query: best hiking boots for wet weather\n"
        "Document: Gore-Tex lined boots keep feet dry.",
    },
]


def _chat_model_without_batch_rates(
    litellm_provider: str, routed_as: str, named: str = ""
) -> str | None:
    """A chat model of this provider (its name containing `named`) that litellm prices
    online, flat (no tiers), and without batch rates: the documented discount must supply
    its batch price."""
    for name, entry in sorted(litellm.model_cost.items()):
        if (
            named in name
            and entry.get("litellm_provider") == litellm_provider
            and entry.get("mode") == "chat"
            and entry.get("input_cost_per_token")
            and entry.get("output_cost_per_token")
            and entry.get("input_cost_per_token_batches") is None
            and entry.get("output_cost_per_token_batches") is None
            and not any(
                cost._PROMPT_TIER_KEY.search(key) or key == "tiered_pricing" for key in entry
            )
            and cost._provider(name) == routed_as
        ):
            return name
    return None


# --- Prices -------------------------------------------------------------------------------


def test_batch_price_is_litellms_batch_rate_where_it_has_one():
    info = litellm.get_model_info("gpt-4o-mini")
    assert info["input_cost_per_token_batches"] and info["output_cost_per_token_batches"]
    expected = (
        1000 * info["input_cost_per_token_batches"] + 200 * info["output_cost_per_token_batches"]
    )
    assert cost.batch_price("gpt-4o-mini", 1000, 200) == pytest.approx(expected, rel=1e-9)
    online = cost.online_price("gpt-4o-mini", 1000, 200)
    assert online == pytest.approx(
        1000 * info["input_cost_per_token"] + 200 * info["output_cost_per_token"], rel=1e-9
    )
    assert cost.batch_price("gpt-4o-mini", 1000, 200) == pytest.approx(online / 2, rel=1e-6)
    # The provider prefix and Azure name the same prices.
    assert cost.batch_price("openai/gpt-4o-mini", 1000, 200) == pytest.approx(expected)


@pytest.mark.parametrize(
    "litellm_provider, routed_as, named, factor",
    [
        ("anthropic", "anthropic", "claude", cost.ANTHROPIC_BATCH_FACTOR),
        ("openai", "openai", "gpt-4", cost.OPENAI_BATCH_FACTOR),
        ("azure", "azure", "gpt-4", cost.AZURE_OPENAI_BATCH_FACTOR),
        ("bedrock", "bedrock", "anthropic.claude", cost.BEDROCK_BATCH_FACTOR),
        ("vertex_ai-language-models", "vertex_ai", "gemini", cost.VERTEX_GEMINI_BATCH_FACTOR),
    ],
)
def test_documented_discount_where_litellm_has_only_the_online_price(
    litellm_provider, routed_as, named, factor
):
    model = _chat_model_without_batch_rates(litellm_provider, routed_as, named)
    if model is None and litellm_provider == "anthropic":
        pytest.fail("litellm's table has no anthropic chat model without batch rates")
    if model is None:
        pytest.skip(f"no {litellm_provider} chat model without batch rates in this litellm")
    online = cost.online_price(model, 1000, 200)
    assert online is not None and online > 0
    assert factor == 0.5
    assert cost.batch_price(model, 1000, 200) == pytest.approx(factor * online, rel=1e-9)


def test_anthropic_model_without_batch_rates_gets_half():
    model = _chat_model_without_batch_rates("anthropic", "anthropic")
    assert model is not None  # claude-mythos-preview in litellm 1.110.2
    assert cost.batch_price(model, 10_000, 500) == pytest.approx(
        0.5 * cost.online_price(model, 10_000, 500), rel=1e-9
    )


@pytest.mark.parametrize(
    "model",
    [
        "vertex_ai/claude-3-5-haiku",  # Vertex, not Gemini: no documented discount here
        "deepseek/deepseek-chat",  # a provider with no batch API discount known here
    ],
)
def test_no_batch_price_without_batch_rates_or_documented_discount(model):
    info = litellm.get_model_info(model)
    assert info.get("input_cost_per_token_batches") is None
    assert cost.online_price(model, 1000, 200) is not None
    assert cost.batch_price(model, 1000, 200) is None


@pytest.mark.parametrize(
    "model", ["no-such-model-xyz", "hosted_vllm/Qwen/Qwen2.5-7B-Instruct", "openai/my-own-model"]
)
def test_unknown_price_is_none_not_zero(model, capsys):
    assert cost.online_price(model, 1000, 200) is None
    assert cost.batch_price(model, 1000, 200) is None
    assert "Provider List" not in capsys.readouterr().out


def test_local_model_is_free():
    assert cost.online_price("local/smollm2", 1000, 200) == 0.0
    assert cost.batch_price("local/smollm2", 1000, 200) == 0.0


# --- Prompt tokens ------------------------------------------------------------------------


def test_prompt_tokens_with_the_models_tokenizer():
    os.environ.setdefault(
        "TIKTOKEN_CACHE_DIR", str(resources.files("litellm") / "litellm_core_utils/tokenizers")
    )
    import tiktoken

    o200k = tiktoken.get_encoding("o200k_base")
    # OpenAI's chat framing: 3 tokens a message (+ its role), 3 to prime the reply.
    expected = sum(
        3 + len(o200k.encode(m["role"])) + len(o200k.encode(m["content"])) for m in MESSAGES
    )
    expected += 3
    assert cost.count_prompt_tokens("gpt-4o-mini", MESSAGES) == expected
    assert cost.tokenizer_label("gpt-4o-mini") == "litellm:gpt-4o-mini [o200k_base]"


@pytest.mark.parametrize(
    "model, tokenizer",
    [
        ("gpt-4o-mini", "o200k_base"),
        ("claude-haiku-4-5", "anthropic tokenizer"),
        ("anthropic/claude-haiku-4-5", "anthropic tokenizer"),
        ("hosted_vllm/Qwen/Qwen2.5-7B-Instruct", "cl100k_base"),
        ("local/smollm2", "cl100k_base"),
    ],
)
def test_prompt_tokens_are_stable_and_positive(model, tokenizer):
    first = cost.count_prompt_tokens(model, MESSAGES)
    assert first > 0
    assert cost.count_prompt_tokens(model, [dict(m) for m in MESSAGES]) == first
    assert tokenizer in cost.tokenizer_label(model)


def test_no_tokenizer_download(monkeypatch):
    """litellm fetches the Llama 3 tokenizer from the Hub for any model named llama-3
    (offline: ~25 s of retries, then tiktoken); dvsynth takes the tiktoken fallback at once."""
    import litellm.rust_bridge.tokenizer as dispatch

    fetched: list[str] = []

    def no_download(identifier, *args, **kwargs):
        fetched.append(identifier)
        raise OSError("no network in this test")

    monkeypatch.setattr(dispatch, "from_pretrained", no_download)
    model = "hosted_vllm/meta-llama/Llama-3.1-8B-Instruct"
    count = cost.count_prompt_tokens(model, MESSAGES)
    assert fetched == []
    assert count == cost.count_prompt_tokens("hosted_vllm/some-model", MESSAGES)  # cl100k
    assert "cl100k_base" in cost.tokenizer_label(model)
    assert "llama3" in cost.tokenizer_label(model)


def test_chars_over_four_when_the_tokenizer_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("tokenizer broke")

    monkeypatch.setattr(litellm, "token_counter", broken)
    chars = sum(len(m["content"]) for m in MESSAGES)
    assert cost.count_prompt_tokens("gpt-4o-mini", MESSAGES) == math.ceil(chars / 4)
    estimate = cost.estimate("gpt-4o-mini", iter([MESSAGES] * 3), 10, cost.BASIS_RUN_MEAN)
    assert estimate.tokenizer == cost.CHARS_TOKENIZER
    assert estimate.fallback_calls == 3 and estimate.approximate_prompt_tokens
    assert estimate.prompt_tokens == 3 * math.ceil(chars / 4)


# --- Estimate -----------------------------------------------------------------------------


def _requests(n: int, size: int = 1500):
    """A one-shot generator of n calls whose prompts differ in length."""
    for i in range(n):
        text = f"Query {i}: a document about retrieval and instructions. " * (size // 50)
        yield [
            {"role": "system", "content": "You write retrieval instructions."},
            {"role": "user", "content": text[: size - 3 * (i % 7)]},
        ]


def test_estimate_sums_over_a_generator():
    model, n, per_call = "gpt-4o-mini", 25, 92.0
    counts = [cost.count_prompt_tokens(model, r) for r in _requests(n)]
    e = cost.estimate(model, _requests(n), per_call, cost.BASIS_RUN_MEAN)
    assert e.calls == n
    assert e.prompt_tokens == sum(counts)
    assert e.completion_tokens == round(n * per_call)
    assert e.completion_basis == "run mean"
    assert e.tokenizer == "litellm:gpt-4o-mini [o200k_base]" and e.fallback_calls == 0
    online = sum(cost.online_price(model, p, int(per_call)) for p in counts)
    batch = sum(cost.batch_price(model, p, int(per_call)) for p in counts)
    assert e.online_usd == pytest.approx(online, rel=1e-9)
    assert e.batch_usd == pytest.approx(batch, rel=1e-9)
    assert e.batch_usd == pytest.approx(e.online_usd / 2, rel=1e-6)


def test_estimate_prices_tiered_models_per_call():
    """gemini-2.5-pro costs more per token above 200k prompt tokens in one call: a run of
    small calls must not be priced as one huge call."""
    model = "gemini/gemini-2.5-pro"
    if not litellm.get_model_info(model).get("input_cost_per_token_above_200k_tokens"):
        pytest.skip("no tiered price for gemini-2.5-pro in this litellm")
    calls = [[{"role": "user", "content": "word " * 60_000}]] * 5  # ~60k tokens each
    e = cost.estimate(model, iter(calls), 100, cost.BASIS_MAX_TOKENS)
    each = cost.count_prompt_tokens(model, calls[0])
    assert e.prompt_tokens == 5 * each > 200_000
    assert e.online_usd == pytest.approx(5 * cost.online_price(model, each, 100), rel=1e-9)
    assert e.batch_usd == pytest.approx(5 * cost.batch_price(model, each, 100), rel=1e-9)
    assert e.online_usd < cost.online_price(model, 5 * each, 500)


def test_estimate_of_unpriced_and_local_models():
    e = cost.estimate("hosted_vllm/whatever", _requests(3), 50, cost.BASIS_RUN_MEAN)
    assert e.calls == 3 and e.prompt_tokens > 0
    assert e.online_usd is None and e.batch_usd is None
    assert "price unknown" in cost.format_estimate(e)
    local = cost.estimate("local/smollm2", _requests(3), 50, cost.BASIS_RUN_MEAN)
    assert local.online_usd == 0.0 and local.batch_usd == 0.0
    empty = cost.estimate("gpt-4o-mini", iter([]), 50, cost.BASIS_RUN_MEAN)
    assert (empty.calls, empty.prompt_tokens, empty.online_usd) == (0, 0, 0.0)


def test_estimate_checks_its_basis():
    with pytest.raises(ValueError):
        cost.estimate("gpt-4o-mini", iter([]), 50, "guess")


def test_format_estimate():
    e = cost.CostEstimate(
        calls=12_000,
        prompt_tokens=14_200_000,
        completion_tokens=1_104_000,
        completion_basis="run mean",
        online_usd=2.3149,
        batch_usd=1.1574,
        tokenizer="litellm:gpt-4o-mini [o200k_base]",
        model="gpt-4o-mini",
        completion_tokens_per_call=92.0,
    )
    assert cost.format_estimate(e) == (
        "12,000 calls, 14.2M prompt tokens (tokenizer litellm:gpt-4o-mini [o200k_base]), "
        "~1.1M completion tokens (run mean 92/call): $2.31 online, $1.16 batch"
    )
