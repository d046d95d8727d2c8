"""Issue 27's levers on the judge's bill: trusted seed views, escalation, joint judgments."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from dvsynth.llm.client import Completion
from dvsynth.runs.dirs import iter_runs
from dvsynth.testing import JOINT_SIGNATURE, JUDGE_SIGNATURE, FakeLLMServer
from dvsynth.validators.decide import Escalating, why_escalate
from dvsynth.validators.judge import parse_joint
from tests.conftest import generate_args, validate_args, write_jsonl
from tests.test_publish import export

CHEAP, STRONG = "openai/cheap", "openai/strong"


def lever_seeds(path, bootstrap: bool = True):
    """Three reverse-mode seeds whose flip the fake confirms, a hesitant one (the cheap
    judge's P(yes) 0.6 on its `borderline` positive), and a bootstrap triple."""
    topics = [
        ("caffeine and sleep in adults", "Peer-reviewed laboratory work only, please"),
        ("solar panel output in winter", "I want field measurements from Nordic sites"),
        ("roman roads and trade routes", "Archaeological excavation reports are what I need"),
    ]
    rows = [
        {
            "id": f"r{i}",
            "query": query,
            "instruction": f"{need}: #kwalpha{i}.",
            "positive": f"kwalpha{i} trial in adults",
            "negative": f"kwbeta{i} blog for teens",
        }
        for i, (query, need) in enumerate(topics)
    ]
    rows.append(
        {
            "id": "hesitant",
            "query": "hesitant query",
            "instruction": "Only sources that cover #kwzeta.",
            "positive": "kwzeta borderline case",
            "negative": "kweta case",
        }
    )
    if bootstrap:
        rows.append(
            {
                "id": "boot",
                "query": "bootstrap query",
                "positive": "kwmu one",
                "negative": "kwnu two",
            }
        )
    return write_jsonl(path, rows)


def one_seed_run(run_cli, server, tmp_path, query: str):
    """A generated run of one reverse seed whose query carries the fake's `query` marker."""
    row = {
        "id": "one",
        "query": query,
        "instruction": "Only sources that cover #kwalpha.",
        "positive": "kwalpha trial",
        "negative": "kwbeta blog",
    }
    run = tmp_path / "run"
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [row])
    assert run_cli(*generate_args(server, seeds, run)).code == 0
    return run


@pytest.fixture
def generated(run_cli, fake_server, tmp_path):
    run = tmp_path / "run"
    seeds = lever_seeds(tmp_path / "seeds.jsonl")
    assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
    fake_server.prompts.clear()
    return run


def _instruction(prompt: str) -> str:
    return re.search(r"<instruction>(.*?)</instruction>", prompt, re.DOTALL).group(1)


def judged_instructions(server, model: str | None = None) -> list[str]:
    return [
        _instruction(prompt)
        for name, prompt in server.prompts
        if (JUDGE_SIGNATURE in prompt or JOINT_SIGNATURE in prompt)
        and (model is None or name == model.split("/", 1)[1])
    ]


# --- trusted seed views ------------------------------------------------------------------


def test_generated_views_never_judge_view_a_and_the_card_says_so(
    run_cli, fake_server, generated, tmp_path
):
    result = run_cli(*validate_args(generated, fake_server, "--judge-views", "generated"))
    assert result.code == 0, result.err
    rows = {row.seed_id: row for row in iter_runs([generated])}
    asked = judged_instructions(fake_server)
    for i in range(3):
        row = rows[f"r{i}"]
        assert row.instruction_a not in asked  # the seed's view: never sent to the judge
        assert row.instruction_b in asked
        assert {v.view for v in row.verdicts} == {"b"} and row.status == "kept"
        assert row.provenance.judge_views == "generated"
    boot = rows["boot"]
    assert boot.instruction_a in asked  # a bootstrap row has no trusted view
    assert {v.view for v in boot.verdicts} == {"a", "b"}
    assert boot.provenance.judge_views is None
    stats = json.loads(run_cli("stats", generated, "--json").out)
    assert stats["view_a_unjudged"] == 4
    assert stats["judge_agreement"]["pairs_all_four_agree"] >= 3  # 2 judgments count as all
    out = tmp_path / "export"
    assert export(run_cli, generated, out).code == 0, "export"
    card = (out / "README.md").read_text()
    assert "taken from the seed unjudged" in card
    assert "view a was taken from the seed unjudged" in card  # the validation's description


