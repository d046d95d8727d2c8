"""Export a validated run as a dataset folder, load it back offline, and push it (mocked)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

from dvsynth.publish.card import check_metadata
from dvsynth.publish.export import split_of
from tests.conftest import generate_args, validate_args, write_jsonl

TOKEN = "hf_testtokenABCDEFGHIJKLMNOPQRSTUVWXYZ0123"


@pytest.fixture(scope="module")
def validated_run(tmp_path_factory):
    """A run of 60 seeds (kept, judge-rejected and duplicate rows), validated once."""
    from dvsynth.testing import FakeLLMServer

    root = tmp_path_factory.mktemp("publish")
    rows = []
    for i in range(60):
        pos, neg = f"kwp{i} passage about topic {i}", f"kwn{i} other passage {i}"
        if i % 10 == 3:
            neg += f" kwp{i}"  # view a admits doc_b: the judge rejects it
        rows.append(
            {
                "id": f"s{i:02d}",
                "query": f"query number {i % 45}",  # some queries repeat
                "positive": pos,
                "negative": neg,
                "other_negatives": [f"unrelated passage {i}"],
            }
        )
    seeds = write_jsonl(root / "seeds.jsonl", rows)
    run = root / "run"
    with FakeLLMServer() as server:
        cli = [sys.executable, "-m", "dvsynth.cli"]
        assert subprocess.run([*cli, *generate_args(server, seeds, run)]).returncode == 0
        assert subprocess.run([*cli, *validate_args(run, server)]).returncode == 0
    return run


def export(run_cli, run, out, *extra):
    return run_cli(
        "export",
        str(run),
        "--out",
        str(out),
        "--license",
        "cc-by-4.0",
        "--val-share",
        "0.25",
        *extra,
    )


def test_export_loads_offline_for_every_config_and_split(
    run_cli, validated_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "dataset"
    result = export(run_cli, validated_run, out)
    assert result.code == 0, result.err
    loaded = {
        config: datasets.load_dataset(str(out), config, cache_dir=str(tmp_path / "cache"))
        for config in ("pairs", "triplets", "rejected")
    }
    pairs, triplets, rejected = loaded["pairs"], loaded["triplets"], loaded["rejected"]
    assert set(pairs) == {"train", "validation"} and set(triplets) == {"train", "validation"}
    n_pairs = sum(len(pairs[s]) for s in pairs)
    assert sum(len(triplets[s]) for s in triplets) == 2 * n_pairs
    assert n_pairs + sum(len(rejected[s]) for s in rejected) == 60
    # No query in both splits, and the split is the one split_of assigns.
    for config in ("pairs", "rejected"):
        queries = {s: set(loaded[config][s]["query"]) for s in loaded[config]}
        if len(queries) == 2:
            assert not queries["train"] & queries["validation"]
        for split, found in queries.items():
            assert all(split_of(q, 0.25) == split for q in found)
    # Both views of a pair are adjacent, labels swapped, anchor = query + instruction.
    train = triplets["train"]
    pair = {r["pair_id"]: r for r in pairs["train"]}
    for i in range(0, len(train), 2):
        a, b = train[i], train[i + 1]
        assert a["pair_id"] == b["pair_id"] and (a["view"], b["view"]) == ("a", "b")
        assert (a["positive"], a["negative"]) == (b["negative"], b["positive"])
        row = pair[a["pair_id"]]
        assert a["anchor"] == f"{row['query']} {row['instruction_a']}"
        assert b["anchor"] == f"{row['query']} {row['instruction_b']}"
        assert a["negatives"] == [f"unrelated passage {int(row['seed_id'][1:])}"]
    verdicts = [v for v in pairs["train"][0]["verdicts"] if v["doc"] != "other"]
    assert len(verdicts) == 4 and {v["view"] for v in verdicts} == {"a", "b"}
    reasons = {r for row in rejected["train"] for r in row["reasons"]}
    assert "judge:view_a:doc_b_relevant" in reasons


def test_baselines_read_an_export_folder(run_cli, validated_run, tmp_path, monkeypatch):
    from baselines.pairs import load_pairs

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "dataset"
    assert export(run_cli, validated_run, out).code == 0
    train = datasets.load_dataset(str(out), "pairs", split="train")
    pairs = load_pairs(str(out), "train")
    assert sorted(p.pair_id for p in pairs) == sorted(train["pair_id"])
    row = {r["pair_id"]: r for r in train}[pairs[0].pair_id]
    assert pairs[0].a.anchor == f"{row['query']} {row['instruction_a']}"
    assert (pairs[0].a.positive, pairs[0].a.negative) == (pairs[0].b.negative, pairs[0].b.positive)
    assert len(load_pairs(str(out), "validation")) + len(pairs) == len(
        datasets.load_dataset(str(out), "pairs", split="train+validation")
    )


def test_same_run_exports_the_same_bytes(run_cli, validated_run, tmp_path):
    digests = []
    for name in ("one", "two"):
        out = tmp_path / name
        assert export(run_cli, validated_run, out).code == 0
        digests.append(
            {
                str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*"))
                if p.is_file()
            }
        )
    assert digests[0] == digests[1] and len(digests[0]) >= 6


def test_card_metadata_validates_and_says_what_it_must(run_cli, validated_run, tmp_path):
    out = tmp_path / "dataset"
    extra = ["--seed-dataset", "microsoft/ms_marco", "--version", "1.0.0", "--repo", "me/dv"]
    assert export(run_cli, validated_run, out, *extra).code == 0
    card = DatasetCard.load(out / "README.md")
    check_metadata(card)
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["task_categories"] == ["text-retrieval"]
    assert data["size_categories"] == ["n<1K"] and data["source_datasets"] == ["microsoft/ms_marco"]
    assert {c["config_name"] for c in data["configs"]} == {"pairs", "triplets", "rejected"}
    text = card.text
    for needle in (
        "polarity reversal",
        "bootstrap.v2",
        "judge.v1",
        "openai/fake",
        "openai/judge",
        "| judge |",
        "2604.18845",
        "microsoft/ms_marco",
        "Limitations",
        "load_dataset(",
        'revision="v1.0.0"',
        "| 1.0.0 |",
        "**Query:**",
    ):
        assert needle in text, needle
    bad = DatasetCard(str(card).replace("license: cc-by-4.0", "license: made-up"))
    with pytest.raises(ValueError, match="license"):
        check_metadata(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--license", "made-up"], "--license: 'made-up' is not a Hub license id"),
        (["--license", "mit", "--val-share", "1.5"], "--val-share: 1.5"),
    ],
)
def test_bad_export_options_are_one_line(run_cli, validated_run, tmp_path, args, message):
    result = run_cli("export", str(validated_run), "--out", str(tmp_path / "o"), *args)
    assert result.code == 2 and message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_export_refuses_a_folder_with_other_files(run_cli, validated_run, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = export(run_cli, validated_run, out)
    assert result.code == 2 and "not a dvsynth export" in result.err
    assert (out / "notes.txt").read_text() == "keep me"


@dataclass
class FakeRef:
    name: str


@dataclass
class FakeBranch:
    name: str
    target_commit: str


@dataclass
class FakeRefs:
    tags: list
    branches: list = field(default_factory=list)


@dataclass
class FakeCommit:
    oid: str


def _http_error(status: int, message: str = ""):
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    response = httpx.Response(status, request=httpx.Request("POST", "https://huggingface.co/api"))
    return HfHubHTTPError(message or f"{status} from the Hub", response=response)


def _repo_file(path: str, data: bytes):
    """The tree entry the Hub lists for a file: LFS (sha256) for parquet, else a git blob."""
    from huggingface_hub.hf_api import RepoFile

    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    if not path.endswith(".parquet"):
        return RepoFile(path=path, size=len(data), oid=blob)
    lfs = {"size": len(data), "oid": hashlib.sha256(data).hexdigest(), "pointerSize": 130}
    return RepoFile(path=path, size=len(data), oid=blob, lfs=lfs)


class FakeHfApi:
    """Records the HfApi calls push makes; the Hub itself is never reached.

    It keeps the files its commits add (so a rerun sees them at the head), moves the head
    on each commit, and can fail the next `tag_failures` tags or refuse commits with
    `commit_status` (412: the head moved).
    """

    def __init__(
        self,
        tags=(),
        files=(),
        card: Path | None = None,
        head: str | None = "0" * 40,
        tag_failures: int = 0,
        commit_status: int | None = None,
    ):
        self.tags = [FakeRef(t) for t in tags]
        self.files = list(files)
        self.card = card
        self.head = head  # None: the repo does not exist (404)
        self.tree = {path: _repo_file(path, b"old " + path.encode()) for path in self.files}
        self.contents: dict[str, bytes] = {}
        self.tag_failures = tag_failures
        self.commit_status = commit_status
        self.commits = 0
        self.calls: list[tuple] = []

    def list_repo_refs(self, repo_id, repo_type=None):
        self.calls.append(("list_repo_refs", repo_id))
        if self.head is None:
            raise _http_error(404, "Repository Not Found")
        return FakeRefs(self.tags, [FakeBranch("main", self.head)])

    def list_repo_files(self, repo_id, repo_type=None):
        return self.files

    def list_repo_tree(self, repo_id, recursive=False, revision=None, repo_type=None):
        assert revision == self.head and recursive
        return list(self.tree.values())

    def hf_hub_download(self, repo_id, filename, repo_type=None, revision=None):
        if filename in self.contents:
            path = Path(tempfile.mkdtemp()) / filename
            path.write_bytes(self.contents[filename])
            return str(path)
        if self.card is None:
            raise FileNotFoundError(filename)
        return str(self.card)

    def create_repo(self, repo_id, repo_type=None, private=None, exist_ok=False):
        self.calls.append(("create_repo", repo_id, repo_type, private))

    def create_commit(
        self, repo_id, operations, commit_message, repo_type=None, parent_commit=None
    ):
        operations = list(operations)
        self.calls.append(("create_commit", repo_id, operations, commit_message, parent_commit))
        if self.commit_status:
            raise _http_error(self.commit_status, "A commit has happened since")
        for op in operations:
            if type(op).__name__ == "CommitOperationDelete":
                self.tree.pop(op.path_in_repo, None)
                continue
            data = Path(op.path_or_fileobj).read_bytes()
            self.tree[op.path_in_repo] = _repo_file(op.path_in_repo, data)
            self.contents[op.path_in_repo] = data
        self.commits += 1
        self.head = "abc123" if self.commits == 1 else f"abc123-{self.commits}"
        return FakeCommit(self.head)

    def create_tag(self, repo_id, tag, tag_message=None, revision=None, repo_type=None):
        self.calls.append(("create_tag", repo_id, tag, revision))
        if self.tag_failures:
            self.tag_failures -= 1
            raise _http_error(502, "Bad Gateway")
        self.tags.append(FakeRef(tag))


@pytest.fixture
def fake_api(monkeypatch):
    holder = {}

    def install(api):
        import huggingface_hub

        holder["api"] = api
        monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: api)
        return api

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return install


def push_args(run, tmp_path, *extra):
    return [
        "push",
        str(run),
        "--repo",
        "me/dual-view",
        "--version",
        "1.2.0",
        "--license",
        "cc-by-4.0",
        "--out",
        str(tmp_path / "export"),
        *extra,
    ]


def test_push_makes_one_commit_and_one_tag(run_cli, validated_run, tmp_path, fake_api):
    api = fake_api(FakeHfApi(files=["pairs/train-00007.parquet", "README.md", "other.txt"]))
    result = run_cli(*push_args(validated_run, tmp_path, "--private"))
    assert result.code == 0, result.err
    names = [c[0] for c in api.calls]
    assert names == ["list_repo_refs", "create_repo", "create_commit", "create_tag"]
    _, repo, repo_type, private = api.calls[1]
    assert (repo, repo_type, private) == ("me/dual-view", "dataset", True)
    operations = api.calls[2][2]
    added = {op.path_in_repo for op in operations if type(op).__name__ == "CommitOperationAdd"}
    deleted = {op.path_in_repo for op in operations if type(op).__name__ == "CommitOperationDelete"}
    assert "README.md" in added and "triplets/train-00000.parquet" in added
    assert "pairs/train-00000.parquet" in added
    assert deleted == {"pairs/train-00007.parquet"}  # stale shard; other files untouched
    assert api.calls[3] == ("create_tag", "me/dual-view", "v1.2.0", "abc123")
    assert "revision='v1.2.0'" in result.out
    _assert_no_token_anywhere(tmp_path, result)


def test_push_refuses_an_existing_version(run_cli, validated_run, tmp_path, fake_api):
    api = fake_api(FakeHfApi(tags=["v1.2.0"]))
    result = run_cli(*push_args(validated_run, tmp_path))
    assert result.code == 2
    assert "already has tag v1.2.0" in result.err
    assert [c[0] for c in api.calls] == ["list_repo_refs"]


def test_push_keeps_the_version_history(run_cli, validated_run, tmp_path, fake_api):
    previous = tmp_path / "previous.md"
    previous.write_text(
        "---\nlicense: mit\ndvsynth_versions:\n- version: 1.0.0\n  pairs: 7\n"
        "  triplets: 14\n---\nold card\n"
    )
    fake_api(FakeHfApi(card=previous))
    assert run_cli(*push_args(validated_run, tmp_path)).code == 0
    card = DatasetCard.load(tmp_path / "export" / "README.md")
    versions = [v["version"] for v in card.data.to_dict()["dvsynth_versions"]]
    assert versions == ["1.0.0", "1.2.0"]
    assert "| 1.0.0 | 7 | 14 |" in card.text


def test_dry_run_prints_the_plan_and_writes_and_uploads_nothing(
    run_cli, validated_run, tmp_path, fake_api
):
    api = fake_api(FakeHfApi())
    result = run_cli(*push_args(validated_run, tmp_path, "--dry-run"))
    assert result.code == 0, result.err
    assert api.calls == []
    assert "would commit: add README.md" in result.out and "would tag v1.2.0" in result.out
    assert "would commit: add triplets/train-00000.parquet" in result.out
    assert not (tmp_path / "export").exists()  # built in a temporary folder, removed
    _assert_no_token_anywhere(tmp_path, result)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--version", "1.2"], "--version: '1.2' is not X.Y.Z"),
        (["--repo", "no-slash"], "--repo: 'no-slash' is not ORG/NAME"),
    ],
)
def test_bad_push_targets(run_cli, validated_run, tmp_path, fake_api, args, message):
    fake_api(FakeHfApi())
    base = push_args(validated_run, tmp_path)
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[base.index(flag) + 1] = value
    result = run_cli(*base)
    assert result.code == 2 and message in result.err


def test_a_rejected_token_is_one_line_without_the_token(run_cli, validated_run, tmp_path, fake_api):
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    class Refusing(FakeHfApi):
        def list_repo_refs(self, repo_id, repo_type=None):
            request = httpx.Request("GET", "https://huggingface.co/api")
            response = httpx.Response(401, request=request)
            raise HfHubHTTPError(f"401 Unauthorized for token {TOKEN}", response=response)

    fake_api(Refusing())
    result = run_cli(*push_args(validated_run, tmp_path))
    assert result.code == 2 and "refused the token" in result.err
    _assert_no_token_anywhere(tmp_path, result)


def _assert_no_token_anywhere(tmp_path, result):
    assert TOKEN not in result.out and TOKEN not in result.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_push_commits_on_the_head_it_read(run_cli, validated_run, tmp_path, fake_api):
    api = fake_api(FakeHfApi(head="f" * 40))
    assert run_cli(*push_args(validated_run, tmp_path)).code == 0
    [commit] = [c for c in api.calls if c[0] == "create_commit"]
    assert commit[4] == "f" * 40  # parent_commit: a push that raced this one makes it fail
    # A repo that does not exist yet has no head to plan against.
    api = fake_api(FakeHfApi(head=None))
    assert run_cli(*push_args(validated_run, tmp_path / "new")).code == 0
    assert [c[0] for c in api.calls] == [
        "list_repo_refs",
        "create_repo",
        "create_commit",
        "create_tag",
    ]
    assert api.calls[2][4] is None


def test_a_push_that_raced_another_is_one_line(run_cli, validated_run, tmp_path, fake_api):
    api = fake_api(FakeHfApi(head="f" * 40, commit_status=412))
    result = run_cli(*push_args(validated_run, tmp_path))
    assert result.code == 2
    assert "the repository changed while this push ran" in result.err
    assert f"no longer {'f' * 40}" in result.err and "nothing was committed" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "create_tag" not in [c[0] for c in api.calls]


def test_rerun_after_a_failed_tag_tags_the_commit_it_made(
    run_cli, validated_run, tmp_path, fake_api
):
    api = fake_api(FakeHfApi(files=["pairs/train-00007.parquet"], tag_failures=1))
    first = run_cli(*push_args(validated_run, tmp_path))
    assert first.code == 2
    assert "commit abc123 holds this export untagged" in first.err
    assert "run the same command again" in first.err
    assert len(first.err.strip().splitlines()) == 1
    assert api.head == "abc123" and not api.tags
    # The same command again: the head holds exactly this export, so it is only tagged.
    api.calls.clear()
    again = run_cli(*push_args(validated_run, tmp_path))
    assert again.code == 0, again.err
    assert [c[0] for c in api.calls] == ["list_repo_refs", "create_tag"]
    assert api.calls[1] == ("create_tag", "me/dual-view", "v1.2.0", "abc123")
    assert "no commit: me/dual-view head abc123 already holds this export" in again.out
    # Once tagged, the version is taken, as for any other push.
    third = run_cli(*push_args(validated_run, tmp_path))
    assert third.code == 2 and "already has tag v1.2.0" in third.err
    _assert_no_token_anywhere(tmp_path, again)


def test_rerun_with_other_content_commits_on_the_untagged_commit(
    run_cli, validated_run, tmp_path, fake_api
):
    api = fake_api(FakeHfApi(tag_failures=1))
    assert run_cli(*push_args(validated_run, tmp_path)).code == 2
    api.calls.clear()
    other = push_args(validated_run, tmp_path, "--val-share", "0.5")  # other splits
    assert run_cli(*other).code == 0
    names = [c[0] for c in api.calls]
    assert names == ["list_repo_refs", "create_repo", "create_commit", "create_tag"]
    assert api.calls[2][4] == "abc123" and api.calls[3][3] == api.head != "abc123"


def test_push_passes_allow_unvalidated_to_export(validated_run, tmp_path, monkeypatch):
    from dvsynth.config import CardOptions
    from dvsynth.publish import hub

    seen = {}

    def fake_export(run_dirs, folder, options, val_share=0.05, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(hub, "export_dataset", fake_export)
    options = CardOptions(license="cc-by-4.0", version="1.2.0", repo="me/dv")
    with pytest.raises(RuntimeError, match="stop here"):
        hub.push_dataset(
            [validated_run], tmp_path / "x", options, dry_run=True, allow_unvalidated=True
        )
    assert seen == {"allow_unvalidated": True}
