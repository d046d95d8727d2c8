"""One line and exit 2, everywhere (issue 25, section 5): what a user can break ends in one
line that names the file or option, through the real console entry point.

Each case here ended in a traceback, a silent exit 0 or a silent fresh start before the
CLI had one error boundary (`cli.boundary`) and the store checked its database.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dvsynth.runs.store import DATABASE, MANIFEST
from tests.conftest import generate_args, write_seeds

DVSYNTH = shutil.which("dvsynth") or os.path.join(os.path.dirname(sys.executable), "dvsynth")

SEEDS = Path(__file__).parent / "fixtures" / "promptriever.jsonl"


def dvsynth(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run(
        [sys.executable, "-m", "dvsynth.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
    )


def one_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The single error line, checked: exit 2, no traceback, names every needle (notes
    printed before the error are allowed; the error is one line, and the last)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and result.stderr.rstrip().endswith(lines[0]), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def made_run(tmp_path_factory):
    """A generated and validated run, copied by each test before it breaks it."""
    from dvsynth.testing import FakeLLMServer

    root = tmp_path_factory.mktemp("made")
    run = root / "run"
    with FakeLLMServer() as server:
        assert dvsynth(*generate_args(server, SEEDS, run)).returncode == 0
        validate = dvsynth(
            "validate",
            run,
            "--judge-model",
            "openai/judge",
            "--judge-api-base",
            server.api_base,
            "--quiet",
        )
        assert validate.returncode == 0, validate.stderr
    return run


@pytest.fixture
def run_copy(made_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(made_run, copy)
    return copy


def _truncate(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: max(len(data) // 3, 200)])


def _random_bytes(db: Path) -> None:
    db.write_bytes(os.urandom(8192))


def _rows_pages(db: Path) -> None:
    """The header intact, the `rows` table's pages garbage: found only when read."""
    import sqlite3

    with sqlite3.connect(db) as con:
        page = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'rows'").fetchone()[0]
    con.close()
    with db.open("r+b") as handle:
        handle.seek((root - 1) * page)
        handle.write(os.urandom(page))


COMMANDS = {
    "stats": lambda run, tmp: ("stats", run),
    "validate": lambda run, tmp: ("validate", run, "--no-judge", "--quiet"),
    "export": lambda run, tmp: ("export", run, "--out", tmp / "ds", "--license", "mit"),
    "generate": lambda run, tmp: (
        "generate",
        "--seeds",
        SEEDS,
        "--model",
        "openai/fake",
        "--api-base",
        "http://127.0.0.1:9/v1",
        "--out",
        run,
        "--quiet",
    ),
    "batch status": lambda run, tmp: ("batch", "status", run),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("damage", [_random_bytes, _truncate], ids=["random", "truncated"])
def test_a_corrupt_database_is_one_line(run_copy, tmp_path, command, damage):
    for leftover in ("-wal", "-shm"):
        (run_copy / (DATABASE + leftover)).unlink(missing_ok=True)
    damage(run_copy / DATABASE)
    one_line(dvsynth(*COMMANDS[command](run_copy, tmp_path)), str(run_copy / DATABASE))


@pytest.mark.parametrize("command", ["stats", "validate", "export", "generate"])
def test_a_corrupt_page_found_mid_command_names_the_database(run_copy, tmp_path, command):
    """The store is closed on the way out of the failure; the line still names its file."""
    for leftover in ("-wal", "-shm"):
        (run_copy / (DATABASE + leftover)).unlink(missing_ok=True)
    _rows_pages(run_copy / DATABASE)
    one_line(dvsynth(*COMMANDS[command](run_copy, tmp_path)), str(run_copy / DATABASE))


@pytest.mark.parametrize("command", ["stats", "generate", "validate", "export"])
@pytest.mark.parametrize("how", ["deleted", "empty"])
def test_a_lost_database_is_named_not_started_over(run_copy, tmp_path, command, how):
    for name in (DATABASE, DATABASE + "-wal", DATABASE + "-shm"):
        (run_copy / name).unlink(missing_ok=True)
    if how == "empty":
        (run_copy / DATABASE).write_bytes(b"")
    line = one_line(dvsynth(*COMMANDS[command](run_copy, tmp_path)), str(run_copy / DATABASE))
    assert ("missing" if how == "deleted" else "empty") in line
    assert (run_copy / DATABASE).exists() == (how == "empty")  # nothing made anew


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "{not json", "\xff\xfe"])
def test_a_broken_manifest_is_one_line(run_copy, tmp_path, content):
    (run_copy / MANIFEST).write_bytes(content.encode("latin-1"))
    for command in ("stats", "validate"):
        one_line(dvsynth(*COMMANDS[command](run_copy, tmp_path)), str(run_copy / MANIFEST))


