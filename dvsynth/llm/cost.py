"""Prices for online and batch calls, and what a run will cost before it is sent.

Prices come from litellm's bundled price table (never fetched: LITELLM_LOCAL_MODEL_COST_MAP).
A batch price is the table's own `*_cost_per_token_batches` rate where it has one; where it
has only the online rate, the provider's documented batch discount applies (the constants
below, each with its source). A model whose price, or whose provider's batch discount, is
not known gets None, never 0: an unknown price must not read as a free one. The embedded
`local/` model costs 0.

Prompt tokens are counted with the model's tokenizer where litellm has one offline (tiktoken
encodings and the Anthropic and DeepSeek tokenizers it bundles). The tokenizers litellm would
download from the Hugging Face Hub (Llama 2/3, Cohere) are never fetched: those models are
counted with cl100k_base, litellm's own fallback, and the label says so. If the tokenizer
fails, a call is counted as characters / 4 and the estimate says how many calls were.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dvsynth.llm.transports.local import PROVIDER as _LOCAL_PROVIDER

# litellm fetches its price table over the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

LOCAL_PREFIX = f"{_LOCAL_PROVIDER}/"

# --- Documented batch discounts (batch price = online price x factor) -------------------
# Used only where litellm's table has no `*_cost_per_token_batches` rate for the model.
#: OpenAI Batch API: "50% cost discount compared to synchronous APIs".
#: https://platform.openai.com/docs/guides/batch
OPENAI_BATCH_FACTOR = 0.5
#: Azure OpenAI global batch: "at 50% less cost than global standard".
#: https://learn.microsoft.com/en-us/azure/ai-foundry/openai/how-to/batch
AZURE_OPENAI_BATCH_FACTOR = 0.5
#: Anthropic Message Batches API: "50% of standard API prices".
#: https://docs.anthropic.com/en/docs/build-with-claude/batch-processing#pricing
ANTHROPIC_BATCH_FACTOR = 0.5
#: Vertex AI batch inference for Gemini: "a 50% discounted rate compared to real-time
#: inference". Gemini models only; other Vertex models (Claude, Llama, ...) get None.
#: https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/batch-prediction-gemini
VERTEX_GEMINI_BATCH_FACTOR = 0.5
#: Gemini API (Google AI Studio) Batch Mode: "50% of the standard cost".
#: https://ai.google.dev/gemini-api/docs/batch-mode
GEMINI_API_BATCH_FACTOR = 0.5
#: Amazon Bedrock batch inference: "50% lower price compared to on-demand" for the models
#: that support batch inference.
#: https://aws.amazon.com/bedrock/pricing/ ,
#: https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference.html
BEDROCK_BATCH_FACTOR = 0.5

#: litellm provider (as `litellm.get_llm_provider` names it) -> batch factor.
_PROVIDER_BATCH_FACTOR: dict[str, float] = {
    "openai": OPENAI_BATCH_FACTOR,
    "text-completion-openai": OPENAI_BATCH_FACTOR,
    "azure": AZURE_OPENAI_BATCH_FACTOR,
    "azure_text": AZURE_OPENAI_BATCH_FACTOR,
    "anthropic": ANTHROPIC_BATCH_FACTOR,
    "gemini": GEMINI_API_BATCH_FACTOR,
    "bedrock": BEDROCK_BATCH_FACTOR,
    "bedrock_converse": BEDROCK_BATCH_FACTOR,
}
_VERTEX_PROVIDERS = ("vertex_ai", "vertex_ai_beta")

BASIS_RUN_MEAN = "run mean"
BASIS_MAX_TOKENS = "--max-tokens"

CHARS_PER_TOKEN = 4
CHARS_TOKENIZER = "chars/4"
# litellm tokenizers that come from the Hugging Face Hub on first use (see
# litellm.utils._load_huggingface_tokenizer); "anthropic" and "deepseek" ship with litellm.
_DOWNLOADED_TOKENIZERS = frozenset({"cohere", "llama2", "llama3"})
# Completion tokens priced per call when splitting a price into prompt and completion
# parts (litellm wants whole numbers; the per-call mean is a float).
_COMPLETION_REF = 1_000_000
# A rate that changes with the prompt's size ("input_cost_per_token_above_200k_tokens");
# not "cache_creation_input_token_cost_above_1hr", a cache lifetime.
_PROMPT_TIER_KEY = re.compile(r"_above_\d+k?_tokens")


def _litellm() -> Any:
    import litellm

    litellm.suppress_debug_info = True  # no "Provider List" banners on stdout for unknowns
    return litellm


def _is_local(model: str) -> bool:
    return model.startswith(LOCAL_PREFIX)


@lru_cache(maxsize=64)
def _model_info(model: str) -> dict[str, Any] | None:
    """litellm's price-table entry for `model`, or None when it has none."""
    try:
        return dict(_litellm().get_model_info(model))
    except Exception:
        return None


