"""`python -m dvsynth.cli`: the same entry point as the `dvsynth` console script."""

from dvsynth.cli import main

main()
