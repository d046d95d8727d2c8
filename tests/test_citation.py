"""The paper is cited rightly wherever dvsynth cites it: README, recipes, both cards."""

from __future__ import annotations

import re
from pathlib import Path

from dvsynth.publish.card import PAPER_BIBTEX

ROOT = Path(__file__).resolve().parents[1]
#: The paper's fields, as its arXiv record gives them.
FIELDS = {
    "title": "Dual-View Training for Instruction-Following Information Retrieval",
    "author": "Mehta, Aman and Zhao, Fuheng and Yu, Puxuan and Zeng, Q. and Samdani, R.",
    "year": "2026",
    "eprint": "2604.18845",
    "archivePrefix": "arXiv",
    "primaryClass": "cs.IR",
}
BIBTEX = PAPER_BIBTEX
WRONG = ("Zeng et al", "Zeng and Yu", "zeng2026")


def test_the_citation_is_the_papers():
    assert PAPER_BIBTEX.startswith("@article{mehta2026dual,\n") and PAPER_BIBTEX.endswith("\n}")
    found = dict(re.findall(r"^  (\w+)\s*= \{(.*)\},?$", PAPER_BIBTEX, re.MULTILINE))
    assert found == FIELDS


def test_readme_recipes_and_templates_carry_no_wrong_citation():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert BIBTEX in readme and "Mehta et al., 2026" in readme
    files = [ROOT / "README.md", *(ROOT / "recipes").glob("*.yaml")]
    files += (ROOT / "dvsynth" / "publish" / "dataset_card").glob("*.jinja")
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not any(w in text for w in WRONG), path


def test_both_cards_carry_the_citation(tmp_path):
    from dvsynth.config import CardOptions
    from dvsynth.publish.gold_dataset import export_gold, read_sources

    options = CardOptions(license="apache-2.0", version="1.0.0", repo="me/gold")
    export_gold(read_sources(["bundled"]), tmp_path / "gold", options, baseline=False)
    gold = (tmp_path / "gold" / "README.md").read_text(encoding="utf-8")
    assert BIBTEX in gold and "Zeng and Yu" not in gold


def test_the_run_card_carries_the_citation(run_cli, fake_server, tmp_path):
    from tests.conftest import generate_args, validate_args
    from tests.test_export_folder import _seeds

    run = tmp_path / "run"
    assert run_cli(*generate_args(fake_server, _seeds(tmp_path / "s.jsonl", 4), run)).code == 0
    assert run_cli(*validate_args(run, fake_server)).code == 0
    out = tmp_path / "ds"
    assert run_cli("export", str(run), "--out", str(out), "--license", "mit").code == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert BIBTEX in card and "Mehta et al., 2026" in card and "Zeng et al" not in card
