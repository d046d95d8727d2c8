"""The baselines' argument parser: a bad option is one line on stderr and exit 2, as
every dvsynth command does (argparse's default prints the whole usage first)."""

from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
