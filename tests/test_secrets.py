"""The one secret detector (`dvsynth.secrets`): the key formats of the major providers,
credentials in URLs, and values that only look alike, which must stay as they are.

Three sets: hand-written examples (tuned against), a seeded random generator of key
shapes and look-alikes (a property-style test: every generated key is found and fully
hidden, no look-alike is touched), and held-out examples in
fixtures/secret_holdout.json (base64, so that secret scanners leave the made-up keys
alone), written before the detector and never tuned against.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from pathlib import Path

import pytest

from dvsynth.secrets import MASK, find_secrets, looks_secret, redact, safe_url

HOLDOUT = Path(__file__).parent / "fixtures" / "secret_holdout.json"

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"


def _rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


# ---------------------------------------------------------------- hand-written examples

KEYS = {
    "openai": "sk-AbC123dEf456GhI789jKl012MnO345pQr678StU901vWx",
    "openai project": "sk-proj-Zx9_Qw8-Er7Ty6Ui5Op4As3Df2Gh1Jk0LzXcVbNm_1a2B3c4D5e6F7g8H9",
    "openai service account": "sk-svcacct-8fK2pLq9XzR4mN7vB1cT6yH3jW5sD0aE",
    "anthropic": "sk-ant-api03-Qm3xLp9Rz2Kw7Nv4Bt8Hy1Jc6Fd0Gs5Ae-X_y8Zq2Wr4Ts6Uv8Ab0Cd2Ef4AA",
    "deepseek hex": "sk-3f9a2c41b7e84d0c9a6f1e2d3c4b5a69",
    "openrouter": "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab",
    "hugging face": "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
    "google": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "aws access key": "AKIA" + "IOSFODNN7Q2XJ4ZB",
    "github classic": "ghp_" + "1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R",
    "github fine-grained": "github_pat_"
    + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"
    + "0123456789ABCDEFGHIJKLMNOPQRSTU",
    "groq": "gsk_" + "a1B2c3D4e5F6g7H8i9J0" * 2 + "k1L2m3N4o5P6",
    "xai": "xai-" + "Zq9Xw8Ec7Rv6Tb5Yn4Um3Ik2Ol1Pa0" * 3,
    "together v1": "tgp_v1_4bZ8yQ2pLx7Wm3Nk9Rt5Hs1Jd6Fg0Cv_aE8uI2oP",
    "slack": "xox" + "b-123456789012-123456789012-AbCdEfGhIjKlMnOpQrStUvWx",
    "stripe": "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "replicate": "r8_Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
}

IN_CONTEXT = [
    "# DEEPSEEK_API_KEY=sk-3f9a2c41b7e84d0c9a6f1e2d3c4b5a6f",
    "MISTRAL_API_KEY=Xq7Lp2Zr9Kw4Nv8Bt1Hy6Jc3Fd5Gs0Ae",
    'COHERE_API_KEY: "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90"',
    "TOGETHER_API_KEY=" + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    '{"api_key": "q8W7e6R5t4Y3u2I1o0P9a8S7d6F5g4H3"}',
    "x-api-key: 0123456789abcdef0123456789abcdef",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
    "Authorization: Bearer abc123def456ghi789",
    "HTTP 401: invalid token Bearer gen-secret-value-1111",
    "password: hunter2pass",
    "https://user:hunter2pass@host.example/v1",
    "https://ghp_" + "1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R@github.com/org/repo.git",
    "https://Zx9Qw8Er7Ty6Ui5Op4As3Df2@gateway.example/v1",
    "http://host/v1?api-key=0123456789abcdef0123456789abcdef",
    "https://host/v1/chat?model=x&token=Qw8Er7Ty6Ui5Op4",
    "https://acct.blob.core.windows.net/f?sv=2023-01-03&sig=AbCd%2BEfGh%3D1234",
    "https://h/x?X-Amz-Signature=5d41402abc4b2a76b9719d911017c592",
]

LOOK_ALIKES = [
    "pip install sk-learn",
    "sk-learn-pipeline-compat-v2",
    "from hf_hub import snapshot_download",
    "hf_hub_download hf_transfer hf_datasets_cache",
    "a task-specific instruction for the retriever",
    "model: openai/gpt-4o-mini",
    "anthropic/claude-3-5-haiku-20241022",
    "hosted_vllm/Qwen2.5-7B-Instruct-AWQ",
    "meta-llama/Meta-Llama-3.1-8B-Instruct",
    "api_key_env: OPENAI_API_KEY",
    "judge_api_key_env: MY_JUDGE_KEY",
    "hf_token_env: HF_TOKEN",
    "max_tokens: 1024",
    "judge_max_tokens: 16",
    "token: null",
    "api_key: ''",
    "the bearer of the bond, a basic GPT4-turbo run, a token budget of 4096",
    "Tokenizers parallelism is disabled",
    "The key finding: keys and tokens are never stored, and passwords stay home.",
    "password reset instructions",
    "prompt_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    '"identity_sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"',
    "pair_id 123e4567-e89b-42d3-a456-426614174000",
    "seed-00042:a dedup:near:p-000123 judge:view_b:doc_a_relevant rule:leakage",
    "runs/msmarco-smollm2-3f9a2c41/dvsynth.sqlite",
    "https://huggingface.co/datasets/org/name?row=3&split=train",
    "http://127.0.0.1:8000/v1",
    "ssh://git@github.com/org/repo.git",
    "Bearer ***",
    "https://user:***@host/v1",
    "http://host/v1?api-key=***",
    "AKIA is the prefix of an AWS key id",
]


@pytest.mark.parametrize("name", sorted(KEYS))
def test_every_provider_key_format_is_found_and_hidden(name):
    key = KEYS[name]
    for text in (key, f"error: key {key} rejected", f"KEY={key}", f'"{key}"'):
        assert looks_secret(text), (name, text)
        assert key not in redact(text), (name, text)


@pytest.mark.parametrize("text", IN_CONTEXT)
def test_secrets_without_a_prefix_are_found_by_their_name_or_place(text):
    assert looks_secret(text)
    hidden = redact(text)
    assert MASK in hidden and not looks_secret(hidden)


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_not_secrets(text):
    assert find_secrets(text) == []
    assert redact(text) == text


def test_redaction_keeps_the_name_that_says_what_was_hidden():
    assert redact("MISTRAL_API_KEY=Xq7Lp2Zr9Kw4Nv8Bt1Hy6Jc3Fd5Gs0Ae") == "MISTRAL_API_KEY=***"
    assert redact("https://user:hunter2pass@host/v1") == "https://user:***@host/v1"
    assert redact("http://h/v1?key=AbCdEf0123456789&x=1") == "http://h/v1?key=***&x=1"


# ---------------------------------------------------------------- URLs as stored


@pytest.mark.parametrize(
    "url, stored",
    [
        ("http://user:hunter2pass@host/v1", "http://host/v1"),
        ("https://TOKEN@host:8443/v1/", "https://host:8443/v1/"),
        ("http://host/v1?api-key=0a1b2c3d4e5f&x=1", "http://host/v1?x=1"),
        ("https://h/o?key=k&token=t&sig=s&Signature=s&x-amz-signature=s", "https://h/o"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        (
            "https://h/v1?deployment=a%2Fb&api-version=2024-02-01",
            "https://h/v1?deployment=a%2Fb&api-version=2024-02-01",
        ),
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
        ("http://u:p@[::1:8000/v1", "http://[::1:8000/v1"),  # not a URL urllib reads
    ],
)
def test_a_stored_url_has_no_credentials(url, stored):
    assert safe_url(url) == stored


# ---------------------------------------------------------------- property-style


def _key_shapes(rng: random.Random) -> list[str]:
    """One random key of each provider's shape."""
    return [
        "sk-" + _rand(rng, 48),
        "sk-proj-"
        + _rand(rng, rng.randint(60, 160), URLSAFE)
        + _rand(rng, 4, string.digits)
        + "Ab",
        "sk-ant-api03-" + _rand(rng, 93, URLSAFE) + "AA",
        "sk-" + _rand(rng, 32, HEX),
        "hf_" + _rand(rng, 34, string.ascii_letters),
        "AIza" + _rand(rng, 35, URLSAFE),
        "AKIA" + _rand(rng, 16, string.ascii_uppercase + string.digits),
        "ghp_" + _rand(rng, 36),
        "github_pat_" + _rand(rng, 22) + "_" + _rand(rng, 59),
        "gsk_" + _rand(rng, 52),
        "xai-" + _rand(rng, 80),
        "tgp_v1_" + _rand(rng, 43, URLSAFE),
        "r8_" + _rand(rng, 37),
        "pplx-" + _rand(rng, 48),
        "xoxp-" + _rand(rng, 12, string.digits) + "-" + _rand(rng, 24),
        "eyJ"
        + _rand(rng, 20, URLSAFE)
        + ".eyJ"
        + _rand(rng, 40, URLSAFE)
        + "."
        + _rand(rng, 43, URLSAFE),
    ]