def test_all_views_judge_the_seed_instruction_too(run_cli, fake_server, generated):
    assert run_cli(*validate_args(generated, fake_server)).code == 0
    rows = {row.seed_id: row for row in iter_runs([generated])}
    assert rows["r0"].instruction_a in judged_instructions(fake_server)
    assert {v.view for v in rows["r0"].verdicts} == {"a", "b"}


# --- escalation: the decision ------------------------------------------------------------


@pytest.mark.parametrize(
    "p_yes, margin, escalates",
    [
        (0.7, 0.2, True),  # on the upper edge: within the margin
        (0.3, 0.2, True),  # on the lower edge
        (0.71, 0.2, False),
        (0.29, 0.2, False),
        (0.5, 0.0, True),  # margin 0: only an even answer
        (0.51, 0.0, False),
        (0.0, 0.5, True),  # margin 0.5: everything
        (1.0, 0.5, True),
    ],
)
def test_escalation_at_the_margins_edges(p_yes, margin, escalates):
    reading = (p_yes >= 0.5, p_yes)
    assert (why_escalate(reading, margin) == "margin") is escalates


def test_unparsable_and_missing_logprobs_escalate():
    assert why_escalate((None, None), 0.0) == "unparsable"
    assert why_escalate((True, None), 0.0) == "no_logprobs"


class _Stub:
    """A client that answers every call with one completion and counts the calls."""

    def __init__(self, model: str, text: str, p_yes: float | None) -> None:
        self.model, self.calls = model, 0
        logprobs = None
        if p_yes is not None:
            logprobs = [{"yes": math.log(p_yes), "no": math.log(1 - p_yes)}]
        self.completion = Completion(text, 10, 1, 0.001, 0.0, logprobs=logprobs, tokens=[text])

    async def complete(self, messages, answer_choices=()):
        self.calls += 1
        return self.completion


def _ask(cheap: _Stub, strong: _Stub, margin: float = 0.2):
    from dvsynth.validators.judge import parse_label, probability_of_yes

    def read(c):
        return [(parse_label(c.text), probability_of_yes(c.text, c.logprobs, c.tokens))]

    cascade = Escalating(cheap, strong, margin)  # type: ignore[arg-type]
    return asyncio.run(cascade.ask([{"role": "user", "content": "q"}], read, ("yes", "no")))


@pytest.mark.parametrize(
    "text, p_yes, why",
    [("yes", 0.65, "margin"), ("It depends.", None, "unparsable"), ("yes", None, "no_logprobs")],
)
def test_an_unsure_cheap_answer_goes_to_the_strong_judge_whose_verdict_stands(text, p_yes, why):
    cheap, strong = _Stub(CHEAP, text, p_yes), _Stub(STRONG, "no", 0.02)
    answer = _ask(cheap, strong)
    assert (cheap.calls, strong.calls) == (1, 1)
    assert answer.model == STRONG and answer.readings == [(False, pytest.approx(0.02))]
    (record,) = answer.escalations
    assert record.escalated and record.why == why
    assert record.cheap_probability == (None if p_yes is None else p_yes)
    assert record.strong_probability == 0.02
    assert [model for model, _ in answer.calls] == [CHEAP, STRONG]


def test_a_sure_cheap_answer_stands_and_the_strong_judge_is_not_called():
    cheap, strong = _Stub(CHEAP, "no", 0.05), _Stub(STRONG, "yes", 0.99)
    answer = _ask(cheap, strong)
    assert (cheap.calls, strong.calls) == (1, 0)
    assert answer.model == CHEAP and not answer.escalations[0].escalated
    assert answer.escalations[0].cheap_probability == 0.05


