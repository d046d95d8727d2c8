"""A recipe never holds a secret, comments included: the file is published whole as the
export's recipe.yaml. The cases the old check let through (issue 25)."""

from __future__ import annotations

import pytest

from dvsynth.errors import UserError
from dvsynth.recipe.io import parse_recipe

HEX_KEY = "sk-3f9a2c41b7e84d0c9a6f1e2d3c4b5a69"


@pytest.mark.parametrize(
    "text, where",
    [
        (f"# DEEPSEEK_API_KEY={HEX_KEY}\ngenerate:\n  model: openai/x\n", "r.yaml:1: a comment"),
        (
            "generate:\n  api_base: http://host/v1?api-key=0123456789abcdef0123456789abcdef\n",
            "generate.api_base",
        ),
        (
            "generate:\n  api_base: https://Zx9Qw8Er7Ty6Ui5Op4As3Df2@host/v1\n",
            "generate.api_base",
        ),
        ("generate:\n  model: openai/x  # key sk-3f9a2c41b7e84d0c9a6f1e2d3c4b5a69\n", "r.yaml:2"),
    ],
)
def test_keys_the_old_check_missed_are_refused_without_echoing_them(text, where):
    with pytest.raises(UserError) as refused:
        parse_recipe(text.encode(), "r.yaml")
    message = str(refused.value)
    assert where in message and "secret" in message
    for secret in (HEX_KEY, "0123456789abcdef", "Zx9Qw8Er7Ty6Ui5Op4As3Df2"):
        assert secret not in message


def test_hashes_ids_and_variable_names_stay_allowed():
    recipe = parse_recipe(
        b"# prompt sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
        b"# run 123e4567-e89b-42d3-a456-426614174000, built with sk-learn and hf_hub\n"
        b"generate:\n  model: openai/gpt-4o-mini\n  api_key_env: DEEPSEEK_API_KEY\n"
        b"  api_base: https://api.deepseek.com/v1\n"
    )
    assert recipe.generate.api_key_env == "DEEPSEEK_API_KEY"


def test_a_binary_value_cannot_smuggle_a_key_past_the_check():
    """`!!binary` is base64 in the file (no key shape to see) and bytes once loaded."""
    import base64

    hidden = base64.b64encode(HEX_KEY.encode()).decode()
    with pytest.raises(UserError) as refused:
        parse_recipe(f"generate:\n  model: !!binary {hidden}\n".encode(), "r.yaml")
    message = str(refused.value)
    assert "r.yaml:2" in message and "generate.model" in message and "!!binary" in message
    assert HEX_KEY not in message and hidden not in message
