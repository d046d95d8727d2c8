"""Credentials in an --api-base URL are sent, never stored (issue 25): not in
manifest.json, the batch ledger, any other file of the run, or the recipe that
`recipe from-run` writes back from it. The key belongs in a variable."""

from __future__ import annotations

import json

import pytest
import yaml

from dvsynth.fakes.openai_batches import FakeOpenAIBatches
from dvsynth.testing import FakeLLMServer
from tests.conftest import write_jsonl
from tests.test_api_keys import assert_no_file_holds

PASSWORD = "hunter2pass"
QUERY_KEY = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
TOKEN = "Zx9Qw8Er7Ty6Ui5Op4As3Df2"


def _seeds(tmp_path):
    rows = [
        {"id": f"u{i}", "query": f"url query {i}", "positive": f"kwu{i} a", "negative": "kb b"}
        for i in range(3)
    ]
    return write_jsonl(tmp_path / "seeds.jsonl", rows)


def _with_credentials(api_base: str, how: str) -> str:
    scheme, rest = api_base.split("://", 1)
    if how == "userinfo":
        return f"{scheme}://user:{PASSWORD}@{rest}"
    if how == "token":
        return f"{scheme}://{TOKEN}@{rest}"
    return f"{api_base}?api-key={QUERY_KEY}"


def _files_hold_no_credentials(folder):
    assert_no_file_holds(folder, (PASSWORD, QUERY_KEY, TOKEN))


@pytest.mark.parametrize("how", ["userinfo", "token"])
def test_a_url_with_credentials_is_stored_without_them(run_cli, tmp_path, how):
    run = tmp_path / "run"
    with FakeLLMServer() as server:
        base = _with_credentials(server.api_base, how)
        args = ["generate", "--seeds", _seeds(tmp_path), "--model", "openai/fake"]
        result = run_cli(*args, "--api-base", base, "--out", run)
        assert result.code == 0, result.err
        assert server.total_requests == 3  # the credentials were sent
    _files_hold_no_credentials(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["api_base"] == server.api_base
    assert "never stored" in result.err  # and the user is told the key belongs elsewhere
    # The run's own record makes a recipe again (it once failed on its own output).
    back = tmp_path / "back.yaml"
    made = run_cli("recipe", "from-run", run, "-o", back)
    assert made.code == 0, made.err
    assert yaml.safe_load(back.read_text())["generate"]["api_base"] == server.api_base


def test_a_key_in_the_query_is_neither_stored_nor_printed(run_cli, tmp_path):
    run = tmp_path / "run"
    with FakeLLMServer() as server:
        base = _with_credentials(server.api_base, "query")
        args = ["generate", "--seeds", _seeds(tmp_path), "--model", "openai/fake"]
        # An OpenAI-compatible server takes no query in its base URL (the call fails
        # with HTTP 404); what matters here is what is written and printed.
        result = run_cli(*args, "--api-base", base, "--out", run, "--quiet")
    assert QUERY_KEY not in result.out + result.err
    _files_hold_no_credentials(run)
    assert json.loads((run / "manifest.json").read_text())["config"]["api_base"] == server.api_base


def test_the_batch_ledger_stores_the_url_without_credentials(run_cli, tmp_path):
    run = tmp_path / "run"
    server = FakeOpenAIBatches(FakeLLMServer(), polls_to_complete=1).server
    with server:
        base = _with_credentials(server.api_base, "userinfo")
        args = ["generate", "--seeds", _seeds(tmp_path), "--model", "openai/fake", "--batch"]
        result = run_cli(*args, "--api-base", base, "--out", run, "--quiet")
        assert result.code == 0, result.err
        status = run_cli("batch", "status", run)
        assert status.code == 0, status.err
    _files_hold_no_credentials(run)
    assert PASSWORD not in status.out + status.err