# --- escalation: a run ---------------------------------------------------------------------


def cascade_args(run, server, *extra):
    return validate_args(
        run,
        server,
        "--escalate-to",
        STRONG,
        "--escalate-api-base",
        server.api_base,
        *extra,
        judge=CHEAP,
    )


def test_a_cascade_records_who_decided_both_probabilities_and_each_judges_cost(
    run_cli, fake_server, generated, tmp_path
):
    result = run_cli(*cascade_args(generated, fake_server, "--escalate-margin", "0.2"))
    assert result.code == 0, result.err
    rows = {row.seed_id: row for row in iter_runs([generated])}
    hesitant = rows["hesitant"]
    (positive,) = [v for v in hesitant.verdicts if (v.view, v.doc) == ("a", "a")]
    assert positive.model == STRONG and positive.escalation.escalated
    assert positive.escalation.why == "margin"
    assert positive.escalation.cheap_probability == 0.6
    assert positive.escalation.strong_probability == 0.97
    assert hesitant.status == "kept"  # the strong judge's yes stands
    sure = rows["r0"]
    assert all(not v.escalation.escalated and v.model == CHEAP for v in sure.verdicts)
    assert all(c.escalation is not None for c in sure.checks)  # the check goes through it too
    assert set(hesitant.provenance.judge_spend) == {CHEAP, STRONG}
    assert set(sure.provenance.judge_spend) == {CHEAP}
    stats = json.loads(run_cli("stats", generated, "--json").out)
    assert stats["escalation"]["escalated"] == 1  # only the borderline judgment
    assert 0 < stats["escalation"]["share_escalated"] < 0.1
    assert set(stats["judges"]) == {CHEAP, STRONG}
    assert stats["judges"][STRONG]["calls"] == 1
    # Only the hesitant judgment went to the strong judge.
    assert judged_instructions(fake_server, STRONG) == [hesitant.instruction_a]
    assert "escalated to the strong judge" in run_cli("stats", generated).out
    out = tmp_path / "export"
    assert export(run_cli, generated, out).code == 0
    card = (out / "README.md").read_text()
    assert "A cascade judged these rows" in card and "judgments and checks" in card
    import datasets

    pairs = datasets.load_dataset(str(out), "pairs", cache_dir=str(tmp_path / "cache"))
    exported = next(r for split in pairs.values() for r in split if r["seed_id"] == "hesitant")
    escalated = [v for v in exported["verdicts"] if v["escalation"]["escalated"]]
    assert [(v["model"], v["escalation"]["cheap_probability"]) for v in escalated] == [
        (STRONG, 0.6)
    ]
    assert f"Judge `{CHEAP}`:" in card and f"Judge `{STRONG}`:" in card


def test_unparsable_cheap_answers_escalate_in_a_run(run_cli, fake_server, tmp_path):
    run = one_seed_run(run_cli, fake_server, tmp_path, "garbled [cheap-garbage]")
    assert run_cli(*cascade_args(run, fake_server)).code == 0
    (row,) = iter_runs([run])
    assert row.status == "kept"  # the strong judge answered every garbled judgment
    assert {v.escalation.why for v in row.verdicts} == {"unparsable"}
    assert {v.model for v in row.verdicts} == {STRONG}


def _checked(run) -> dict[str, str]:
    """seed_id -> query of the rows whose validation is committed."""
    try:
        with sqlite3.connect(run / "dvsynth.sqlite", timeout=5) as db:
            found = db.execute("SELECT record FROM rows WHERE checked IS NOT NULL").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {(r := json.loads(record))["seed_id"]: r["query"] for (record,) in found}