@lru_cache(maxsize=64)
def _provider(model: str) -> str | None:
    try:
        return _litellm().get_llm_provider(model)[1]
    except Exception:
        return None


def _has_online_price(info: dict[str, Any]) -> bool:
    # The same test as LLMClient.price_known: a table entry with two zero prices is a model
    # litellm lists but does not price.
    return bool(info.get("input_cost_per_token") or info.get("output_cost_per_token"))


def batch_factor(model: str) -> float | None:
    """The documented batch discount for `model`'s provider (batch = online x factor), or
    None when the provider documents none that this module knows."""
    provider = _provider(model)
    if provider in _VERTEX_PROVIDERS:
        info = _model_info(model) or {}
        is_gemini = "gemini" in model.lower() and (
            info.get("litellm_provider", "vertex_ai-language-models") == "vertex_ai-language-models"
        )
        return VERTEX_GEMINI_BATCH_FACTOR if is_gemini else None
    return _PROVIDER_BATCH_FACTOR.get(provider or "")


def _online_parts(model: str, prompt_tokens: int, completion_tokens: int):
    """(prompt cost, completion cost) of one online call, or None when unknown."""
    info = _model_info(model)
    if info is None or not _has_online_price(info):
        return None
    try:
        prompt_cost, completion_cost = _litellm().cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        return None
    return float(prompt_cost), float(completion_cost)


def _batch_parts(model: str, prompt_tokens: int, completion_tokens: int):
    """(prompt cost, completion cost) of one call in a provider batch, or None."""
    info = _model_info(model)
    if info is None:
        return None
    has_in = info.get("input_cost_per_token_batches") is not None
    has_out = info.get("output_cost_per_token_batches") is not None
    table = None
    if has_in or has_out:
        try:
            from litellm import Usage
            from litellm.cost_calculator import batch_cost_calculator

            usage = Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            )
            # Reads the table's batch rates, tiers above a prompt size included. (For a
            # missing rate it would halve the online one whatever the provider: only the
            # parts whose rate the table has are taken from it.)
            table = batch_cost_calculator(usage=usage, model=model)
        except Exception:
            table = None
            has_in = has_out = False
    factor = batch_factor(model)
    online = None
    if not (has_in and has_out) and factor is not None:
        online = _online_parts(model, prompt_tokens, completion_tokens)
    parts = []
    for i, has in enumerate((has_in, has_out)):
        if has and table is not None:
            parts.append(float(table[i]))
        elif online is not None and factor is not None:
            parts.append(online[i] * factor)
        else:
            return None
    return parts[0], parts[1]


def online_price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for one online call of these token counts; None when litellm has no price."""
    if _is_local(model):
        return 0.0
    parts = _online_parts(model, prompt_tokens, completion_tokens)
    return None if parts is None else parts[0] + parts[1]


def batch_price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for one call of these token counts sent through the provider's batch API.

    litellm's batch rates where its table has them; else its online price times the
    provider's documented batch discount; None when either is unknown.
    """
    if _is_local(model):
        return 0.0
    if _linear_pricing(model):  # one lookup per model, not per call (collection's hot path)
        rates = _batch_rates(model)
        return None if rates is None else prompt_tokens * rates[0] + completion_tokens * rates[1]
    parts = _batch_parts(model, prompt_tokens, completion_tokens)
    return None if parts is None else parts[0] + parts[1]


@lru_cache(maxsize=64)
def _batch_rates(model: str) -> tuple[float, float] | None:
    """USD per prompt token and per completion token in a batch, for a model whose price
    does not depend on the prompt's size."""
    parts = _batch_parts(model, _COMPLETION_REF, _COMPLETION_REF)
    return None if parts is None else (parts[0] / _COMPLETION_REF, parts[1] / _COMPLETION_REF)


