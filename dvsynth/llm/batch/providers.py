"""Which batch API serves a model: Anthropic's Message Batches for `anthropic/` models,
else the OpenAI batch format through litellm for the providers litellm covers."""

from __future__ import annotations

import os

from dvsynth.errors import UserError
from dvsynth.llm.batch.provider import BatchProvider
from dvsynth.llm.keys import NO_KEY

#: litellm providers whose batch calls (files + batches) take the OpenAI format.
LITELLM_BATCH_PROVIDERS = frozenset(
    {"openai", "azure", "vertex_ai", "bedrock", "hosted_vllm", "litellm_proxy", "mistral", "xai"}
)


def provider_for(
    model: str,
    provider: str,
    api_base: str | None,
    api_key: str | None,
    option: str = "--batch",
) -> BatchProvider:
    """The batch API for `model` (litellm's `provider` name), or a one-line refusal."""
    if model.startswith("local/"):
        raise UserError(
            f"{option}: the embedded local model has no batch API; run it online (without {option})"
        )
    if api_base and not api_key:
        api_key = NO_KEY  # the key rule (`llm.keys`) sends no provider's key to this server
    if provider == "anthropic":
        from dvsynth.llm.batch.anthropic import AnthropicBatches

        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        base = api_base.removesuffix("/v1") if api_base else None
        return AnthropicBatches(api_key=key, base_url=base)
    if provider in LITELLM_BATCH_PROVIDERS:
        from dvsynth.llm.batch.openai import OpenAIBatches

        return OpenAIBatches(custom_llm_provider=provider, api_base=api_base, api_key=api_key)
    raise UserError(
        f"{option}: litellm has no batch API for {provider} models ({model}); write the "
        "requests with --batch-out FILE, run them with any engine that reads OpenAI batch "
        "files (vllm run-batch), and bring the results back with `dvsynth batch import`"
    )
