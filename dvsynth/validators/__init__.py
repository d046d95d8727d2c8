"""Validation steps (`step` is the contract): rules, the instruction check, the judge,
then dedup across runs; `run` is the `dvsynth validate` library call."""
