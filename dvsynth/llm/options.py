"""The option names a client was built from, so that its errors name what the user set.

The generator and the judge are the same client class; a judge whose key is missing must
say `--judge-model`, and a recipe's must say `validation.judge_model`, never the
generator's `--model`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientOptions:
    """Where a client's model, server and key variable were given."""

    model: str = "--model"
    api_base: str = "--api-base"
    api_key_env: str = "--api-key-env"


GENERATOR = ClientOptions()
JUDGE = ClientOptions("--judge-model", "--judge-api-base", "--judge-api-key-env")
RECIPE_GENERATOR = ClientOptions("generate.model", "generate.api_base", "generate.api_key_env")
RECIPE_JUDGE = ClientOptions(
    "validation.judge_model", "validation.judge_api_base", "validation.judge_api_key_env"
)

ESCALATE = ClientOptions("--escalate-to", "--escalate-api-base", "--escalate-api-key-env")
RECIPE_ESCALATE = ClientOptions(
    "validation.escalate_to", "validation.escalate_api_base", "validation.escalate_api_key_env"
)


def options_for(role: str, recipe: bool = False) -> ClientOptions:
    """The names of the generator's, the judge's or the strong judge's options (`escalate`),
    on the CLI or in a recipe."""
    if role == "judge":
        return RECIPE_JUDGE if recipe else JUDGE
    if role == "escalate":
        return RECIPE_ESCALATE if recipe else ESCALATE
    return RECIPE_GENERATOR if recipe else GENERATOR