def test_a_rerun_after_a_kill_pays_no_call_twice_in_either_judge(run_cli, tmp_path):
    rows = [
        {
            "id": f"k{i:02d}",
            "query": f"kill topic {i} " + " ".join(f"w{i}x{j}" for j in range(4)),
            "instruction": f"Need {i}: #kwalpha{i}.",
            # every third positive makes the cheap judge unsure: escalated
            "positive": f"kwalpha{i} trial" + (" borderline" if i % 3 == 0 else ""),
            "negative": f"kwbeta{i} blog",
        }
        for i in range(36)
    ]
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with FakeLLMServer(latency=0.05) as server:
        assert run_cli(*generate_args(server, seeds, run)).code == 0
        server.prompts.clear()
        command = [
            sys.executable,
            "-m",
            "dvsynth.cli",
            *cascade_args(run, server, "--concurrency", "2", "--no-dedup"),
        ]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while len(_checked(run)) < 8 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        finished = _checked(run)
        assert 8 <= len(finished) < len(rows)
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        asked = Counter(server.prompts)
    assert len(_checked(run)) == len(rows)
    done = {f"<query>{query}</query>" for query in finished.values()}
    of_finished = {key: n for key, n in asked.items() if any(q in key[1] for q in done)}
    assert {model for model, _ in of_finished} == {"cheap", "strong"}  # both judges were asked
    assert set(of_finished.values()) == {1}  # and no call of a finished row was paid twice
    assert sum(asked.values()) - len(asked) <= 2 * 8  # at most the calls in flight repeat


@pytest.fixture
def batch_run(batch_server, run_cli, tmp_path):
    """(server, batch fake, a generated run of the lever seeds without the bootstrap one)."""
    server, fake = batch_server
    run = tmp_path / "run"
    seeds = lever_seeds(tmp_path / "seeds.jsonl", bootstrap=False)
    assert run_cli(*generate_args(server, seeds, run)).code == 0
    return server, fake, run


def test_a_cascade_through_the_batch_engine_sends_the_escalated_calls_in_a_second_round(
    batch_run, run_cli
):
    server, fake, run = batch_run
    online = server.total_requests
    args = cascade_args(run, server, "--batch", "--wait", "--poll-interval", "0.01")
    result = run_cli(*args)
    assert result.code == 0, result.err
    assert server.total_requests == online  # every judge call went through a batch
    batches = list(fake.batches.values())
    models = [{body["model"] for _, body in b.lines} for b in batches]
    assert models[0] == {"cheap"}  # the first round: the cheap judge's calls
    assert {"strong"} in models[1:]  # the escalated one, after the cheap answers came
    assert max(fake.requests_by_custom_id.values()) == 1  # nothing submitted twice
    rows = {row.seed_id: row for row in iter_runs([run])}
    assert rows["hesitant"].status == "kept"
    assert any(v.model == STRONG for v in rows["hesitant"].verdicts)
    stats = json.loads(run_cli("stats", run, "--json").out)
    by_model = stats["batch_by_model"]["validate"]
    assert set(by_model) == {CHEAP, STRONG} and by_model[STRONG]["answered"] == 1


def test_no_logprobs_provider_says_everything_escalates(run_cli, fake_server, generated):
    from dvsynth.config import ValidateConfig
    from dvsynth.validators.run import escalation_notice

    config = ValidateConfig(
        runs=[generated], judge_model="anthropic/claude-3-5-haiku-latest", escalate_to=STRONG
    )
    assert "every judgment and check escalates" in escalation_notice(config)
    plain = config.model_copy(update={"judge_model": CHEAP})
    assert escalation_notice(plain) is None


# --- joint judgments -----------------------------------------------------------------------


def test_joint_replies_parse_both_labels_and_refuse_half_an_answer():
    assert [label for label, _ in parse_joint("1: yes\n2: no")] == [True, False]
    assert [label for label, _ in parse_joint("**1** - No\nDocument 2: Yes.")] == [False, True]
    assert parse_joint("1: yes") == [(None, None), (None, None)]
    assert parse_joint("1: yes\n1: no\n2: no") == [(None, None), (None, None)]
    tokens = ["1", ":", " yes", "\n", "2", ":", " no"]
    logprobs = [{t: 0.0} for t in tokens]
    logprobs[2] = {" yes": math.log(0.8), " no": math.log(0.2)}
    logprobs[6] = {" yes": math.log(0.1), " no": math.log(0.9)}
    readings = parse_joint("".join(tokens), logprobs, tokens)
    assert readings == [(True, pytest.approx(0.8)), (False, pytest.approx(0.1))]