# --- Prompt tokens ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tokenizer:
    label: str  # what counted, for the estimate ("litellm:gpt-4o-mini [o200k_base]")
    model: str  # the name passed to litellm.token_counter
    custom: Any = None  # litellm custom_tokenizer, to keep litellm off the Hub


@lru_cache(maxsize=64)
def _tokenizer(model: str) -> _Tokenizer:
    """Which tokenizer litellm.token_counter will use for `model`, chosen so that it never
    downloads one."""
    litellm = _litellm()
    try:
        from litellm.litellm_core_utils.token_counter import openai_tokenizer_encoding_name
        from litellm.utils import huggingface_tokenizer_kind
    except ImportError:  # another litellm: count as it does, label without the detail
        return _Tokenizer(label=f"litellm:{model}", model=model)
    name = model
    if huggingface_tokenizer_kind(name) is None:
        # "anthropic/claude-sonnet-4-5": litellm picks the Claude tokenizer only for the
        # bare name it lists.
        try:
            bare = litellm.get_llm_provider(model)[0]
        except Exception:
            bare = model
        if huggingface_tokenizer_kind(bare) is not None:
            name = bare
    kind = huggingface_tokenizer_kind(name)
    if kind in _DOWNLOADED_TOKENIZERS:
        # litellm would fetch this one from the Hub (and, offline, retry for ~25 s before
        # falling back to tiktoken): take its fallback straight away.
        from litellm.utils import _return_openai_tokenizer

        encoding = openai_tokenizer_encoding_name(name)
        return _Tokenizer(
            label=f"litellm:{name} [{encoding}; the {kind} tokenizer is not bundled]",
            model=name,
            custom=_return_openai_tokenizer(name),
        )
    encoding = f"{kind} tokenizer" if kind else openai_tokenizer_encoding_name(name)
    return _Tokenizer(label=f"litellm:{name} [{encoding}]", model=name)


