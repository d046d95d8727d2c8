"""Read a FollowIR subset saved in mteb's current layout (`mteb/*InstructionRetrieval`),
for machines without the Hub: a copy made with `hf download` reads the same offline as
a copy of jhu-clsp's older files does.

mteb's layout is one folder per config, parquet (or jsonl) files in each:

    corpus/       _id (or id), title, text
    queries/      _id (or id) as <qid>-og and <qid>-changed, text [, instruction]
    instruction/  query-id (<qid>-og / <qid>-changed), instruction
    data/         query-id, corpus-id, score (the qrels: the `default` config; also
                  default/ or qrels/)
    qrel_diff/    query-id (<qid>), corpus-ids: the documents whose label changed
    top_ranked/   query-id (<qid>-og / <qid>-changed), corpus-ids: the candidates

mteb joins each query's text and its instruction as one query per id; the og and the
changed query of a qid share text and candidates, so they fold into one FollowIRQuery.
"""

from __future__ import annotations

from pathlib import Path

from dvsynth.errors import UserError

CONFIG_FOLDERS = {
    "corpus": ("corpus",),
    "queries": ("queries", "query"),
    "instruction": ("instruction",),
    "qrels": ("data", "default", "qrels"),
    "qrel_diff": ("qrel_diff",),
    "top_ranked": ("top_ranked",),
}
EXPECTED = "corpus/, queries/, instruction/, data/ (qrels), qrel_diff/, top_ranked/"


def is_mteb_layout(folder: Path) -> bool:
    return any((folder / sub).is_dir() for subs in CONFIG_FOLDERS.values() for sub in subs)


def _rows(folder: Path, config: str, required: bool = True) -> list[dict]:
    for sub in CONFIG_FOLDERS[config]:
        if (folder / sub).is_dir():
            break
    else:
        if not required:
            return []
        raise UserError(f"{folder}: no {CONFIG_FOLDERS[config][0]}/ (mteb layout: {EXPECTED})")
    files = sorted((folder / sub).glob("*.parquet"))
    if files:
        import pyarrow.parquet as pq

        return [row for f in files for row in pq.read_table(f).to_pylist()]
    files = sorted((folder / sub).glob("*.jsonl"))
    if not files:
        raise UserError(f"{folder / sub}: no .parquet or .jsonl files")
    from baselines.followir import _jsonl

    return [row for f in files for row in _jsonl(f)]


def _get(row: dict, keys: tuple[str, ...], where: str) -> str:
    for key in keys:
        if row.get(key) is not None:
            return str(row[key])
    raise UserError(f"{where}: a row lacks {' or '.join(keys)}")


def _split_id(qid: str, where: str) -> tuple[str, str]:
    base, _, which = qid.rpartition("-")
    if which not in ("og", "changed") or not base:
        raise UserError(f"{where}: query id {qid!r} does not end in -og or -changed")
    return base, which


def read_mteb_subset(folder: Path, name: str):
    from baselines.followir import FollowIRQuery, FollowIRSubset, ranked_corpus

    where = {c: str(folder / CONFIG_FOLDERS[c][0]) for c in CONFIG_FOLDERS}
    at = where["instruction"]
    instructions = {
        _get(r, ("query-id",), at): _get(r, ("instruction",), at)
        for r in _rows(folder, "instruction", required=False)
    }
    parts: dict[str, dict[str, tuple[str, str]]] = {}  # qid -> og/changed -> (text, instruction)
    for row in _rows(folder, "queries"):
        qid = _get(row, ("_id", "id"), where["queries"])
        base, which = _split_id(qid, where["queries"])
        instruction = row.get("instruction") or instructions.get(qid)
        if instruction is None:
            raise UserError(f"{folder}: query {qid} has no instruction (instruction/ or a column)")
        parts.setdefault(base, {})[which] = (_get(row, ("text",), where["queries"]), instruction)
    ranked: dict[str, dict[str, list[str]]] = {}
    for row in _rows(folder, "top_ranked"):
        base, which = _split_id(_get(row, ("query-id",), where["top_ranked"]), where["top_ranked"])
        ranked.setdefault(base, {})[which] = [str(d) for d in row["corpus-ids"]]
    top_ranked = {}
    for base, lists in ranked.items():
        og = lists.get("og", lists.get("changed", []))
        if set(lists.get("changed", og)) != set(og):
            raise UserError(f"{folder}: query {base} ranks other candidates for -og and -changed")
        top_ranked[base] = og
    qrels: dict[str, dict[str, dict[str, int]]] = {"og": {}, "changed": {}}
    for row in _rows(folder, "qrels"):
        base, which = _split_id(_get(row, ("query-id",), where["qrels"]), where["qrels"])
        doc = _get(row, ("corpus-id",), where["qrels"])
        qrels[which].setdefault(base, {})[doc] = int(float(_get(row, ("score",), where["qrels"])))
    changed = {
        _get(r, ("query-id",), where["qrel_diff"]): [str(d) for d in r["corpus-ids"]]
        for r in _rows(folder, "qrel_diff")
    }
    queries = {}
    for base in top_ranked:
        if set(parts.get(base, {})) != {"og", "changed"}:
            raise UserError(f"{folder}: query {base} needs both {base}-og and {base}-changed")
        (text, og), (text_changed, new) = parts[base]["og"], parts[base]["changed"]
        if text != text_changed:
            raise UserError(f"{folder}: query {base} has other text for -og and -changed")
        queries[base] = FollowIRQuery(text=text, instruction_og=og, instruction_changed=new)
    corpus = ranked_corpus(
        _rows(folder, "corpus"),
        lambda row: _get(row, ("_id", "id"), where["corpus"]),
        top_ranked,
        folder,
        "corpus/",
    )
    return FollowIRSubset(
        name=name,
        queries=queries,
        qrels_og=qrels["og"],
        qrels_changed=qrels["changed"],
        top_ranked=top_ranked,
        corpus=corpus,
        source=str(folder),
        changed=changed,
    )