def test_joint_protocol_makes_one_call_per_view_in_a_pair_fixed_order(
    run_cli, fake_server, generated
):
    from dvsynth.validators.judge import joint_swapped

    result = run_cli(*validate_args(generated, fake_server, "--judge-protocol", "joint"))
    assert result.code == 0, result.err
    rows = {row.seed_id: row for row in iter_runs([generated])}
    joint = [p for _, p in fake_server.prompts if JOINT_SIGNATURE in p]
    assert len(joint) == 2 * len(rows)  # two calls per pair, not four
    for row in rows.values():
        assert row.status == "kept", (row.seed_id, row.reasons)
        assert sorted((v.view, v.doc) for v in row.verdicts) == [
            ("a", "a"),
            ("a", "b"),
            ("b", "a"),
            ("b", "b"),
        ]
        first = row.doc_b if joint_swapped(row.pair_id) else row.doc_a
        mine = [p for p in joint if f"<query>{row.query}</query>" in p]
        assert all(f"<document_1>{first.text}</document_1>" in p for p in mine)
    assert {joint_swapped(r.pair_id) for r in rows.values()} == {True, False}


def test_a_joint_reply_labelling_one_document_is_unparsable(run_cli, fake_server, tmp_path):
    run = one_seed_run(run_cli, fake_server, tmp_path, "half [joint-half]")
    assert run_cli(*validate_args(run, fake_server, "--judge-protocol", "joint")).code == 0
    (row,) = iter_runs([run])
    assert row.status == "rejected"
    assert {"judge:view_a:doc_a_unparsable", "judge:view_a:doc_b_unparsable"} <= set(row.reasons)
    assert {v.relevant for v in row.verdicts} == {None}


# --- bad values: one line, exit 2 ----------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--escalate-margin", "0.7"], "--escalate-margin: must be a number from 0 to 0.5"),
        (["--escalate-margin", "wide"], "--escalate-margin: must be a number from 0 to 0.5"),
        (["--judge-views", "some"], "--judge-views:"),
        (["--judge-protocol", "pairs"], "--judge-protocol:"),
        (["--escalate-margin", "0.3"], "--escalate-margin needs --escalate-to"),
        (
            ["--escalate-to", STRONG, "--escalate-margin", "auto"],
            "--escalate-margin auto needs a gold set to pick it on: --gold G",
        ),
        (["--escalate-to", STRONG, "--no-judge-logprobs"], "--escalate-to needs --judge-logprobs"),
        (["--escalate-to", STRONG, "--target-precision", "1.5"], "--target-precision:"),
    ],
)
def test_bad_lever_values_end_in_one_line_and_exit_2(tmp_path, extra, message):
    run = tmp_path / "run"
    run.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "dvsynth.cli", "validate", str(run), "--judge-model", CHEAP, *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


# --- calibrate: cheap alone, strong alone, cascade; auto margin; position bias -----------


@pytest.fixture
def gold_judges(fake_server, tmp_path):
    """The gold fakes on the fake server, and a small gold file they know."""
    from dvsynth.evaluate.gold import BUNDLED_GOLD
    from dvsynth.fakes.gold_judges import GoldJudges

    lines = BUNDLED_GOLD.read_text(encoding="utf-8").splitlines(keepends=True)[:16]
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(lines), encoding="utf-8")
    from dvsynth.evaluate.gold import read_gold

    GoldJudges(read_gold(gold)).install(fake_server)
    return fake_server, gold


def calibrate_args(server, gold, *extra):
    return [
        "calibrate",
        "--gold",
        gold,
        "--judge-model",
        "openai/gold-cheap",
        "--judge-api-base",
        server.api_base,
        "--max-retries",
        "0",
        "--json",
        *extra,
    ]