def _message_text(messages: list[dict]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                part.get("text", "")
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
    return "".join(parts)


def chars_tokens(messages: list[dict]) -> int:
    """The rough count: characters of the messages' text / 4, rounded up."""
    return math.ceil(len(_message_text(messages)) / CHARS_PER_TOKEN)


def _count(model: str, messages: list[dict]) -> tuple[int, str]:
    """(prompt tokens, the tokenizer that counted them)."""
    try:
        tokenizer = _tokenizer(model)
        count = _litellm().token_counter(
            model=tokenizer.model, custom_tokenizer=tokenizer.custom, messages=messages
        )
        return int(count), tokenizer.label
    except Exception:
        return chars_tokens(messages), CHARS_TOKENIZER


def count_prompt_tokens(model: str, messages: list[dict]) -> int:
    """Prompt tokens of one chat call, message framing included, with the model's tokenizer
    where litellm has one offline; characters / 4 if the tokenizer fails."""
    return _count(model, messages)[0]


def tokenizer_label(model: str) -> str:
    """What `count_prompt_tokens` counts `model`'s prompts with."""
    try:
        return _tokenizer(model).label
    except Exception:
        return CHARS_TOKENIZER


# --- Estimate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CostEstimate:
    calls: int
    prompt_tokens: int
    #: calls x completion_tokens_per_call, rounded: an estimate, not a count.
    completion_tokens: int
    #: where completion_tokens_per_call came from: "run mean" | "--max-tokens".
    completion_basis: str
    online_usd: float | None
    batch_usd: float | None
    #: what counted the prompt tokens: "litellm:<model> [<encoding>]", or "chars/4" when
    #: the tokenizer failed on every call.
    tokenizer: str
    model: str = ""
    completion_tokens_per_call: float = 0.0
    #: calls counted as characters / 4 because the tokenizer failed on them.
    fallback_calls: int = 0

    @property
    def approximate_prompt_tokens(self) -> bool:
        """Whether any call's prompt was counted as characters / 4."""
        return self.fallback_calls > 0


@lru_cache(maxsize=64)
def _linear_pricing(model: str) -> bool:
    """Whether the model's price is the same per token at every prompt size, so a whole
    run can be priced from its totals (else it is priced per prompt size)."""
    info = _model_info(model) or {}
    return not any(
        _PROMPT_TIER_KEY.search(key) or key == "tiered_pricing"
        for key, value in info.items()
        if value
    )


def _total(parts_of, model: str, sizes: Counter, completion_per_call: float) -> float | None:
    """Sum over calls of prompt cost + completion cost, the calls given as a histogram of
    prompt sizes, each with `completion_per_call` completion tokens."""
    total = 0.0
    for prompt_tokens, calls in sizes.items():
        parts = parts_of(model, prompt_tokens, _COMPLETION_REF)
        if parts is None:
            return None
        prompt_cost, completion_cost = parts
        per_token = completion_cost / _COMPLETION_REF
        total += calls * (prompt_cost + completion_per_call * per_token)
    return total


def _price_run(
    parts_of, model: str, sizes: Counter, prompt_tokens: int, completion_tokens: float
) -> float | None:
    if _is_local(model):
        return 0.0
    if not sizes:
        return 0.0 if parts_of(model, 0, 0) is not None else None
    if _linear_pricing(model):
        # One price for the totals: the same sum, without a litellm lookup per prompt size.
        return _total(parts_of, model, Counter({prompt_tokens: 1}), completion_tokens)
    return _total(parts_of, model, sizes, completion_tokens / sum(sizes.values()))


def estimate(
    model: str,
    requests: Iterable[list[dict]],
    completion_tokens_per_call: float,
    basis: str,
) -> CostEstimate:
    """What sending `requests` (the messages of each call) to `model` will cost, online and
    as a provider batch.

    Streams: each request is counted and dropped; memory is one counter per distinct prompt
    size. Completion tokens are not known before the calls: `completion_tokens_per_call`
    (the run's mean so far, or --max-tokens as an upper bound) stands for every call.
    """
    if basis != BASIS_RUN_MEAN and not basis.startswith("--"):
        raise ValueError(f"basis must be {BASIS_RUN_MEAN!r} or the option that caps tokens")
    if completion_tokens_per_call < 0:
        raise ValueError("completion_tokens_per_call must be >= 0")
    sizes: Counter[int] = Counter()
    labels: Counter[str] = Counter()
    calls = prompt_tokens = fallback_calls = 0
    for messages in requests:
        count, label = _count(model, messages)
        calls += 1
        prompt_tokens += count
        sizes[count] += 1
        if label == CHARS_TOKENIZER:
            fallback_calls += 1
        else:
            labels[label] += 1
    completion = calls * completion_tokens_per_call
    if not labels:
        tokenizer = CHARS_TOKENIZER if fallback_calls else tokenizer_label(model)
    else:
        tokenizer = labels.most_common(1)[0][0]
        if fallback_calls:
            tokenizer += f"; {CHARS_TOKENIZER} for {fallback_calls:,} calls it failed on"
    return CostEstimate(
        calls=calls,
        prompt_tokens=prompt_tokens,
        completion_tokens=round(completion),
        completion_basis=basis,
        online_usd=_price_run(_online_parts, model, sizes, prompt_tokens, completion),
        batch_usd=_price_run(_batch_parts, model, sizes, prompt_tokens, completion),
        tokenizer=tokenizer,
        model=model,
        completion_tokens_per_call=float(completion_tokens_per_call),
        fallback_calls=fallback_calls,
    )


def _tokens(n: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return f"{n:,.0f}"


def _usd(value: float | None) -> str:
    if value is None:
        return "price unknown"
    if 0 < value < 0.01:
        return "<$0.01"
    return f"${value:,.2f}"


def format_estimate(e: CostEstimate) -> str:
    """One line, e.g. "12,000 calls, 14.2M prompt tokens (tokenizer litellm:gpt-4o-mini
    [o200k_base]), ~1.1M completion tokens (run mean 92/call): $2.31 online, $1.16 batch",
    and a second one when a price is unknown."""
    per_call = f"{e.completion_basis} {e.completion_tokens_per_call:,.0f}/call"
    if e.completion_basis != BASIS_RUN_MEAN:
        per_call += ", an upper bound"
    line = (
        f"{e.calls:,} calls, {_tokens(e.prompt_tokens)} prompt tokens "
        f"(tokenizer {e.tokenizer}), ~{_tokens(e.completion_tokens)} completion tokens "
        f"({per_call}): {_usd(e.online_usd)} online, {_usd(e.batch_usd)} batch"
    )
    if e.online_usd is None and e.batch_usd is None and e.model:
        line += f"\nlitellm's price table has no price for {e.model}."
    elif e.batch_usd is None and e.model:
        line += f"\nNo batch price for {e.model}: its provider's batch discount is not known."
    return line
