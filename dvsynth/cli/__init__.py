"""The `dvsynth` command line: `app` (options -> config -> library call), `report` (all
terminal output) and `boundary` (how every failure ends). `main` is the console entry
point; it imports nothing heavy itself, so a Ctrl-C during start-up also ends in one line."""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    try:
        from dvsynth.cli.boundary import run_command
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    run_command()


def __getattr__(name: str) -> Any:
    if name == "app":
        from dvsynth.cli.app import app

        return app
    raise AttributeError(name)


__all__ = ["app", "main"]