def test_calibrate_scores_the_cheap_judge_the_strong_judge_and_the_cascade(run_cli, gold_judges):
    server, gold = gold_judges
    cascade = ["--escalate-to", "openai/gold-strong", "--escalate-api-base", server.api_base]
    result = run_cli(*calibrate_args(server, gold, *cascade))
    assert result.code == 0, result.err
    data = json.loads(result.out)
    judges = data["judges"]
    assert set(judges) == {"cheap", "strong", "cascade"}
    assert judges["cheap"]["judge_model"] == "openai/gold-cheap"
    assert judges["strong"]["judge_model"] == "openai/gold-strong"
    assert set(judges["cheap"]["judge_calls"]) == {"openai/gold-cheap"}
    assert set(judges["cascade"]["judge_calls"]) == {"openai/gold-cheap", "openai/gold-strong"}
    # the cascade asks the strong judge only what the cheap one was unsure of
    strong_calls = judges["cascade"]["judge_calls"]["openai/gold-strong"]
    assert 0 < strong_calls < judges["strong"]["judge_calls"]["openai/gold-strong"]
    assert 0 < judges["cascade"]["escalated_share"] < 0.5
    assert judges["cascade"]["keep_recall"] >= judges["cheap"]["keep_recall"]
    # The cheap judge alone was scored on answers the cascade had cached: nothing paid
    # now, yet its cost is what the setting would cost on its own.
    cheap = judges["cheap"]
    assert cheap["judge_tokens"] == 0
    worth = cheap["cost_by_model"]["openai/gold-cheap"]
    assert worth["calls"] == cheap["judge_calls"]["openai/gold-cheap"] and worth["tokens"] > 0


def test_calibrate_picks_the_smallest_margin_that_keeps_the_target(run_cli, gold_judges):
    from dvsynth.validators.margin import MARGINS

    server, gold = gold_judges
    cascade = ["--escalate-to", "openai/gold-strong", "--escalate-api-base", server.api_base]
    args = calibrate_args(server, gold, *cascade, "--escalate-margin", "auto")
    data = json.loads(run_cli(*args, "--target-precision", "0.9").out)
    picked = data["margin_picked"]
    assert picked["margin"] in MARGINS and picked["keep_precision"] >= 0.9
    assert all(t["keep_precision"] < 0.9 for t in picked["tried"][:-1])  # smaller ones fail
    assert data["escalate_margin"] == picked["margin"]
    impossible = run_cli(*args, "--target-precision", "1.0")
    if impossible.code:  # no margin reaches 1.0 on these fakes: one line, exit 2
        assert impossible.code == 2 and "no margin up to 0.5 keeps precision 1" in impossible.err


def test_validate_with_an_auto_margin_records_it_in_the_runs_settings(
    run_cli, gold_judges, tmp_path
):
    from dvsynth.runs.dirs import recorded_validations

    server, gold = gold_judges
    run = tmp_path / "run"
    seeds = lever_seeds(tmp_path / "seeds.jsonl", bootstrap=False)
    assert run_cli(*generate_args(server, seeds, run)).code == 0
    args = validate_args(
        run,
        server,
        "--escalate-to",
        "openai/gold-strong",
        "--escalate-api-base",
        server.api_base,
        "--escalate-margin",
        "auto",
        "--gold",
        gold,
        "--target-precision",
        "0.5",
        judge="openai/gold-cheap",
    )
    server.prompts.clear()
    dry = run_cli(*args, "--dry-run")
    assert dry.code == 0, dry.err
    assert server.prompts == []  # a dry run picks nothing and sends nothing
    result = run_cli(*args)
    assert result.code == 0, result.err
    asked = len(server.prompts)
    assert run_cli(*args).code == 0
    assert len(server.prompts) == asked  # the rerun picks from the run's cache
    (settings,) = recorded_validations([run])
    judge = next(s for s in settings["steps"] if s["name"] == "judge")
    escalation = judge["settings"]["escalation"]
    assert escalation["margin"] == 0.0  # the first margin tried reaches 0.5
    assert escalation["margin_picked_on"] == {"gold": str(gold), "target_precision": 0.5}


