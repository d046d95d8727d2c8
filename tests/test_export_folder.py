"""`export --out` touches only what an export wrote: never a run, never a user's files,
through a symlink into its target, with the user's umask, and a dry push writes nothing."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from dvsynth.publish.folder import MARKER
from tests.conftest import generate_args, validate_args, write_jsonl


def _seeds(path: Path, n: int = 12) -> Path:
    return write_jsonl(
        path,
        [
            {
                "id": f"s{i:02d}",
                "query": f"folder query {i}",
                "positive": f"kwp{i} passage about topic {i}",
                "negative": f"kwn{i} other passage {i}",
            }
            for i in range(n)
        ],
    )


def _validated(run_cli, server, seeds: Path, run: Path) -> Path:
    assert run_cli(*generate_args(server, seeds, run)).code == 0
    assert run_cli(*validate_args(run, server, "--near-threshold", "99.5")).code == 0
    return run


def _export(run_cli, out: Path, *runs: Path, extra=()):
    return run_cli("export", *map(str, runs), "--out", str(out), "--license", "mit", *extra)


def _one_line(result, code: int = 2) -> str:
    assert result.code == code, (result.out, result.err)
    assert len(result.err.strip().splitlines()) == 1, result.err
    return result.err


@pytest.fixture
def run_r(run_cli, fake_server, tmp_path):
    return _validated(run_cli, fake_server, _seeds(tmp_path / "seeds.jsonl"), tmp_path / "R")


def test_export_refuses_an_out_that_holds_a_run_and_keeps_the_run(
    run_cli, fake_server, tmp_path, run_r
):
    ds = tmp_path / "ds"
    assert _export(run_cli, ds, run_r).code == 0
    inner = _validated(run_cli, fake_server, tmp_path / "seeds.jsonl", ds / "run")
    before = {p.name: p.stat().st_size for p in inner.iterdir()}
    err = _one_line(_export(run_cli, ds, inner))
    assert "--out" in err and str(inner) in err
    err = _one_line(_export(run_cli, ds, run_r))  # not exported, still a run inside --out
    assert "run directory" in err and str(inner) in err
    assert {p.name for p in inner.iterdir()} >= set(before)
    assert (inner / "dvsynth.sqlite").stat().st_size >= before["dvsynth.sqlite"]
    assert (ds / MARKER).is_file()  # the earlier export is untouched too


@pytest.mark.parametrize("where", ["itself", "above", "inside"])
def test_export_refuses_to_write_into_or_around_a_run_it_exports(run_cli, tmp_path, run_r, where):
    out = {"itself": run_r, "above": tmp_path, "inside": run_r / "dataset"}[where]
    err = _one_line(_export(run_cli, out, run_r))
    assert "--out" in err and str(run_r) in err
    assert (run_r / "dvsynth.sqlite").is_file() and (run_r / "manifest.json").is_file()
    assert not (run_r / "dataset").exists()


def test_export_replaces_only_the_files_it_listed(run_cli, tmp_path, run_r):
    ds = tmp_path / "ds"
    assert _export(run_cli, ds, run_r, extra=["--val-share", "0.5"]).code == 0
    listed = json.loads((ds / MARKER).read_text())["files"]
    on_disk = sorted(
        str(p.relative_to(ds)) for p in ds.rglob("*") if p.is_file() and p.name != MARKER
    )
    assert listed == on_disk and "README.md" in listed
    # A re-export replaces the export whole: a split the new one lacks is gone.
    assert any("validation-" in f for f in listed)
    assert _export(run_cli, ds, run_r, extra=["--val-share", "0"]).code == 0
    assert not list(ds.rglob("validation-*.parquet"))
    # A file the export did not write is never replaced: refused, kept as it was.
    (ds / "pairs" / "notes.txt").write_text("mine")
    err = _one_line(_export(run_cli, ds, run_r))
    assert "pairs/notes.txt" in err
    assert (ds / "pairs" / "notes.txt").read_text() == "mine"
    assert (ds / "README.md").is_file()


def test_export_through_a_symlink_writes_the_target_and_keeps_the_link(run_cli, tmp_path, run_r):
    target = tmp_path / "exports" / "v1"
    assert _export(run_cli, target, run_r).code == 0
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    before = set(os.listdir(tmp_path)), set(os.listdir(target.parent))
    result = _export(run_cli, link, run_r, extra=["--val-share", "0"])
    assert result.code == 0, result.err
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert (target / "README.md").is_file() and not list(target.rglob("validation-*"))
    assert (set(os.listdir(tmp_path)), set(os.listdir(target.parent))) == before  # no debris


def test_export_folders_follow_the_umask(run_cli, tmp_path, run_r):
    old = os.umask(0o022)
    try:
        ds = tmp_path / "ds"
        assert _export(run_cli, ds, run_r).code == 0
    finally:
        os.umask(old)
    assert ds.stat().st_mode & 0o777 == 0o755
    assert (ds / "pairs").stat().st_mode & 0o777 == 0o755
    assert (ds / "README.md").stat().st_mode & 0o777 == 0o644


def test_push_dry_run_writes_nothing_where_the_user_looks(run_cli, tmp_path, run_r, monkeypatch):
    import huggingface_hub

    from tests.test_publish import FakeHfApi, _assert_no_token_anywhere

    api = FakeHfApi()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: api)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = run_cli(
        "push", str(run_r), "--repo", "me/dv", "--version", "1.0.0", "--license", "mit",
        "--dry-run",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "would commit: add README.md" in result.out and api.calls == []
    assert list(work.iterdir()) == [] and list(scratch.iterdir()) == []
    _assert_no_token_anywhere(tmp_path, result)


def test_an_export_of_an_older_dvsynth_is_replaced_by_its_own_names(run_cli, tmp_path, run_r):
    ds = tmp_path / "ds"
    assert _export(run_cli, ds, run_r).code == 0
    (ds / MARKER).write_text("Written by dvsynth export; a later export replaces it whole.\n")
    assert _export(run_cli, ds, run_r).code == 0  # README.md, <config>/<split>-N.parquet
    assert json.loads((ds / MARKER).read_text())["files"]
    (ds / MARKER).write_text("Written by dvsynth export.\n")
    (ds / "train.py").write_text("mine")
    assert "train.py" in _one_line(_export(run_cli, ds, run_r))
    assert (ds / "train.py").read_text() == "mine"


def test_what_a_killed_export_left_beside_its_folder_is_cleared_by_the_next(
    run_cli, tmp_path, run_r
):
    """A SIGKILL mid-export leaves `.ds.PID.x.tmp` (half built) or, between the two renames
    of the swap, `.ds.PID.x.old` (the previous export); the next export removes both once
    that process is gone, and keeps a live process's and any file no export wrote."""
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    ds = tmp_path / "ds"
    assert _export(run_cli, ds, run_r).code == 0
    half = tmp_path / f".ds.{gone.pid}.0badc0de.tmp"
    (half / "pairs").mkdir(parents=True)
    (half / "pairs" / "train-00000.parquet").write_bytes(b"partial")
    moved = tmp_path / f".ds.{gone.pid}.1badc0de.old"
    os.rename(ds, moved)  # killed after the first rename: the old export is aside
    live = tmp_path / f".ds.{os.getpid()}.2badc0de.tmp"
    live.mkdir()
    mine = tmp_path / f".ds.{gone.pid}.3badc0de.old"
    mine.mkdir()
    (mine / "notes.txt").write_text("not an export")
    assert _export(run_cli, ds, run_r).code == 0
    assert not half.exists() and not moved.exists()
    assert live.is_dir() and (mine / "notes.txt").read_text() == "not an export"
    assert (ds / "README.md").is_file()
