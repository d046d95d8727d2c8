"""Which API key goes to which server: the one rule, decided before litellm sees a call.

A key belongs to its provider's own API. The server a call goes to decides whose key it
may carry, whatever the model string says (`gpt-4o-mini`, `openai/x`, `azure/x`,
`anthropic/x`, `OpenAI/x`, `openai//x`):

1. `--api-key-env VAR` names the key: VAR's value goes to that client's servers.
2. No `--api-base`: the provider's own API, with the provider's own key, found by
   litellm as it always does.
3. An `--api-base` on a provider's own host (api.openai.com, api.anthropic.com, an
   Azure OpenAI resource, ...): that provider's variable.
4. Any other `--api-base` (a self-hosted server, a proxy, a gateway), or servers of
   which any one is another's: the self-hosted provider's own variable
   (HOSTED_VLLM_API_KEY for hosted_vllm/), or no key at all.
   OPENAI_API_KEY, ANTHROPIC_API_KEY and the other providers' keys never go there.

With an `--api-base` the client always hands litellm an explicit key (NO_KEY where
none), so litellm never fills one in from the environment. Keys are read from the
environment when a client is built and live in memory only; a run stores the name of
the variable, never its value.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dvsynth.secrets import is_random, looks_secret

# Sent where litellm would otherwise fill in a key by itself; not a secret.
NO_KEY = "no-key"
#: A provider's own hosts (a leading dot: any host under that domain) and the variables
#: that hold its key, the first one set winning.
PROVIDER_HOSTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("api.openai.com", ("OPENAI_API_KEY",)),
    ("api.anthropic.com", ("ANTHROPIC_API_KEY",)),
    (".openai.azure.com", ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY")),
    (".cognitiveservices.azure.com", ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY")),
    ("api.groq.com", ("GROQ_API_KEY",)),
    ("api.mistral.ai", ("MISTRAL_API_KEY",)),
    ("api.deepseek.com", ("DEEPSEEK_API_KEY",)),
    ("api.x.ai", ("XAI_API_KEY",)),
    ("openrouter.ai", ("OPENROUTER_API_KEY",)),
    ("generativelanguage.googleapis.com", ("GEMINI_API_KEY",)),
)
#: Self-hosted providers: their own variable is meant for the server --api-base names.
OWN_KEY_ENV = {
    "hosted_vllm": "HOSTED_VLLM_API_KEY",
    "openai_like": "OPENAI_LIKE_API_KEY",
    "litellm_proxy": "LITELLM_PROXY_API_KEY",
}
#: An environment variable's name: what --api-key-env takes.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def not_a_variable_name(name: str) -> bool:
    """Whether `name`, given where a variable's NAME belongs, is no name at all and may
    be the key itself (then it must never be echoed or stored)."""
    return not ENV_NAME.match(name) or looks_secret(name) or is_random(name)


@dataclass(frozen=True)
class KeyChoice:
    """Where one client's key comes from.

    `variable`: the environment variable whose value is sent (None: no key of ours).
    `litellm_decides`: no --api-base and no --api-key-env: litellm picks the provider's
    own key for the provider's own API, as usual.
    """

    variable: str | None
    litellm_decides: bool = False

    def value(self) -> str | None:
        return (os.environ.get(self.variable) or None) if self.variable else None

    def litellm_kwargs(self) -> dict[str, Any]:
        """The `api_key` argument for litellm: always explicit, unless litellm decides."""
        return {} if self.litellm_decides else {"api_key": self.value() or NO_KEY}


def choose_key(
    model: str, api_base: str | None, api_key_env: str | None, more_bases: Sequence[str] = ()
) -> KeyChoice:
    """The key for `model` at `api_base` (and `more_bases`, the other servers the same
    key goes to); `api_key_env` (a variable's name) wins."""
    if api_key_env:
        return KeyChoice(api_key_env)
    if not api_base:
        return KeyChoice(None, litellm_decides=True)
    owners = host_variables(api_base)
    if owners and all(host_variables(base) == owners for base in more_bases):
        return KeyChoice(next((v for v in owners if os.environ.get(v)), owners[0]))
    prefix = model.split("/", 1)[0] if "/" in model else ""
    return KeyChoice(OWN_KEY_ENV.get(prefix))


def host_of(api_base: str) -> str:
    """The host of `api_base`, lowercase, without a trailing dot ('' when it has none)."""
    try:
        return (urlsplit(api_base.strip()).hostname or "").rstrip(".")
    except ValueError:
        return ""


def has_userinfo(api_base: str) -> bool:
    """Whether `api_base` carries user:password@ (or TOKEN@) before its host."""
    try:
        return "@" in urlsplit(api_base.strip()).netloc
    except ValueError:
        return "@" in api_base


def host_variables(api_base: str) -> tuple[str, ...]:
    """The variables of the provider whose own host `api_base` is on (empty: nobody's)."""
    host = host_of(api_base)
    for pattern, variables in PROVIDER_HOSTS:
        if host == pattern or (pattern.startswith(".") and host.endswith(pattern)):
            return variables
    return ()


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plain_http_warning(api_base: str | None, what: str) -> str | None:
    """A warning when `what` (a key) would go over plain http:// to another machine."""
    if not api_base:
        return None
    parts = urlsplit(api_base)
    host = parts.hostname or ""
    if parts.scheme.lower() != "http" or is_loopback(host):
        return None
    return (
        f"{what} goes to {host} over plain http://, readable on the network; "
        "use https:// or a loopback address (an SSH tunnel)"
    )