def test_calibrate_measures_the_position_bias_of_a_joint_judge(run_cli, gold_judges):
    server, gold = gold_judges
    data = json.loads(run_cli(*calibrate_args(server, gold, "--judge-protocol", "joint")).out)
    bias = data["position_bias"]
    assert bias["judgments"] == 2 * data["gold_pairs"]
    assert 0 < bias["share_changed"] < 1  # the cheap fake leans to document 1
    strong = calibrate_args(server, gold, "--judge-protocol", "joint")
    strong[strong.index("openai/gold-cheap")] = "openai/gold-strong"
    steady = json.loads(run_cli(*strong).out)["position_bias"]
    assert steady["share_changed"] < bias["share_changed"]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "validation:\n  escalate_margin: 0.9\n",
            "validation.escalate_margin: Value error, must be",
        ),
        ("validation:\n  judge_views: seeds\n", "validation.judge_views"),
        ("validation:\n  judge_protocol: pairwise\n", "validation.judge_protocol"),
        ("validation:\n  target_precision: 0\n", "validation.target_precision"),
    ],
)
def test_a_recipe_refuses_the_same_lever_values_in_one_line(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "dvsynth.cli", "run", str(path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr


def test_the_library_refuses_the_same_lever_values():
    from pydantic import ValidationError

    from dvsynth.config import ValidateConfig

    for bad in ({"escalate_margin": 0.9}, {"judge_views": "seeds"}, {"target_precision": 2}):
        with pytest.raises(ValidationError):
            ValidateConfig(runs=[], escalate_to=STRONG, **bad)


def test_preflight_reads_the_auto_margins_gold_set_before_anything_is_paid(tmp_path):
    from dvsynth.config import ValidateConfig
    from dvsynth.errors import UserError
    from dvsynth.validators.run import preflight

    config = ValidateConfig(
        runs=[tmp_path],
        judge_model=CHEAP,
        judge_api_base="http://127.0.0.1:9/v1",
        escalate_to=STRONG,
        escalate_api_base="http://127.0.0.1:9/v1",
        escalate_margin="auto",
        escalate_gold=str(tmp_path / "missing.jsonl"),
    )
    with pytest.raises(UserError, match="missing.jsonl"):
        preflight(config, "openai/generator")
    preflight(config.model_copy(update={"escalate_gold": "bundled"}), "openai/generator")


def test_a_batch_cascade_resumed_command_by_command_submits_each_call_once(batch_run, run_cli):
    server, fake, run = batch_run
    args = cascade_args(run, server, "--batch")
    models = []
    for _ in range(4):  # submit cheap; collect it, submit strong; collect; nothing left
        result = run_cli(*args)
        assert result.code == 0, result.err
        models.append(sorted({body["model"] for b in fake.batches.values() for _, body in b.lines}))
    assert models[0] == ["cheap"] and models[1] == ["cheap", "strong"]
    assert models[-1] == models[1]
    assert max(fake.requests_by_custom_id.values()) == 1
    rows = {row.seed_id: row for row in iter_runs([run])}
    assert rows["hesitant"].status == "kept" and all(r.verified for r in rows.values())


def test_recipe_from_run_keeps_the_levers_and_a_rerun_judges_nothing(
    run_cli, fake_server, generated, tmp_path
):
    import yaml

    from dvsynth.runs.dirs import recorded_validations

    args = cascade_args(
        generated, fake_server, "--judge-views", "generated", "--judge-protocol", "joint"
    )
    assert run_cli(*args, "--escalate-margin", "0.3").code == 0
    back = tmp_path / "back.yaml"
    result = run_cli("recipe", "from-run", generated, "-o", back)
    assert result.code == 0, result.err
    assert "escalate_api_base" in result.err  # the note: a run does not record it
    raw = yaml.safe_load(back.read_text())
    validation = raw["validation"]
    assert validation["judge_views"] == "generated"
    assert validation["judge_protocol"] == "joint"
    assert validation["escalate_to"] == STRONG and validation["escalate_margin"] == 0.3
    validation["judge_api_base"] = validation["escalate_api_base"] = fake_server.api_base
    before = len(fake_server.prompts)
    (recorded,) = recorded_validations([generated])
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert run_cli("run", again, "--quiet").code == 0
    assert len(fake_server.prompts) == before  # the same settings: nothing judged again
    assert recorded_validations([generated]) == [recorded]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--judge-protocol", "joint", "--judge-prompt", "{pointwise_copy}"],
            "--judge-prompt mine: --judge-protocol joint needs a template that uses",
        ),
        (
            ["--judge-prompt", "judge_joint.v1"],
            "--judge-protocol pointwise needs a template that uses {{ document }}",
        ),
    ],
)
def test_a_judge_template_of_the_other_protocol_is_refused_before_any_row(
    run_cli, fake_server, generated, tmp_path, extra, message
):
    from dvsynth.prompts import PROMPT_DIR

    mine = tmp_path / "mine.jinja"  # the bundled pointwise prompt under a name of its own
    mine.write_text((PROMPT_DIR / "judge.v1.jinja").read_text(), encoding="utf-8")
    extra = [str(mine) if e == "{pointwise_copy}" else e for e in extra]
    result = run_cli(*validate_args(generated, fake_server, *extra))
    assert result.code == 2 and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert judged_instructions(fake_server) == []


