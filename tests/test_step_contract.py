"""The stage contract: a user's own check is one class, run by the same runner as the
built-in steps, recorded on every row, counted by stats, described in the card, and
resumed like every other step."""

from __future__ import annotations

import json

import pytest

from dvsynth.config import ValidateConfig
from dvsynth.records import DualView
from dvsynth.runs.dirs import iter_runs
from dvsynth.runs.stats import compute_stats
from dvsynth.validators.run import default_steps, validate_runs
from dvsynth.validators.step import Step, StepOutcome
from tests.conftest import generate_args, write_jsonl


class MinQueryWords:
    """A user's check: a query of fewer than `words` words is too vague to train on."""

    name = "min_query_words"
    reason_prefix = "short"

    def __init__(self, words: int, stop_after: int | None = None) -> None:
        self.words = words
        self.stop_after = stop_after  # simulate a kill after this many rows
        self.seen: list[str] = []

    def settings(self) -> dict:
        return {"words": self.words}

    def describe(self) -> str:
        return f"queries of at least {self.words} words"

    async def __call__(self, row: DualView) -> StepOutcome:
        if self.stop_after is not None and len(self.seen) >= self.stop_after:
            raise KeyboardInterrupt  # the process dies here
        self.seen.append(row.seed_id)
        count = len(row.query.split())
        return StepOutcome(reasons=[f"short:query:{count}"] if count < self.words else [])


QUERIES = [
    "cats",
    "how do tides work",
    "best way to learn piano as an adult",
    "ww2",
    "symptoms of low iron in teenagers",
    "golang",
    "what causes the northern lights to appear",
    "tax rules for freelancers in germany",
]


@pytest.fixture
def run(run_cli, fake_server, tmp_path):
    rows = [
        {"id": f"q{i}", "query": q, "positive": f"kwpos{i} text", "negative": f"kwneg{i} text"}
        for i, q in enumerate(QUERIES)
    ]
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    out = tmp_path / "run"
    assert run_cli(*generate_args(fake_server, seeds, out)).code == 0
    return out


def config(run) -> ValidateConfig:
    return ValidateConfig(runs=[run], judge=False, concurrency=2)


def test_a_custom_step_runs_records_and_counts_like_the_built_in_ones(run, tmp_path):
    step = MinQueryWords(3)
    assert isinstance(step, Step)
    validate_runs(config(run), steps=[*default_steps(config(run)), step])
    rows = {r.seed_id: r for r in iter_runs([run])}
    short = {sid for sid, r in rows.items() if len(r.query.split()) < 3}
    assert short == {"q0", "q3", "q5"}
    for seed_id, row in rows.items():
        if seed_id in short:
            assert row.status == "rejected" and row.reasons[0].startswith("short:query:")
            assert row.stages[-1] == "min_query_words"
        else:
            assert row.verified and "min_query_words" in row.stages
    stats = compute_stats([run])
    assert stats["stages"]["min_query_words"] == {
        "entered": 8,
        "passed": 5,
        "acceptance": 0.625,
    }
    from dvsynth.publish.card import _validation

    text, _ = _validation([run])
    assert "queries of at least 3 words" in text and "no LLM judge" in text


def test_a_custom_step_resumes_and_its_settings_are_part_of_the_hash(run):
    dying = MinQueryWords(3, stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        validate_runs(config(run), steps=[*default_steps(config(run)), dying])
    done = set(dying.seen)
    assert 3 <= len(done) < 8
    again = MinQueryWords(3)
    validate_runs(config(run), steps=[*default_steps(config(run)), again])
    assert set(again.seen) == {f"q{i}" for i in range(8)} - done  # finished rows not redone
    untouched = MinQueryWords(3)
    validate_runs(config(run), steps=[*default_steps(config(run)), untouched])
    assert untouched.seen == []
    stricter = MinQueryWords(5)  # new settings: every row is checked again
    validate_runs(config(run), steps=[*default_steps(config(run)), stricter])
    assert len(stricter.seen) == 8
    rows = list(iter_runs([run]))
    assert sum(r.verified for r in rows) == 4
    recorded = json.loads(
        __import__("sqlite3")
        .connect(run / "dvsynth.sqlite")
        .execute("SELECT value FROM meta WHERE key = 'validation'")
        .fetchone()[0]
    )
    assert recorded["steps"][-1]["settings"] == {"words": 5}
