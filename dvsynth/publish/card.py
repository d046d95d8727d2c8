"""The dataset card: Hub metadata (validated offline) plus a body from a Jinja template.

Built with huggingface_hub's `DatasetCard` so the YAML is what the Hub expects. The
metadata is checked here against the lists the Hub and `datasets` use (licenses,
language codes, size categories, the `configs:` block) because the Hub's own validator
is an online call, made only at push time. Nothing time-dependent goes in, so the same
runs give the same card.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from dvsynth import __version__
from dvsynth.config import CardOptions
from dvsynth.errors import UserError
from dvsynth.publish.export import ExportReport, configs_metadata
from dvsynth.records import DualView
from dvsynth.runs.dirs import recorded_validations
from dvsynth.runs.stats import format_cost
from dvsynth.runs.store import read_manifest

TEMPLATE = Path(__file__).resolve().parent / "dataset_card" / "README.md.jinja"
HISTORY_KEY = "dvsynth_versions"
RECIPE_KEY = "dvsynth_recipe_sha256"

#: License identifiers the Hub accepts in a card's `license:` field.
HUB_LICENSES = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m
    bigscience-bloom-rail-1.0 bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd
    bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
    cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0
    cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0
    cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl
    ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0
    gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl
    apple-ascl apple-amlr mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1
    ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license llama2 llama3 llama3.1
    llama3.2 llama3.3 llama4 gemma unknown other""".split()
)
EXAMPLES = 3  # pairs shown in the card
#: The paper dvsynth implements, as every card (and the README) cites it.
PAPER_BIBTEX = """@article{mehta2026dual,
  title         = {Dual-View Training for Instruction-Following Information Retrieval},
  author        = {Mehta, Aman and Zhao, Fuheng and Yu, Puxuan and Zeng, Q. and Samdani, R.},
  year          = {2026},
  eprint        = {2604.18845},
  archivePrefix = {arXiv},
  primaryClass  = {cs.IR}
}"""
TAGS = ["instruction-following", "information-retrieval", "dual-view", "synthetic", "dvsynth"]


def release_tag(version: str) -> str:
    """The revision a card tells readers to load: the tag `push` makes (vX.Y.Z), or
    main for a version that is no release."""
    return f"v{version}" if version[:1].isdigit() else "main"


def check_license(license_id: str) -> str:
    if license_id not in HUB_LICENSES:
        raise UserError(
            f"--license: '{license_id}' is not a Hub license id (e.g. apache-2.0, cc-by-4.0, "
            "mit, other); the seeds keep their own terms, so choose one compatible with them"
        )
    return license_id


def size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ):
        if n < limit:
            return name
    return "1B<n<10B"


def _datasets_resource(name: str) -> Any:
    return json.loads(resources.files("datasets.utils.resources").joinpath(name).read_text())


def check_metadata(card: DatasetCard) -> None:
    """The checks the Hub makes on a dataset card's YAML, offline; ValueError if one fails."""
    from datasets.utils.metadata import MetadataConfigs

    data = card.data.to_dict()
    if data.get("license") not in HUB_LICENSES:
        raise ValueError(f"license {data.get('license')!r} is not a Hub license id")
    languages = _datasets_resource("languages.json")
    for code in data.get("language") or []:
        if code not in languages:
            raise ValueError(f"language {code!r} is not a known language code")
    sizes = _datasets_resource("size_categories.json")
    for size in data.get("size_categories") or []:
        if size not in sizes:
            raise ValueError(f"size category {size!r} is not one of {sizes}")
    if "text-retrieval" not in (data.get("task_categories") or []):
        raise ValueError("task_categories must include text-retrieval")
    configs = MetadataConfigs.from_dataset_card_data(card.data)  # raises on a bad block
    if not configs:
        raise ValueError("no configs: block")


def _generators(run_dirs: Sequence[Path]) -> tuple[list[dict[str, Any]], dict[str, str], list]:
    generators, prompts, seeds = [], {}, []
    for run in run_dirs:
        manifest = read_manifest(run)
        config = manifest.get("config", {})
        entry = {
            "model": config.get("model"),
            "temperature": config.get("temperature"),
            "max_tokens": config.get("max_tokens"),
        }
        if entry not in generators:
            generators.append(entry)
        prompts.update(manifest.get("prompts", {}))
        source = manifest.get("seed_source", {})
        name = source.get("id") or Path(str(source.get("path", "seeds"))).name
        if name not in seeds:
            seeds.append(name)
    return generators, prompts, seeds


