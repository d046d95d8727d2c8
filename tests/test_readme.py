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


def test_readme_commands_and_ci_install_from_the_constraints_file():
    for command in readme_commands():
        assert "pip install -c constraints.txt " in command
    pins = constraints()
    assert {"typer", "click", "litellm", "datasets", "huggingface-hub"} <= set(pins)
    assert pins["litellm"] == "1.110.2"  # the checked release (1.82.7/8 were malicious)


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def test_the_suite_runs_with_the_locked_versions():
    """What a new user installs is what these tests ran with (unless .ci/latest asks for
    the newest releases on purpose)."""
    import os
    from importlib import metadata

    import pytest

    if os.environ.get("DVSYNTH_LATEST"):
        pytest.skip("DVSYNTH_LATEST: running against the newest releases on purpose")
    drifted = []
    for name, version in constraints().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # pins of extras this environment did not install
        if installed != version:
            drifted.append(f"{name} {installed} != {version}")
    assert not drifted, "installed versions differ from constraints.txt: " + ", ".join(drifted)