def test_gold_answers_bought_to_pick_the_margin_survive_a_kill(tmp_path):
    """They belong to no row, so no row's commit carries them: each is committed as it
    comes, and the rerun after a SIGKILL asks none of them again."""
    import sqlite3

    from dvsynth.evaluate.gold import BUNDLED_GOLD, read_gold
    from dvsynth.fakes.gold_judges import GoldJudges

    gold = tmp_path / "gold.jsonl"
    gold.write_text(BUNDLED_GOLD.read_text(encoding="utf-8"), encoding="utf-8")
    seeds = lever_seeds(tmp_path / "seeds.jsonl", bootstrap=False)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    with FakeLLMServer(latency=0.02) as server:
        GoldJudges(read_gold(gold)).install(server)
        generate = subprocess.run(
            [sys.executable, "-m", "dvsynth.cli", *generate_args(server, seeds, run)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert generate.returncode == 0, generate.stderr
        margin = ["--escalate-margin", "auto", "--gold", gold, "--target-precision", "0.99"]
        args = validate_args(
            run,
            server,
            "--escalate-to",
            "openai/gold-strong",
            "--escalate-api-base",
            server.api_base,
            *margin,
            "--concurrency",
            "2",
            judge="openai/gold-cheap",
        )
        server.prompts.clear()
        command = [sys.executable, "-m", "dvsynth.cli", *map(str, args)]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while len(server.prompts) < 30 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        asked_before = Counter(server.prompts)
        with sqlite3.connect(run / "dvsynth.sqlite") as db:
            (kept,) = db.execute("SELECT COUNT(*) FROM responses").fetchone()
        assert kept >= len(asked_before) - 2 * 2  # all but the calls in flight are saved
        subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        asked = Counter(server.prompts)
    again = sum(1 for key in asked_before if asked[key] > asked_before[key])
    assert again <= 2 * 2, again  # at most the calls in flight at the kill repeat


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target-precision", "0.5"], "--target-precision needs --escalate-to"),
        (["--gold", "bundled"], "--gold needs --escalate-to"),
        (
            ["--escalate-to", STRONG, "--escalate-margin", "0.2", "--gold", "bundled"],
            "leave them out",
        ),
        (["--escalate-to", STRONG, "--target-precision", "0.9"], "leave them out"),
        (["--escalate-to", STRONG, "--no-judge"], "leave out --no-judge"),
        (["--escalate-to", CHEAP], "the judge itself"),
    ],
)
def test_escalation_options_that_cannot_apply_are_refused_not_ignored(tmp_path, extra, message):
    """Found by the hostile pass: each was accepted and silently did nothing."""
    args = ["validate", str(tmp_path), "--judge-model", CHEAP, *extra]
    done = subprocess.run(
        [sys.executable, "-m", "dvsynth.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error:") and message in line, line
