"""Train and evaluate every arm, then one comparison table: the paper's head-to-head.

    python baselines/run_arms.py --data DATA --out DIR [--arms base orig dv dv-add]
        [--rows N] [--mix FILE_OR_HUB_ID:SHARE] [--model NAME] [train options]
        [-- evaluate.py options, e.g. --data-dir COPIES --benchmark all]

Each arm is `train.py` into DIR/models/<arm> (`base`: the untrained model), then
`evaluate.py` into DIR/eval/<arm>; DIR/arms.json and DIR/arms.md hold each arm's rows,
FollowIR p-MRR, general nDCG@10 (NanoBEIR), the other benchmarks' headline scores and
the deltas to `orig`. Rerun after a kill: an arm whose model and results are complete
for the same settings is not trained or evaluated again; other settings in the same
DIR are refused with one line.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines import evaluate as evaluate_script  # noqa: E402
from baselines.cli import Parser  # noqa: E402
from baselines.pairs import ARMS, load_pairs  # noqa: E402
from baselines.train import TrainConfig, add_options, config_from, train  # noqa: E402
from dvsynth.errors import UserError  # noqa: E402

RECORD = "dvsynth_train.json"


def parser() -> Parser:
    p = Parser(description=__doc__.split("\n\n")[0])
    add_options(p)
    p.add_argument("--arms", nargs="+", choices=["base", *ARMS], default=["orig", "dv"])
    return p


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def trained_model(pairs, config: TrainConfig, out: Path) -> tuple[Path, dict, bool]:
    """The arm's model folder, its record and whether it was trained now. A complete
    model (its record written last) with the same settings is reused."""
    record_path = out / RECORD
    wanted = json.loads(json.dumps(asdict(config)))
    if record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if {k: record.get(k) for k in wanted} != wanted:
            raise UserError(
                f"{out}: trained with other settings ({RECORD}); remove it or use another --out"
            )
        return out, record, False
    train(pairs, config, out, quiet=True)
    return out, json.loads(record_path.read_text(encoding="utf-8")), True


def evaluated(model: str | None, eval_argv: list[str], out: Path, trust: bool) -> dict:
    """evaluate.py's report for the model, reused when OUT holds one for the same
    model and options."""
    argv = ["--out", str(out), *eval_argv]
    if model:
        argv += ["--model", model]
    if trust:
        argv.append("--trust-remote-code")
    stamp = out / "run_arms.json"
    if (out / "results.json").is_file() and stamp.is_file():
        if json.loads(stamp.read_text(encoding="utf-8")) == argv:
            return json.loads((out / "results.json").read_text(encoding="utf-8"))
    report = evaluate_script.evaluate(evaluate_script.parser().parse_args(argv))
    evaluate_script.write_report(report, out)
    stamp.write_text(json.dumps(argv) + "\n", encoding="utf-8")
    return report


def headline(report: dict) -> dict:
    """The comparison's columns from one arm's results.json summary."""
    summary = report.get("summary", {"instruction": {}, "general": {}})
    row = {f"{k}": v["score"] for k, v in summary["instruction"].items()}
    general = summary["general"]
    row["general_ndcg_at_10"] = general.get("nano_beir", {}).get("score")
    row |= {f"general:{k}": v["score"] for k, v in general.items() if k != "nano_beir"}
    gold = report.get("gold")
    if gold:
        row["gold_dual_accuracy"] = gold["summary"].get("dual_accuracy")
    return row


def with_deltas(rows: dict[str, dict]) -> dict[str, dict]:
    """Each arm's scores and, when there is an `orig` arm, each score minus orig's."""
    base = rows.get("orig")
    out = {}
    for arm, row in rows.items():
        out[arm] = dict(row)
        if base is None:
            continue
        for key, value in row["scores"].items():
            ref = base["scores"].get(key)
            if isinstance(value, int | float) and isinstance(ref, int | float):
                out[arm].setdefault("delta_to_orig", {})[key] = round(value - ref, 2)
    return out


def markdown(table: dict) -> str:
    keys = list(dict.fromkeys(k for row in table["arms"].values() for k in row["scores"]))
    first = ["followir", "general_ndcg_at_10"]
    keys = [k for k in first if k in keys] + [k for k in keys if k not in first]
    names = {"followir": "FollowIR p-MRR", "general_ndcg_at_10": "NanoBEIR nDCG@10"}
    head = ["arm", "rows (general)", *(names.get(k, k) for k in keys)]
    if "orig" in table["arms"]:
        head += [f"Δ {names.get(k, k)}" for k in keys[:2]]
    lines = [f"# Arms: {table['model']} on {table['data']}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, row in table["arms"].items():
        cells = [arm, f"{row['rows']} ({row['general_rows']})"]
        cells += ["" if row["scores"].get(k) is None else str(row["scores"][k]) for k in keys]
        if "orig" in table["arms"]:
            deltas = row.get("delta_to_orig", {})
            cells += [f"{deltas[k]:+.2f}" if k in deltas else "" for k in keys[:2]]
        lines.append("| " + " | ".join(cells) + " |")
    note = "Benchmark scores x100, gold accuracies as fractions; details: eval/<arm>/results.md."
    lines += ["", note, ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    own, eval_argv = split_argv(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(own)
    eval_argv = eval_argv or []
    for banned in ("--out", "--model", "--trust-remote-code"):
        if banned in eval_argv:
            print(f"error: {banned} after --: run_arms.py sets it per arm", file=sys.stderr)
            return 2
    evaluate_script.parser().parse_args(["--out", str(args.out), *eval_argv])  # fail fast
    try:
        config = config_from(args)
        mix = config.mix
        trained_arms = [a for a in args.arms if a != "base"]
        pairs = load_pairs(args.data, args.split, args.revision)[: args.max_pairs]
        if trained_arms and not pairs:
            raise UserError(f"--data {args.data}: no training pairs")
        rows: dict[str, dict] = {}
        for arm in dict.fromkeys(args.arms):
            started = time.monotonic()
            record = {"rows": 0, "general_rows": 0}
            model = args.model
            if arm != "base":
                folder, record, _ = trained_model(
                    pairs, replace(config, arm=arm), args.out / "models" / arm
                )
                model = str(folder)
            trust = args.trust_remote_code
            report = evaluated(model, eval_argv, args.out / "eval" / arm, trust)
            rows[arm] = {
                "rows": record["rows"],
                "general_rows": record.get("general_rows", 0),
                "scores": headline(report),
                "seconds": round(time.monotonic() - started, 1),
            }
            print(f"{arm}: {rows[arm]['scores']}", flush=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = {
        "model": args.model or "all-MiniLM-L6-v2 (bundled)",
        "data": args.data,
        "mix": {"source": mix.source, "share": mix.share} if mix else None,
        "arms": with_deltas(rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "arms.json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    (args.out / "arms.md").write_text(markdown(table), encoding="utf-8")
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
