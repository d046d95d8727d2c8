"""The `dvsynth` command line: `app` (options -> config -> library call) and `report`
(all terminal output). `main` is the console entry point."""

from dvsynth.cli.app import app, main

__all__ = ["app", "main"]
