"""The README's commands are what CI runs and what a new user types."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text, re.DOTALL)[:2]


def test_readme_opens_with_setup_and_test_commands_and_ci_runs_the_test_command():
    setup, test = readme_commands()
    assert setup.endswith("dvsynth generate") and ".[local]" in setup
    assert "pytest" in test
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test in ci_lines
