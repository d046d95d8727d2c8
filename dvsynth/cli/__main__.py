"""`python -m dvsynth.cli`: the same entry point as the `dvsynth` console script."""

from dvsynth.cli.app import main

main()
