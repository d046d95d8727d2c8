"""The generate stage: `step` (seed -> candidate pair: render, call, parse), `parse` (the
answer read out of free text) and `run` (the `dvsynth generate` library call)."""
