"""Keys go only where they belong: each server sees its own key and no other.

Two fake servers stand for a self-hosted generator and a self-hosted judge; each records
the Authorization header of every request. OPENAI_API_KEY is set to a third value that
must reach neither, and no key value may land in any file of the run directory.
"""

from __future__ import annotations

import json

import pytest

from dvsynth.errors import UserError
from dvsynth.llm.client import LLMClient
from dvsynth.llm.keys import NO_KEY, plain_http_warning
from dvsynth.testing import FakeLLMServer
from tests.conftest import generate_args, write_jsonl

GEN_KEY = "gen-secret-value-1111"
JUDGE_KEY = "judge-secret-value-2222"
OPENAI_KEY = "sk-openai-secret-value-3333"
TRANSPORTS = ["litellm", "http"]


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("MY_GEN_KEY", GEN_KEY)
    monkeypatch.setenv("MY_JUDGE_KEY", JUDGE_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.delenv("HOSTED_VLLM_API_KEY", raising=False)


def _seeds(tmp_path):
    rows = [
        {"id": f"k{i}", "query": f"key query {i}", "positive": f"kwa{i} a", "negative": "kwb b"}
        for i in range(3)
    ]
    return write_jsonl(tmp_path / "seeds.jsonl", rows)


def _generate(seeds, out, server, transport, *extra, model="openai/gen"):
    return generate_args(
        server, seeds, out, "--transport", transport, "--max-retries", "0", *extra, model=model
    )


def assert_no_file_holds(folder, secrets):
    """No file under `folder` (there are some) holds any of `secrets`."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, (path, secret)


def _assert_no_key_in_files(run_dir):
    assert_no_file_holds(run_dir, (GEN_KEY, JUDGE_KEY, OPENAI_KEY))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_generator_and_judge_each_get_only_their_own_key(keys, run_cli, tmp_path, transport):
    seeds = _seeds(tmp_path)
    run = tmp_path / "run"
    with FakeLLMServer() as gen, FakeLLMServer() as judge:
        result = run_cli(
            *_generate(seeds, run, gen, transport, "--api-key-env", "MY_GEN_KEY"),
            "--validate",
            "--judge-model",
            "openai/judge",
            "--judge-api-base",
            judge.api_base,
            "--judge-api-key-env",
            "MY_JUDGE_KEY",
        )
        assert result.code == 0, result.err
        assert gen.total_requests == 3 and judge.total_requests >= 12  # 4 judgments a pair
        assert set(gen.authorizations) == {f"Bearer {GEN_KEY}"}
        assert set(judge.authorizations) == {f"Bearer {JUDGE_KEY}"}
    _assert_no_key_in_files(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["api_key_env"] == "MY_GEN_KEY"  # the name, never the value


def test_validate_sends_the_judge_key_named_by_its_option(keys, run_cli, tmp_path):
    seeds = _seeds(tmp_path)
    run = tmp_path / "run"
    with FakeLLMServer() as gen, FakeLLMServer() as judge:
        generated = run_cli(*_generate(seeds, run, gen, "http", "--api-key-env", "MY_GEN_KEY"))
        assert generated.code == 0, generated.err
        result = run_cli(
            "validate",
            str(run),
            "--judge-model",
            "openai/judge",
            "--judge-api-base",
            judge.api_base,
            "--judge-api-key-env",
            "MY_JUDGE_KEY",
            "--transport",
            "litellm",
            "--quiet",
        )
        assert result.code == 0, result.err
        assert set(judge.authorizations) == {f"Bearer {JUDGE_KEY}"}
    _assert_no_key_in_files(run)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_self_hosted_server_never_gets_openai_api_key(keys, run_cli, tmp_path, transport):
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as server:
        result = run_cli(*_generate(seeds, tmp_path / "run", server, transport))
        assert result.code == 0, result.err
        sent = set(server.authorizations)
    assert sent <= {None, f"Bearer {NO_KEY}"}  # no key, or litellm's harmless placeholder


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hosted_vllm_gets_its_own_variable(keys, monkeypatch, run_cli, tmp_path, transport):
    monkeypatch.setenv("HOSTED_VLLM_API_KEY", "vllm-secret-value-4444")
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as server:
        args = _generate(seeds, tmp_path / "run", server, transport, model="hosted_vllm/gen")
        result = run_cli(*args)
        assert result.code == 0, result.err
        assert set(server.authorizations) == {"Bearer vllm-secret-value-4444"}


def test_the_generator_judging_itself_keeps_its_server_and_key(keys, run_cli, tmp_path):
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as gen:
        args = _generate(seeds, tmp_path / "run", gen, "http", "--api-key-env", "MY_GEN_KEY")
        result = run_cli(*args, "--validate")
        assert result.code == 0, result.err
        assert gen.total_requests >= 3 + 12  # generate, then 4 judgments a pair
        assert set(gen.authorizations) == {f"Bearer {GEN_KEY}"}


def test_a_judge_of_its_own_does_not_inherit_the_generator_server(monkeypatch, run_cli, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as gen:
        args = _generate(seeds, tmp_path / "run", gen, "auto")
        result = run_cli(*args, "--validate", "--judge-model", "openai/judge")
        # Not sent to the generator's server: openai/judge means OpenAI, which needs a key,
        # and that is found before the generation is paid for (validators.run.preflight).
        assert gen.total_requests == 0
    assert result.code == 2
    assert "missing API key, set OPENAI_API_KEY" in result.err


def test_an_unset_key_variable_is_one_line_and_exit_2(monkeypatch, run_cli, tmp_path):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    seeds = _seeds(tmp_path)
    with FakeLLMServer() as server:
        args = _generate(seeds, tmp_path / "run", server, "http", "--api-key-env")
        result = run_cli(*args, "NOT_SET_ANYWHERE")
        assert server.total_requests == 0
    assert result.code == 2
    assert "--api-key-env NOT_SET_ANYWHERE" in result.err
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "api_base, warns",
    [
        ("http://10.1.2.3:8000/v1", True),
        ("http://gpu-box:8000/v1", True),
        ("https://gpu-box/v1", False),
        ("http://127.0.0.1:8000/v1", False),
        ("http://localhost:8000/v1", False),
        ("http://[::1]:8000/v1", False),
    ],
)
def test_plain_http_to_another_machine_is_flagged(api_base, warns):
    assert (plain_http_warning(api_base, "the key") is not None) == warns


def test_a_key_over_plain_http_warns_on_stderr_without_the_key(keys, capsys):
    LLMClient("openai/gen", api_base="http://10.1.2.3:8000/v1", api_key_env="MY_GEN_KEY").check()
    err = capsys.readouterr().err
    assert "warning:" in err and "MY_GEN_KEY" in err and "10.1.2.3" in err
    assert GEN_KEY not in err
    notices: list[str] = []
    # No key of ours travels (OPENAI_API_KEY stays home): nothing to warn about.
    LLMClient("openai/gen", api_base="http://10.1.2.3:8000/v1", on_notice=notices.append).check()
    assert notices == []


def test_litellm_is_always_handed_the_key_where_a_server_is_named(keys, monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "gsk-groq-secret-value-8888")
    groq = LLMClient("groq/llama", api_base="http://127.0.0.1:9/v1", transport="litellm")
    assert groq.route.key == {"api_key": NO_KEY}  # litellm would send GROQ_API_KEY
    openai_own = LLMClient(
        "openai/gpt-4o-mini", api_base="https://api.openai.com/v1", transport="litellm"
    )
    assert openai_own.route.key == {"api_key": OPENAI_KEY}
    assert LLMClient("openai/gpt-4o-mini").route.key == {}  # litellm as usual


# ---------------------------------------------------------------- every model string

#: A provider key per variable; none may reach a server that is not its provider's own.
HOSTED_KEYS = {
    "OPENAI_API_KEY": OPENAI_KEY,
    "ANTHROPIC_API_KEY": "sk-ant-anthropic-secret-5555",
    "AZURE_API_KEY": "azure-secret-value-6666",
    "AZURE_OPENAI_API_KEY": "azure-openai-secret-7777",
    "GROQ_API_KEY": "gsk-groq-secret-value-8888",
    "MISTRAL_API_KEY": "mistral-secret-value-9999",
    "TEXT_COMPLETION_OPENAI_API_KEY": "tco-secret-value-0000",
}


class RecordingServer(FakeLLMServer):
    """The fake, answering chat completions as usual, that keeps every header of every
    request on any path (azure/, anthropic/, text-completion-openai/ call paths of their
    own, which the fake answers with 404 after recording them)."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[dict[str, str]] = []
        from aiohttp import web

        async def anything(request):
            self.headers.append(dict(request.headers))
            return web.json_response({"error": {"message": "no such path"}}, status=404)

        self.extra_routes.append([web.route("*", "/{tail:.*}", anything)])

    async def _chat(self, request):
        self.headers.append(dict(request.headers))
        return await super()._chat(request)

    def values(self) -> set[str]:
        return {value for headers in self.headers for value in headers.values()}


@pytest.fixture
def hosted_keys(keys, monkeypatch):
    for name, value in HOSTED_KEYS.items():
        monkeypatch.setenv(name, value)


def _leaked(server: RecordingServer) -> list[str]:
    sent = " ".join(server.values())
    return [name for name, value in HOSTED_KEYS.items() if value in sent]


MODEL_STRINGS = [
    "gpt-4o-mini",
    "openai/gen",
    "azure/gen",
    "text-completion-openai/gen",
    "hosted_vllm/gen",
    "anthropic/claude-x",
    "groq/llama",
    "mistral/small",
    "openai//gen",
    "OpenAI/gen",
    "custom_openai/gen",
]


async def _one_call(client: LLMClient) -> None:
    try:
        await client.complete([{"role": "user", "content": "Query: key probe"}])
    except Exception:
        pass  # a provider whose call path the fake does not answer: its headers count
    finally:
        await client.aclose()


@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize("transport", ["auto", "litellm"])
@pytest.mark.parametrize("model", MODEL_STRINGS)
def test_no_provider_key_reaches_a_server_not_its_own(hosted_keys, model, transport, slash):
    """Whatever the model string, a key goes to a custom --api-base only when named
    (--api-key-env) or when it is the self-hosted provider's own variable."""
    import asyncio

    with RecordingServer() as server:
        client = LLMClient(model, api_base=server.api_base + slash, transport=transport)
        asyncio.run(_one_call(client))
        assert _leaked(server) == [], f"{model} at {server.api_base + slash}"
        if model == "OpenAI/gen":  # no provider litellm knows: refused before any row
            with pytest.raises(UserError, match="names no known provider"):
                client.check()
        else:
            assert server.headers  # the call went out, without a key that is not its own
        assert client.key_choice.variable in (None, "HOSTED_VLLM_API_KEY")  # unset here
        if client.route.kind == "litellm":  # litellm is never left to fill a key in
            assert client.route.key == {"api_key": NO_KEY}


def test_a_named_variable_is_what_a_custom_server_gets_for_any_model(hosted_keys):
    import asyncio

    for model in ("gpt-4o-mini", "anthropic/claude-x", "azure/gen", "openai/gen"):
        with RecordingServer() as server:
            client = LLMClient(
                model, api_base=server.api_base, transport="litellm", api_key_env="MY_GEN_KEY"
            )
            asyncio.run(_one_call(client))
            assert server.headers, model
            assert _leaked(server) == [], model
            assert any(GEN_KEY in value for value in server.values()), model


def test_bare_model_names_never_send_openai_api_key_generate_and_judge(keys, run_cli, tmp_path):
    """The issue's reproduction: `--model gpt-4o-mini --api-base URL` (and the judge's
    options) sent `Bearer $OPENAI_API_KEY` to the server."""
    seeds = _seeds(tmp_path)
    run = tmp_path / "run"
    with FakeLLMServer() as gen, FakeLLMServer() as judge:
        args = _generate(seeds, run, gen, "auto", model="gpt-4o-mini")
        result = run_cli(
            *args, "--validate", "--judge-model", "gpt-4o-mini", "--judge-api-base", judge.api_base
        )
        assert result.code == 0, result.err
        assert gen.total_requests == 3 and judge.total_requests >= 12
        for server in (gen, judge):
            assert set(server.authorizations) <= {None, f"Bearer {NO_KEY}"}
    _assert_no_key_in_files(run)


def test_without_an_api_base_the_provider_key_is_litellms_choice(hosted_keys):
    """No --api-base: the call goes to the provider's own API, with the provider's key."""
    client = LLMClient("anthropic/claude-x")
    assert client.key_choice.litellm_decides
    assert LLMClient("openai/gen", api_key_env="MY_GEN_KEY").api_key == GEN_KEY


@pytest.mark.parametrize(
    "model, api_base, variable",
    [
        ("gpt-4o-mini", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        ("openai/gpt-4o-mini", "https://API.OpenAI.com/v1/", "OPENAI_API_KEY"),
        ("anthropic/claude-x", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
        ("azure/gen", "https://my-res.openai.azure.com", "AZURE_API_KEY"),
        ("hosted_vllm/gen", "http://127.0.0.1:9/v1", "HOSTED_VLLM_API_KEY"),
        ("openai/gen", "https://api.openai.com.evil.example/v1", None),
        ("openai/gen", "https://evil.example/api.openai.com/v1", None),
        ("anthropic/claude-x", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        ("openai/gen", "http://127.0.0.1:9/v1", None),
    ],
)
def test_the_destination_host_decides_whose_key_it_gets(keys, model, api_base, variable):
    from dvsynth.llm.keys import choose_key

    assert choose_key(model, api_base, None).variable == variable


@pytest.mark.parametrize("named", [False, True])
def test_a_batch_api_at_a_custom_base_gets_only_a_named_key(monkeypatch, run_cli, tmp_path, named):
    """Anthropic's batches behind a custom --api-base: ANTHROPIC_API_KEY goes there only
    when --api-key-env names it (the batch provider once filled it in by itself)."""
    from dvsynth.fakes.anthropic_batches import FakeAnthropicBatches

    secret = "sk-ant-test-NOT-FOR-A-PROXY-1234"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    server = FakeLLMServer()
    fake = FakeAnthropicBatches(server, polls_to_complete=1)
    with server:
        args = _generate(_seeds(tmp_path), tmp_path / "run", server, "auto", "--batch", "--wait")
        args[args.index("openai/gen")] = "anthropic/claude-haiku-4-5"
        named_key = ["--api-key-env", "ANTHROPIC_API_KEY"] if named else []
        result = run_cli(*args, "--poll-interval", "0.01", *named_key)
        assert result.code == 0, result.err
    assert fake.api_keys
    assert (secret in fake.api_keys) == named


def test_a_provider_key_goes_to_its_host_only_when_every_server_is_its_own(keys):
    """Calls spread over several --api-base servers share one key: OPENAI_API_KEY only
    when all of them are OpenAI's."""
    mixed = LLMClient(
        "openai/gen",
        api_base="https://api.openai.com/v1",
        extra_api_bases=["http://127.0.0.1:9/v1"],
    )
    assert mixed.key_choice.variable is None and mixed.api_key is None
    own = LLMClient(
        "openai/gen",
        api_base="https://api.openai.com/v1",
        extra_api_bases=["https://api.openai.com/v1/"],
    )
    assert own.api_key == OPENAI_KEY


def test_a_provider_host_without_its_key_is_one_line(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client = LLMClient("gpt-4o-mini", api_base="https://api.openai.com/v1")
    with pytest.raises(UserError, match="--model gpt-4o-mini: missing API key for api.openai.com"):
        client.check()


@pytest.mark.parametrize("transport", ["http", "litellm"])
def test_url_credentials_with_a_key_header_are_refused_before_any_call(keys, transport):
    base = "http://user:hunter2pass@127.0.0.1:9/v1"
    named = LLMClient("openai/gen", api_base=base, api_key_env="MY_GEN_KEY", transport=transport)
    with pytest.raises(UserError, match="cannot travel with an API key header") as refused:
        named.check()
    assert "hunter2pass" not in str(refused.value)
