"""The one secret detector: what counts as a key, a token or a password in any text
dvsynth writes, prints or publishes (recipes, manifests, ledgers, row reasons, terminal
lines, cards), and the one URL sanitiser for every URL it stores.

A secret is found by its shape, never by a guess at entropy alone:

- a provider's key prefix (OpenAI/DeepSeek/Anthropic `sk-`, Hugging Face `hf_`, Google
  `AIza`, AWS `AKIA`, GitHub `ghp_`/`github_pat_`, Groq `gsk_`, xAI `xai-`, Slack, Stripe,
  Replicate, Perplexity, GitLab, Together `tgp_v1_`, NVIDIA) followed by random text;
- a JSON Web Token, or a token after `Bearer` / `Authorization:`;
- a value after a name that says secret (`MISTRAL_API_KEY=...`, `"api_key": "..."`,
  `password: ...`), for keys without a prefix (Mistral, Cohere, Azure, Together's hex);
- credentials in a URL: its userinfo, or a query value named like a key (`?api-key=`,
  `?key=`, `?token=`, `?sig=`...).

"Random" means what a generated key is and a name is not: a run of 16 or more letters
and digits that mixes digits with letters or upper with lower case. So `sk-learn`,
`hf_hub_download`, `task-specific` and `api_key_env: OPENAI_API_KEY` are not secrets;
nor is a bare sha256 digest, a UUID or a pair id, which are only flagged after a name
that says key. `***` (what `redact` leaves) is never a secret.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

#: Not part of a token on either side (a lookaround, since `_` is a word character).
_L = r"(?<![A-Za-z0-9_-])"
_R = r"(?![A-Za-z0-9_-])"

#: Key prefixes whose body must look random (the prefix alone is a common word part).
_RANDOM_BODY = re.compile(
    _L + r"(?:sk-|hf_|gsk_|xai-|r8_|pplx-|fw_|nvapi-|tgp_v1_|glpat-)([A-Za-z0-9_-]{16,})" + _R
)
#: Key shapes distinctive enough on their own.
_FIXED_SHAPE = re.compile(
    _L
    + r"(?:AIza[0-9A-Za-z_-]{30,}"
    + r"|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"
    + r"|(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}"
    + r"|github_pat_[A-Za-z0-9_]{40,}"
    + r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    + r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
    + r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    + ")"
    + _R
)
#: A token after Bearer/Basic/Token (an Authorization header, in any message).
_AUTH_TOKEN = re.compile(
    r"(?i:\b(?P<word>bearer|basic|token)\s+|authorization\s*[:=]\s*)([A-Za-z0-9._~+/=-]{8,})"
)
_KEY_WORDS = r"api[_-]?key|apikey|x-api-key|subscription[_-]?key|access[_-]?key(?:[_-]?id)?"
_TOKEN_WORDS = r"(?:access|auth|refresh|session|id|api|bearer)[_-]?token|token"
_SECRET_WORDS = r"(?:client|aws|app|api)?[_-]?secret(?:[_-]?(?:access[_-]?)?key)?"
_PASSWORD_WORDS = r"passw(?:or)?d|passphrase"
#: `NAME = value` or `"NAME": "value"` where NAME says it holds a secret; an env-style
#: name (`MISTRAL_API_KEY`, `HF_TOKEN`, `SECRET_KEY`) counts whatever its prefix.
_ASSIGNED = re.compile(
    r"(?<![A-Za-z0-9])(?P<name>(?:[A-Za-z0-9]+[_.-])*?"
    + rf"(?i:{_KEY_WORDS}|{_TOKEN_WORDS}|{_SECRET_WORDS}|(?P<pw>{_PASSWORD_WORDS}))"
    + r"|[A-Z0-9_]*_KEY|(?<![A-Za-z0-9_.-])key)"
    + r"""["']?\s*[:=]\s*["']?(?P<value>[^\s"',;&#}\]]+)"""
)
#: Query parameters that carry a credential.
_QUERY_NAMES = re.compile(
    r"(?i)^(?:api[-_]?key|apikey|key|token|access[-_]?token|auth|auth[-_]?token"
    r"|sig|signature|secret|client[-_]?secret|password|x-amz-signature|x-amz-credential"
    r"|x-amz-security-token|x-goog-signature|x-goog-credential)$"
)
_QUERY_PAIR = re.compile(r"[?&;](?P<name>[A-Za-z0-9_.-]+)=(?P<value>[^&#\s\"'<>]*)")
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+")
_USERINFO = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://(?P<info>[^\s/?#@\"'<>]+)@")
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
#: An environment variable whose value is a secret, whatever its shape.
_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One secret in a text: `text[start:end]` is the value to hide; `kind` says why."""

    start: int
    end: int
    kind: str


def is_random(text: str) -> bool:
    """A run of 16+ letters and digits that mixes digits with letters, or upper with lower
    case: what a generated key has and a word, a path or a variable name has not."""
    return any(_mixes(run, digits=2) for run in re.findall(r"[A-Za-z0-9]{16,}", text))


def _mixes(text: str, digits: int) -> bool:
    """`digits` or more digits among letters, or two or more of each case."""
    found = sum(c.isdigit() for c in text)
    upper = sum(c.isupper() for c in text)
    lower = sum(c.islower() for c in text)
    return (found >= digits and upper + lower >= digits) or (upper >= 2 and lower >= 2)


def _random_body(body: str) -> bool:
    """A key's body after its prefix: random, or random pieces between `-` and `_` (a
    URL-safe key has them; `learn-pipeline-v2` has no piece that mixes)."""
    if is_random(body):
        return True
    pieces = [p for p in re.split(r"[-_]", body) if len(p) >= 6 and _mixes(p, digits=1)]
    return len(pieces) >= 2


def _assigned_value(value: str, password: bool) -> bool:
    """Whether `value`, after a secret's name, is a secret (not a variable's name, a
    placeholder, a number or the mask)."""
    if MASK in value or _ENV_NAME.match(value) or value.lower() in ("null", "none", "true"):
        return False
    if password:
        return len(value) >= 6 and not value.isdigit() and not value.startswith(("/", "~", "$"))
    return len(value) >= 16 and is_random(value)


def find_secrets(text: str) -> list[Finding]:
    """Every secret in `text`, as spans of the value alone (names and prefixes kept
    where they say what was hidden), sorted and without overlaps."""
    found: list[Finding] = []
    for match in _RANDOM_BODY.finditer(text):
        if _random_body(match.group(1)):
            found.append(Finding(match.start(), match.end(), "provider key"))
    for match in _FIXED_SHAPE.finditer(text):
        found.append(Finding(match.start(), match.end(), "provider key"))
    for match in _AUTH_TOKEN.finditer(text):
        token, word = match.group(2), (match.group("word") or "bearer").lower()
        if MASK not in token and (is_random(token) or (word == "bearer" and _mixed(token))):
            found.append(Finding(match.start(2), match.end(2), "bearer token"))
    for match in _ASSIGNED.finditer(text):
        if _assigned_value(match.group("value"), bool(match.group("pw"))):
            found.append(Finding(match.start("value"), match.end("value"), "named secret"))
    for url in _URL.finditer(text):
        found.extend(_url_findings(url.group(), url.start()))
    return _merge(found)


def _mixed(token: str) -> bool:
    """Digits and letters both: a short token (a test key, a password), not a word."""
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def _url_findings(url: str, offset: int) -> list[Finding]:
    found = []
    info = _USERINFO.match(url)
    if info is not None:
        user, colon, password = info.group("info").partition(":")
        start = offset + info.start("info")
        if colon and password and password != MASK:
            at = start + len(user) + 1
            found.append(Finding(at, at + len(password), "URL password"))
        elif not colon and user != MASK and (is_random(user) or _RANDOM_BODY.match(user)):
            found.append(Finding(start, start + len(user), "URL token"))
    for pair in _QUERY_PAIR.finditer(url):
        value = pair.group("value")
        if _QUERY_NAMES.match(pair.group("name")) and len(value) >= 8 and MASK not in value:
            found.append(
                Finding(offset + pair.start("value"), offset + pair.end("value"), "URL query")
            )
    return found


def _merge(found: list[Finding]) -> list[Finding]:
    merged: list[Finding] = []
    for item in sorted(found, key=lambda f: (f.start, -f.end)):
        if merged and item.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = Finding(last.start, max(last.end, item.end), last.kind)
        else:
            merged.append(item)
    return merged


def looks_secret(text: str) -> bool:
    """Whether `text` holds anything `find_secrets` finds."""
    return bool(find_secrets(text))


def redact(text: str, extra: tuple[str, ...] = ()) -> str:
    """`text` with every secret replaced by ***: the values of secret environment
    variables and of `extra` (a client's key, whatever its shape), then every secret
    `find_secrets` sees."""
    for name, value in os.environ.items():
        if value and len(value) >= 8 and _SECRET_ENV.search(name):
            text = text.replace(value, MASK)
    for value in extra:
        if value and len(value) >= 4:
            text = text.replace(value, MASK)
    for finding in reversed(find_secrets(text)):
        text = text[: finding.start] + MASK + text[finding.end :]
    return text


def safe_url(url: str) -> str:
    """`url` as dvsynth stores it: no userinfo (user:password@, TOKEN@), no query
    parameter named like a credential, and nothing else secret-shaped. What was taken
    out is not sent from a stored URL: the key belongs in an environment variable."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL urllib can read (a broken IPv6 host): mask what it can
        return redact(_USERINFO.sub(lambda m: m.group().replace(m.group("info") + "@", ""), url))
    netloc = parts.netloc.rpartition("@")[2]
    kept = [p for p in parts.query.split("&") if p and not _QUERY_NAMES.match(p.split("=")[0])]
    return redact(urlunsplit((parts.scheme, netloc, parts.path, "&".join(kept), parts.fragment)))


def url_has_credentials(url: str) -> bool:
    """Whether storing `url` drops something (`safe_url(url) != url`)."""
    return safe_url(url) != url


def redact_values(value: Any) -> Any:
    """A JSON-like value (a run's config, for its manifest) with every string as dvsynth
    stores it: a URL through `safe_url`, anything else through `redact`, and a string
    under a key that names a secret (`{"hf_token": ...}`) judged with that name."""
    if isinstance(value, dict):
        return {key: _redact_entry(str(key), item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(item) for item in value]
    if isinstance(value, str):
        return safe_url(value) if _URL.fullmatch(value) else redact(value)
    return value


def _redact_entry(key: str, value: Any) -> Any:
    if not isinstance(value, str) or _URL.fullmatch(value):
        return redact_values(value)
    named = redact(f"{key}={value}")
    if named.startswith(f"{key}=") and named != f"{key}={value}":
        return named[len(key) + 1 :]
    return redact_values(value)