def _is_shaped(key: str) -> bool:
    """Drop the rare random body that has no digit and a single case (not random)."""
    body = key.split("_", 1)[-1] if key.startswith(("hf_", "gsk_", "r8_")) else key
    return any(c.isdigit() for c in body) or (
        any(c.isupper() for c in body) and any(c.islower() for c in body)
    )


def _named_keys(rng: random.Random) -> list[str]:
    """Keys without a prefix, after the name that holds them."""
    name = rng.choice(
        [
            "MISTRAL_API_KEY",
            "COHERE_API_KEY",
            "TOGETHER_API_KEY",
            "AZURE_API_KEY",
            "api_key",
            "x-api-key",
            "client_secret",
            "access_token",
            "SECRET_KEY",
        ]
    )
    value = rng.choice([_rand(rng, 32), _rand(rng, 40), _rand(rng, 64, HEX), _rand(rng, 32, HEX)])
    sep = rng.choice(["=", ": ", " = ", '": "'])
    return [f"{name}{sep}{value}"]


def _url_secrets(rng: random.Random) -> list[tuple[str, str]]:
    """(text, the secret in it) for credentials in URLs."""
    host = rng.choice(["gpu-box:8000", "10.0.0.7", "llm.example.org", "myres.openai.azure.com"])
    password = _rand(rng, rng.randint(8, 24))
    token = _rand(rng, 40)
    query = rng.choice(["api-key", "key", "token", "access_token", "sig", "apikey"])
    value = _rand(rng, rng.randint(12, 40), ALNUM + "%")
    return [
        (f"http://{_rand(rng, 6, string.ascii_lowercase)}:{password}@{host}/v1", password),
        (f"https://{token}@{host}/v1", token),
        (f"https://{host}/v1?{query}={value}&model=m", value),
    ]


