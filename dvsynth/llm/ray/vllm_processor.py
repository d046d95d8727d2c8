"""The vLLM processor: `ray.data.llm`'s vLLM engine stage, one engine per replica
(`--tensor-parallel` GPUs each, `--replicas` of them across the cluster), with rows in
and out in the shape the HTTP processor uses, so both feed the same import path.

A GGUF file (such as the bundled SmolLM2) needs its tokenizer named: pass
`--engine-arg tokenizer=<hf repo>`, which also serves the chat-template stage.
"""

from __future__ import annotations

import json
import time
from typing import Any

#: Sampling fields of an OpenAI body that vLLM's SamplingParams takes as they are.
_SAMPLING = ("temperature", "top_p", "max_tokens", "seed", "stop", "presence_penalty")


def to_engine_row(row: dict[str, Any]) -> dict[str, Any]:
    """A request row (custom_id, OpenAI body as JSON) as the vLLM stage's input."""
    body = json.loads(row["body"])
    sampling = {k: body[k] for k in _SAMPLING if body.get(k) is not None}
    if body.get("logprobs"):
        sampling["logprobs"] = int(body.get("top_logprobs") or 1)
    return {
        "custom_id": row["custom_id"],
        "messages": body["messages"],
        "sampling_params": sampling,
    }


def from_engine_row(row: dict[str, Any]) -> dict[str, Any]:
    """The vLLM stage's output as the processor's output row: an OpenAI chat.completion."""
    error = row.get("__inference_error__")
    if error:
        return {"custom_id": row["custom_id"], "status": 500, "response": "", "error": str(error)}
    sampling = row.get("sampling_params") or {}
    generated = int(row.get("num_generated_tokens") or 0)
    cut = bool(sampling.get("max_tokens")) and generated >= int(sampling["max_tokens"])
    completion = {
        "id": f"vllm-{row['custom_id']}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "vllm",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": row.get("generated_text") or ""},
                "finish_reason": "length" if cut else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": int(row.get("num_input_tokens") or 0),
            "completion_tokens": generated,
            "total_tokens": int(row.get("num_input_tokens") or 0) + generated,
        },
    }
    return {
        "custom_id": row["custom_id"],
        "status": 200,
        "response": json.dumps(completion),
        "error": "",
    }


def vllm_config(
    model_source: str, tensor_parallel: int, replicas: int, engine_args: dict[str, Any]
) -> Any:
    """`vLLMEngineProcessorConfig` for the model; `engine_args` go to vLLM's engine."""
    from ray.data.llm import vLLMEngineProcessorConfig

    engine_args = dict(engine_args)
    tokenizer = engine_args.get("tokenizer")
    stages: dict[str, Any] = {}
    if tokenizer:  # a GGUF file has no chat template or tokenizer beside it
        stages = {
            name: {"model_source": tokenizer}
            for name in ("chat_template_stage", "tokenize_stage", "detokenize_stage")
        }
    batch_size = int(engine_args.pop("batch_size", 64))
    return vLLMEngineProcessorConfig(
        model_source=model_source,
        engine_kwargs={"tensor_parallel_size": tensor_parallel, **engine_args},
        concurrency=(replicas, replicas),  # a plain int lets Ray scale between 1 and it
        batch_size=batch_size,
        should_continue_on_error=True,  # one bad row is that row's error, not the job's
        **stages,
    )


def build_vllm_processor(
    model_source: str, tensor_parallel: int, replicas: int, engine_args: dict[str, Any]
) -> Any:
    """The processor (a callable from a dataset of request rows to result rows)."""
    from ray.data.llm import build_processor

    config = vllm_config(model_source, tensor_parallel, replicas, engine_args)
    return build_processor(config, preprocess=to_engine_row, postprocess=from_engine_row)
