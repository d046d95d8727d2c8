"""Which API key goes to which server, and a warning when one would travel in clear.

A key belongs to its provider. OPENAI_API_KEY goes to OpenAI's own API and nowhere
else: a self-hosted `--api-base` gets the key named by `--api-key-env`, or the
provider's own variable (HOSTED_VLLM_API_KEY for hosted_vllm/), or none at all. Without
`--api-base` litellm finds the provider's key as it always does. Keys are read from the
environment when a client is built and live in memory only; a run stores the name of
the variable, never its value.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

# Sent where litellm would otherwise fill in OPENAI_API_KEY by itself; not a secret.
NO_KEY = "no-key"
OPENAI_HOSTS = ("api.openai.com",)
# litellm providers whose missing key litellm replaces with OPENAI_API_KEY.
OPENAI_PROVIDERS = ("openai", "text-completion-openai", "custom_openai")
OWN_KEY_ENV = {"hosted_vllm": "HOSTED_VLLM_API_KEY", "openai_like": "OPENAI_LIKE_API_KEY"}


@dataclass(frozen=True)
class KeyChoice:
    """Where one client's key comes from.

    `variable`: the environment variable whose value is sent (None: no key of ours).
    `litellm_decides`: litellm picks the provider's key as usual (no --api-base, or a
    provider such as anthropic/ behind a proxy, which reads only its own variable).
    """

    variable: str | None
    litellm_decides: bool = False

    def value(self) -> str | None:
        return (os.environ.get(self.variable) or None) if self.variable else None


def choose_key(model: str, api_base: str | None, api_key_env: str | None) -> KeyChoice:
    """The key for `model` at `api_base`; `api_key_env` (a variable's name) wins."""
    if api_key_env:
        return KeyChoice(api_key_env)
    if not api_base:
        return KeyChoice(None, litellm_decides=True)
    provider = model.split("/", 1)[0]
    if provider in OWN_KEY_ENV:
        return KeyChoice(OWN_KEY_ENV[provider])
    if provider in OPENAI_PROVIDERS:
        return KeyChoice("OPENAI_API_KEY" if is_openai_host(api_base) else None)
    return KeyChoice(None, litellm_decides=True)


def is_openai_host(api_base: str) -> bool:
    return (urlsplit(api_base).hostname or "").lower() in OPENAI_HOSTS


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