WORDS = (
    "the key finding token budget bearer secret santa password reset instructions retrieval "
    "query document relevant negative positive instruction model judge seed pair run export"
).split()


def _look_alikes(rng: random.Random) -> list[str]:
    word = lambda: rng.choice(WORDS)  # noqa: E731
    digest = hashlib.sha256(_rand(rng, 12).encode()).hexdigest()
    return [
        f"sk-{word()}",
        f"sk-{word()}-{word()}-{word()}-v{rng.randint(1, 9)}",
        f"hf_{word()}_{word()}",
        f"{word()}-specific {word()} {word()}",
        f"prompt_sha256: {digest}",
        f'"{word()}_sha256": "{digest}"',
        f"{digest}",
        str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        f"pair_id: {uuid.UUID(int=rng.getrandbits(128), version=4)}",
        f"seed-{rng.randint(0, 99999):05d}:{rng.choice('ab')}",
        f"openai/{word()}-{rng.randint(1, 9)}o-mini",
        f"{word().upper()}_API_KEY",
        f"api_key_env: {word().upper()}_API_KEY",
        f"max_tokens: {rng.randint(16, 8192)}",
        " ".join(word() for _ in range(12)),
        f"http://127.0.0.1:{rng.randint(1024, 65535)}/v1",
        f"https://huggingface.co/datasets/{word()}/{word()}?row={rng.randint(0, 99)}",
    ]


