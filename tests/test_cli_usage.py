"""Usage errors end in one line, exit 2, as every other error does; never a traceback.

Run as subprocesses through the installed console script, as a user meets them: typer
0.29+ raises its vendored click's exceptions, which an in-process runner would hide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

DVSYNTH = shutil.which("dvsynth") or os.path.join(os.path.dirname(sys.executable), "dvsynth")


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run(
        [DVSYNTH, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("generate", "--concurency", "3"), "No such option: --concurency"),
        (("generate", "--concurrency", "abc"), "Invalid value for '--concurrency'"),
        (("export", "run", "--out", "x"), "Missing option '--license'"),
        (("export", "run"), "Missing option"),
        (("frobnicate",), "No such command 'frobnicate'"),
        (("validate",), "Missing argument"),
        (("stats", "--jsn", "run"), "No such option: --jsn"),
    ],
)
def test_usage_error_is_one_message_and_exit_2(tmp_path, args, message):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error:") and "--help" in line


def test_no_arguments_prints_the_help(tmp_path):
    result = run(cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "generate" in result.stdout + result.stderr
    assert "validate" in result.stdout + result.stderr


def test_help_and_version_exit_0(tmp_path):
    assert run("--help", cwd=tmp_path).returncode == 0
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("dvsynth ")


def test_a_user_error_is_one_line_and_exit_2(tmp_path):
    result = run("stats", str(tmp_path / "missing"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "not a dvsynth run directory" in result.stderr


def test_an_error_with_brackets_prints_them(tmp_path):
    """Error text is text, not rich markup: `"dvsynth[ray]"` printed as `"dvsynth"`."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dvsynth.cli",
            "generate",
            "--engine",
            "ray",
            "--engine-arg",
            "tokenizer[ray]",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "'tokenizer[ray]' is not KEY=VALUE" in done.stderr, done.stderr
