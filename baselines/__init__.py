"""Baselines: train a retriever on dual-view data (train.py) and evaluate it on FollowIR
and the gold set (evaluate.py). Run from the repository root: `python baselines/train.py`."""
