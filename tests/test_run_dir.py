"""The run directory's manifest rules and the prompt templates' identity."""

from __future__ import annotations

import pytest

from dvsynth.config import GenerateConfig
from dvsynth.errors import UserError
from dvsynth.generate.run import prepare_run
from dvsynth.prompts import load_template
from dvsynth.runs.store import RunStore
from tests.conftest import FIXTURES


def test_identity_ignores_speed_settings_but_not_data_settings():
    base = GenerateConfig(seeds=str(FIXTURES / "triples.jsonl"), model="openai/x")
    same = base.model_copy(update={"concurrency": 99, "limit": 5, "timeout": 3.0})
    other = base.model_copy(update={"max_tokens": 99})
    assert (
        prepare_run(base).manifest["identity_sha256"]
        == prepare_run(same).manifest["identity_sha256"]
    )
    assert (
        prepare_run(base).manifest["identity_sha256"]
        != prepare_run(other).manifest["identity_sha256"]
    )
    assert prepare_run(base).run_dir == prepare_run(same).run_dir


def test_store_refuses_foreign_or_nonempty_folders(tmp_path):
    manifest = prepare_run(GenerateConfig(seeds=str(FIXTURES / "triples.jsonl"))).manifest
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="folder is not empty"):
        RunStore.open(tmp_path / "busy", manifest)
    store = RunStore.open(tmp_path / "run", manifest)
    store.close()
    changed = {
        **manifest,
        "identity": {**manifest["identity"], "model": "x/y"},
        "identity_sha256": "0" * 64,
    }
    with pytest.raises(UserError, match="model: 'local/smollm2' -> 'x/y'"):
        RunStore.open(tmp_path / "run", changed)
    with pytest.raises(UserError, match="not a dvsynth run directory"):
        RunStore.open_existing(tmp_path / "busy")


def test_store_uses_wal_and_keeps_cached_responses(tmp_path):
    manifest = prepare_run(GenerateConfig()).manifest
    store = RunStore.open(tmp_path / "run", manifest)
    store.put_response("k", {"text": "hi"})
    store.close()
    reopened = RunStore.open(tmp_path / "run", manifest)
    assert reopened.get_response("k") == {"text": "hi"}
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_bundled_templates_render_every_field_and_hash_their_source():
    from dvsynth.records import Doc

    for name in ("reverse.v1", "bootstrap.v1"):
        template = load_template(name)
        assert len(template.sha256) == 64
        [message] = template.render(
            query="QQ",
            instruction="II",
            positive=Doc(doc_id="1", title="PT", text="PX"),
            negative=Doc(doc_id="2", text="NX"),
            other_negatives=[Doc(doc_id="3", text="OX")],
        )
        assert message["role"] == "user"
        for needle in ("<query>QQ</query>", "PT. PX", "NX", 'id="O1">OX'):
            assert needle in message["content"], (name, needle)
        assert ("<instruction>II</instruction>" in message["content"]) == (name == "reverse.v1")