def _validation(run_dirs: Sequence[Path], dedup: str | None = None) -> tuple[str, dict[str, str]]:
    """The validation the runs recorded, with `dedup`, the removal the export applied."""
    recorded = [v for v in recorded_validations(run_dirs) if v is not None]
    if not recorded:
        return "none (not validated with `dvsynth validate`)", {}
    parsed = recorded[0]
    steps = parsed.get("steps") or []
    parts = [step["describe"] for step in steps]
    if not any(step["name"] == "judge" for step in steps):
        parts.append("no LLM judge")
    parts.append(dedup or "no duplicate removal")
    prompts = {
        step["settings"]["prompt"]: step["settings"]["prompt_sha256"]
        for step in steps
        if "prompt_sha256" in step.get("settings", {})
    }
    return "; ".join(parts), prompts


def _examples(rows: Sequence[DualView]) -> list[dict[str, str]]:
    return [
        {
            "query": row.query,
            "instruction_a": row.instruction_a or "",
            "instruction_b": row.instruction_b or "",
            "doc_a": _clip(row.doc_a.text),
            "doc_b": _clip(row.doc_b.text),
        }
        for row in rows
    ]


def _clip(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def build_card(
    run_dirs: Sequence[Path],
    report: ExportReport,
    options: CardOptions,
    stats: dict[str, Any],
    examples: Sequence[DualView] = (),
    recipe_sha256: str | None = None,
) -> DatasetCard:
    """The card for an export; `stats` are the counts (`StatsCollector`) of the rows it
    holds, `examples` some of its verified pairs (the license was checked by
    `check_license` before anything was written); `recipe_sha256`: the recipe file
    published beside the data, if the export has one."""
    generators, prompts, seeds = _generators(run_dirs)
    validation_text, judge_prompts = _validation(run_dirs, report.dedup)
    pairs = sum(report.rows.get("pairs", {}).values())
    triplets = sum(report.rows.get("triplets", {}).values())
    history = [h for h in options.history if h.get("version") != options.version]
    history.append({"version": options.version, "pairs": pairs, "triplets": triplets})
    card_data = DatasetCardData(
        license=options.license,
        language=[options.language],
        task_categories=["text-retrieval"],
        size_categories=[size_category(pairs)],
        pretty_name=options.pretty_name or f"{options.repo.split('/')[-1]} (dvsynth dual-view)",
        source_datasets=[options.seed_dataset] if options.seed_dataset else None,
        tags=TAGS,
        configs=configs_metadata(report),
        **{HISTORY_KEY: history},
        **({RECIPE_KEY: recipe_sha256} if recipe_sha256 else {}),
    )
    describe = {
        "pairs": "one row per pair: query, both instructions and documents, verdicts, provenance",
        "triplets": "two rows per pair (view a, view b, adjacent): anchor, positive, negative, "
        "negatives (the seed's other negatives verified for that view), stage",
        "rejected": "rejected rows with their reasons, for audit",
        "audit": "the labels people gave in the blind audit (one row per judgment; "
        "reviewers as anonymous ids), with the intended label and the judge's",
    }
    config_rows = [
        {
            "name": config,
            "counts": ", ".join(f"{split} {n:,}" for split, n in splits.items()),
            "what": describe[config],
        }
        for config, splits in report.rows.items()
    ]
    modes = report.modes  # of the pairs exported, not of every row the runs hold
    meaning = {
        "reverse": "reverse (the seed's instruction is view a)",
        "bootstrap": "bootstrap (both instructions written from a plain triple)",
    }
    modes_text = ", ".join(f"{n:,} {meaning[m]}" for m, n in sorted(modes.items()))
    seed_text = ", ".join(f"`{s}`" for s in seeds)
    if options.seed_dataset:
        seed_text += f" (from [{options.seed_dataset}](https://huggingface.co/datasets/{options.seed_dataset}))"
    card = DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        title=card_data.pretty_name,
        version=options.version,
        tag=release_tag(options.version),
        repo=options.repo,
        dvsynth_version=__version__,
        modes_text=modes_text,
        config_rows=config_rows,
        seed_text=seed_text,
        generators=generators,
        prompts={**prompts, **judge_prompts},
        validation_text=validation_text,
        stats=stats,
        reasons=list(stats["reasons"].items())[:12],
        agreement=stats["judge_agreement"],
        lengths=stats["instruction_words_kept"],
        cost={
            "generator": format_cost(
                stats["generator"]["cost_usd"], stats["generator"]["unpriced_rows"]
            ),
            "judge": format_cost(stats["judge"]["cost_usd"], stats["judge"]["unpriced_rows"])
            if stats["judge"]["prompt_tokens"]
            else "no judge calls",
            "judges": {
                model: f"{format_cost(spent['cost_usd'], spent['unpriced_rows'])} for "
                f"{spent['calls']:,} calls"
                for model, spent in stats.get("judges", {}).items()
            }
            if len(stats.get("judges", {})) > 1
            else {},
            "batch_judges": {
                model: f"{format_cost(spent['cost_usd'], spent['unpriced'])} for "
                f"{spent['answered']:,} answers"
                for model, spent in stats.get("batch_by_model", {}).get("validate", {}).items()
            }
            if len(stats.get("batch_by_model", {}).get("validate", {})) > 1
            else {},
            "batch": {
                stage: f"{format_cost(spent['cost_usd'], spent['unpriced'])} for "
                f"{spent['answered']:,} answers"
                for stage, spent in stats.get("batch", {}).items()
                if spent["answered"]
            },
        },
        examples=_examples(examples),
        exported={"pairs": pairs, "rejected": sum(report.rows.get("rejected", {}).values())},
        paper_citation=PAPER_BIBTEX,
        judged=bool(stats["judge_agreement"]["pairs_judged"]),
        license=options.license,
        seed_license_note=(
            "The queries and documents come from the seed data"
            + (f" ({options.seed_dataset})" if options.seed_dataset else "")
            + " and remain under its terms (MS MARCO, for example, is for non-commercial "
            "research use); check them before you use or redistribute this dataset."
        ),
        seed_citation=options.seed_citation,
        seed_dataset=options.seed_dataset,
        history=history,
        unverified=stats["pending_validation"],
        unverified_stages=sorted(stats["unverified_by_stage"].items()),
        negatives=stats["other_negatives_kept"],
        recipe_sha256=recipe_sha256,
        audits=audit_sections(stats.get("audit") or {}, options.credit_reviewers),
        escalation=stats.get("escalation", {}),
        view_a_unjudged=stats.get("view_a_unjudged", 0),
    )
    check_metadata(card)
    return card


