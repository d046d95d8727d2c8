"""The LLM layer: one client over litellm for every provider, plus the embedded model."""

from dvsynth.llm.client import Completion, LLMClient

__all__ = ["Completion", "LLMClient"]