CONTEXTS = ["{}", "key {} rejected", "export X={}", '"{}"', "(got {})", "Bearer {}"]


def test_property_generated_keys_are_found_and_look_alikes_are_left_alone():
    rng = random.Random(25)
    for _ in range(300):
        for key in (k for k in _key_shapes(rng) if _is_shaped(k)):
            text = rng.choice(CONTEXTS).format(key)
            assert looks_secret(text), text
            assert key not in redact(text), text
        for text in _named_keys(rng):
            assert looks_secret(text), text
        for text, secret in _url_secrets(rng):
            assert secret not in redact(text), text
            assert secret not in safe_url(text), text
        for text in _look_alikes(rng):
            assert find_secrets(text) == [], text


# ---------------------------------------------------------------- held out


def holdout_scores() -> tuple[float, float, int, int]:
    """(recall on the held-out secrets, false-positive rate on the held-out look-alikes,
    how many of each)."""
    data = {
        kind: [base64.b64decode(text).decode("utf-8") for text in texts]
        for kind, texts in json.loads(HOLDOUT.read_text(encoding="utf-8")).items()
        if kind != "encoding"
    }
    found = sum(looks_secret(text) for text in data["secret"])
    false = sum(looks_secret(text) for text in data["not_secret"])
    return (
        found / len(data["secret"]),
        false / len(data["not_secret"]),
        len(data["secret"]),
        len(data["not_secret"]),
    )


def test_held_out_examples_score_as_reported():
    recall, false_positives, _, _ = holdout_scores()
    assert recall >= 0.9
    assert false_positives <= 0.05


def test_a_config_is_stored_with_every_string_sanitised():
    from dvsynth.secrets import redact_values

    config = {
        "api_base": "http://user:hunter2pass@host/v1",
        "extra_api_bases": ["https://Zx9Qw8Er7Ty6Ui5Op4As3Df2@h2/v1"],
        "engine_args": {"hf_token": "Ab12Cd34Ef56Gh78Ij90Kl12", "dtype": "bfloat16"},
        "api_key_env": "MY_KEY",
        "seeds": "/data/seeds.jsonl",
        "temperature": 0.0,
        "mapping": {"query": "question"},
    }
    stored = redact_values(config)
    assert stored["api_base"] == "http://host/v1"
    assert stored["extra_api_bases"] == ["https://h2/v1"]
    assert stored["engine_args"] == {"hf_token": MASK, "dtype": "bfloat16"}
    assert {k: stored[k] for k in ("api_key_env", "seeds", "temperature", "mapping")} == {
        k: config[k] for k in ("api_key_env", "seeds", "temperature", "mapping")
    }


def test_a_run_manifest_holds_no_secret_from_any_option(monkeypatch):
    """Not only the URLs: an engine argument with a token (a Ray/vLLM run's Hub token)
    is recorded in the manifest's config too."""
    from dvsynth.config import GenerateConfig
    from dvsynth.generate.run import prepare_run

    token = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh"
    config = GenerateConfig(
        engine="ray",
        engine_args={"hf_token": token, "download_dir": "/models"},
        api_base="http://u:hunter2pass@h/v1",
    )
    text = json.dumps(prepare_run(config).manifest)
    assert token not in text and "hunter2pass" not in text
    assert '"download_dir": "/models"' in text