def _share_text(share: dict[str, Any] | None) -> str | None:
    if not share or not share["n"]:
        return None
    low, high = share["wilson95"]
    return (
        f"{100 * share['share']:.1f}% ({share['count']} of {share['n']}; Wilson 95% interval "
        f"{100 * low:.1f}-{100 * high:.1f}%)"
    )


def audit_sections(audits: dict[str, Any], credit: bool) -> list[dict[str, Any]]:
    """Each run's audit (`view.audit.summaries`) as the card's Audit section shows it."""
    out = []
    for run, audit in audits.items():
        names = audit["reviewers"]
        count = f"{len(names)} reviewer{'s' * (len(names) != 1)}"
        out.append(
            {
                "run": Path(run).name,
                "sample": audit["sample"],
                "reviewers": f"{count}: {', '.join(names)}" if credit else count,
                "dates": audit["answered"],
                "lines": _audit_lines(audit),
            }
        )
    return out


def _audit_lines(audit: dict[str, Any]) -> list[str]:
    """The Audit section's bullets: only the figures the answers define."""
    pooled = audit["pooled"]
    flip = _share_text(pooled["true_flip"])
    lines = [
        f'True flip (all four labels as intended; "can\'t tell" counts against): {flip}'
        if flip
        else "No sampled pair has been answered in full yet."
    ]
    for view, share in pooled["view_accuracy"].items():
        if _share_text(share):
            lines.append(f"{view} accuracy (both documents as intended): {_share_text(share)}")
    if _share_text(pooled["rejected_found_good"]):
        lines.append(
            "Judge-rejected pairs people found good (false rejects): "
            + _share_text(pooled["rejected_found_good"])
        )
    kappas = [
        f"`{judgment}` {k['kappa']:.2f} (n={k['n']})"
        for judgment, k in pooled["judge_kappa"].items()
        if k["kappa"] is not None
    ]
    if kappas:
        lines.append("The judge's agreement with people, Cohen's kappa: " + ", ".join(kappas))
    for pair in audit["reviewer_agreement"]:
        if pair["kappa"] is not None:
            lines.append(
                f"Agreement between two reviewers, Cohen's kappa: {pair['kappa']:.2f} over "
                f"{pair['labels']} labels"
            )
    return lines