def test_paths_through_a_file_are_one_line(made_run, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    gen = COMMANDS["generate"](afile / "sub", tmp_path)
    one_line(dvsynth(*gen), str(afile / "sub"))
    line = one_line(dvsynth("recipe", "from-run", made_run, "-o", afile / "x.yaml"), str(afile))
    assert "is a file, not a folder" in line
    batch_out = (
        *COMMANDS["generate"](tmp_path / "new", tmp_path),
        "--batch-out",
        afile / "x.jsonl",
    )
    one_line(dvsynth(*batch_out), "afile")


@pytest.mark.parametrize(
    ("options", "option"),
    [
        (("--near-threshold", "0"), "--near-threshold"),
        (("--near-threshold", "150"), "--near-threshold"),
        (("--near-threshold", "-3"), "--near-threshold"),
        (("--leak-similarity", "-1"), "--leak-similarity"),
        (("--leak-similarity", "500"), "--leak-similarity"),
        (("--max-rewording", "-10"), "--max-rewording"),
        (("--max-rewording", "101"), "--max-rewording"),
        (("--min-words", "10", "--max-words", "5"), "--min-words"),
        (("--judge-threshold", "1.5"), "--judge-threshold"),
    ],
)
def test_validate_bounds_are_one_line(run_copy, options, option):
    one_line(dvsynth("validate", run_copy, "--no-judge", "--quiet", *options), option)


def test_recipe_and_library_refuse_the_same_bounds(tmp_path):
    from pydantic import ValidationError

    from dvsynth.config import ValidateConfig
    from dvsynth.recipe.io import load_recipe

    with pytest.raises(ValidationError):
        ValidateConfig(runs=[tmp_path], rule_options={"leakage": {"min_similarity": 500}})
    with pytest.raises(ValidationError):
        ValidateConfig(runs=[tmp_path], rule_options={"length": {"min_words": 9, "max_words": 3}})
    recipe = tmp_path / "r.yaml"
    recipe.write_text("validation:\n  rule_options:\n    rewording:\n      max_similarity: -10\n")
    from dvsynth.errors import UserError

    with pytest.raises(UserError, match="max_similarity"):
        load_recipe(recipe)


@pytest.mark.parametrize("after", [0.15, 0.3, 0.6, 1.5, 4.0])  # after Python itself started
def test_ctrl_c_at_any_moment_is_one_message(tmp_path, after):
    from dvsynth.testing import FakeLLMServer

    seeds = write_seeds(tmp_path / "seeds.jsonl", 60)
    with FakeLLMServer(latency=0.2) as server:
        proc = subprocess.Popen(
            # the console script, as a user runs it (`python -m` adds runpy's own start-up)
            [DVSYNTH, *generate_args(server, seeds, tmp_path / "r", "--concurrency", "1")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(after)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    assert "interrupted" in err, err


@pytest.mark.parametrize(
    "option", [("--timeout", "inf"), ("--rpm", "inf"), ("--tpm", "1e400"), ("--max-cost", "inf")]
)
def test_infinite_numbers_are_refused_before_any_call(tmp_path, option):
    """`--timeout inf` passed its `gt=0` bound and rejected every row for good."""
    gen = COMMANDS["generate"](tmp_path / "run", tmp_path)
    one_line(dvsynth(*gen, *option), option[0])
    assert not (tmp_path / "run").exists()


def test_a_lock_file_that_is_a_link_is_never_written_through(run_copy, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    lock = run_copy / ".dvsynth.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    one_line(dvsynth(*COMMANDS["validate"](run_copy, tmp_path)), str(lock))
    assert victim.read_text() == "keep me"
    lock.unlink()
    os.mkfifo(lock)
    one_line(dvsynth(*COMMANDS["validate"](run_copy, tmp_path)), str(lock))


@pytest.mark.parametrize(
    "field, value",
    [("config", []), ("seed_source", "x"), ("identity", {"prompts": 5})],
)
def test_wrong_types_inside_the_manifest_are_one_line(run_copy, tmp_path, field, value):
    manifest = json.loads((run_copy / MANIFEST).read_text())
    manifest[field] = value
    (run_copy / MANIFEST).write_text(json.dumps(manifest))
    for command in ("stats", "export", "generate"):
        one_line(dvsynth(*COMMANDS[command](run_copy, tmp_path)), str(run_copy / MANIFEST))


def test_a_foreign_sqlite_file_is_never_taken_over(run_copy, tmp_path):
    import sqlite3

    for name in (DATABASE, DATABASE + "-wal", DATABASE + "-shm"):
        (run_copy / name).unlink(missing_ok=True)
    db = sqlite3.connect(run_copy / DATABASE)
    db.execute("CREATE TABLE foo (x)")
    db.commit()
    db.close()
    for command in ("generate", "validate", "batch status", "stats"):
        one_line(dvsynth(*COMMANDS[command](run_copy, tmp_path)), str(run_copy / DATABASE))
    tables = sqlite3.connect(run_copy / DATABASE).execute("SELECT name FROM sqlite_master")
    assert [t for (t,) in tables] == ["foo"]


@pytest.mark.parametrize("option", ["--seeds", "--prompt"])
def test_an_empty_path_is_refused_not_the_default(tmp_path, option):
    """`--seeds "$SEEDS"` with the variable unset ran the bundled sample, paid."""
    gen = list(COMMANDS["generate"](tmp_path / "run", tmp_path))
    if option == "--seeds":
        gen[gen.index("--seeds") + 1] = ""
    else:
        gen += ["--prompt", "", "--mode", "reverse"]
    one_line(dvsynth(*gen), option)
    assert not (tmp_path / "run").exists()


def test_an_empty_judge_prompt_is_refused(run_copy):
    one_line(dvsynth("validate", run_copy, "--judge-prompt", "", "--quiet"), "--judge-prompt")


def test_batch_out_writes_through_a_link_and_keeps_it(tmp_path):
    target = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)  # dangling until written
    gen = (*COMMANDS["generate"](tmp_path / "run", tmp_path), "--batch-out", link)
    result = dvsynth(*gen)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and target.is_file() and target.read_text().strip()


@pytest.mark.parametrize("prefix", ["", "openai/"])
@pytest.mark.parametrize("option", ["--model", "--judge-model"])
def test_a_key_pasted_as_a_model_name_is_refused_and_never_shown(tmp_path, option, prefix):
    """The key would have become the run folder's name, its identity and the error line."""
    key = prefix + "sk-proj-" + "Zq3xT9vB2mK7pL0wR5yN8cJ4hF6dS1aG"
    seeds = write_seeds(tmp_path / "seeds.jsonl", 1)
    args = ["generate", "--seeds", str(seeds), "--out", str(tmp_path / "run"), "--limit", "1"]
    if option == "--judge-model":
        args += ["--validate", "--judge-model", key]
    else:
        args += ["--model", key]
    result = dvsynth(*args, cwd=tmp_path)
    one_line(result, option, "looks like an API key")
    assert "Zq3xT9vB2mK7pL0wR5yN8cJ4hF6dS1aG" not in result.stdout + result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "dvsynth-runs").exists()
