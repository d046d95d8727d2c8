"""`dvsynth push`: one commit with the data and the card, then the tag `vX.Y.Z` on it.

A version is immutable: a tag that exists already is refused, so
`load_dataset(repo, config, revision="vX.Y.Z")` returns the same data for ever. Files
that the previous version had and this one lacks (fewer shards) are deleted in the same
commit, so the repository's head is exactly this export.

The commit names the head it was planned against as its parent: a push that raced
another one fails (one line) instead of overwriting it. Commit and tag are two calls;
when the second failed, the same command run again finds the head already holding this
export (same paths, same sha256 or git blob ids) and only tags it. The token comes from
the environment (HF_TOKEN) or the `hf auth login` cache, through huggingface_hub; it is
never printed, logged or written.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvsynth.config import CardOptions
from dvsynth.errors import UserError
from dvsynth.publish.card import HISTORY_KEY
from dvsynth.publish.dataset import RECIPE_FILE, export_dataset
from dvsynth.publish.export import CONFIGS
from dvsynth.publish.folder import check_out
from dvsynth.redact import redact

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class PushPlan:
    repo: str
    tag: str
    private: bool
    folder: Path
    add: list[str]
    delete: list[str]
    parent: str | None = None  # the head planned against; None for a new repo
    tag_only: bool = False  # the head already holds this export (an earlier push's commit)

    def describe(self) -> list[str]:
        if self.tag_only:
            return [
                f"no commit: {self.repo} head {self.parent} already holds this export",
                f"tag {self.tag} on that commit",
            ]
        lines = [f"create dataset repo {self.repo} if missing (private={self.private})"]
        if self.parent:
            lines.append(f"commit on parent {self.parent} (refused if the head moves)")
        lines += [f"commit: add {path}" for path in self.add]
        lines += [f"commit: delete {path}" for path in self.delete]
        lines.append(f"tag {self.tag} on that commit")
        return lines


def check_target(repo: str, version: str) -> str:
    if not _REPO.match(repo):
        raise UserError(f"--repo: '{repo}' is not ORG/NAME")
    if not _VERSION.match(version):
        raise UserError(f"--version: '{version}' is not X.Y.Z (semantic version)")
    return f"v{version}"


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _hub_error(exc: Exception, repo: str) -> UserError:
    from huggingface_hub.errors import HfHubHTTPError

    status = _status(exc)
    if status in (401, 403):
        return UserError(
            f"--repo {repo}: the Hub refused the token ({status}); set HF_TOKEN or run "
            "`hf auth login` with a token that can write to this repository"
        )
    if isinstance(exc, HfHubHTTPError):
        detail = " ".join(redact(str(exc)).split())[:300]  # one line, whatever the server sent
        return UserError(f"--repo {repo}: the Hub answered {status}: {detail}")
    return UserError(f"--repo {repo}: cannot reach the Hub ({type(exc).__name__})")


def push_dataset(
    run_dirs: Sequence[Path],
    folder: Path,
    options: CardOptions,
    *,
    private: bool = False,
    dry_run: bool = False,
    val_share: float = 0.05,
    on_plan: Callable[[PushPlan], None] | None = None,
    allow_unvalidated: bool = False,
    api=None,
    recipe: bytes | None = None,
) -> PushPlan:
    """Export to `folder`, then (unless dry_run) commit it on the head it read and tag it.
    `recipe`: the recipe file's bytes, pushed as `recipe.yaml` (`export_dataset`)."""
    check_out(folder, run_dirs)  # a dry run too: it meets what the push would

    def export(into: Path) -> Sequence[str]:
        with_recipe = {"recipe": recipe} if recipe is not None else {}
        report = export_dataset(
            run_dirs, into, options, val_share, allow_unvalidated=allow_unvalidated, **with_recipe
        )
        return report.files

    # An earlier version's recipe goes with its data: a head without one has none.
    owned = (*CONFIGS, RECIPE_FILE)
    return push_export(
        export, folder, options, owned, private=private, dry_run=dry_run, on_plan=on_plan, api=api
    )


def push_export(
    export: Callable[[Path], Sequence[str]],
    folder: Path,
    options: CardOptions,
    configs: Sequence[str],
    *,
    private: bool = False,
    dry_run: bool = False,
    on_plan: Callable[[PushPlan], None] | None = None,
    api=None,
) -> PushPlan:
    """Read the head (unless dry_run), run `export` into `folder` (it returns the files
    it wrote), then commit and tag. Every kind of dvsynth export pushes through here (runs
    with `push`, gold sets with `export-gold --push`); `configs` are its data folders,
    whose files at the head that this export lacks are deleted in the same commit.

    A dry run exports into a temporary folder, removed before it returns: it writes
    nothing where the user would find it (`dvsynth export` writes a folder to look at)."""
    from huggingface_hub import HfApi

    tag = check_target(options.repo, options.version)
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="dvsynth-push-dry-run-") as scratch:
            ours = sorted(set(export(Path(scratch) / folder.name)))
        plan = PushPlan(options.repo, tag, private, folder, ours, [])
        if on_plan:
            on_plan(plan)
        return plan
    api = api or HfApi()
    head, remote = _read_head(api, options, tag)
    ours = sorted(set(export(folder)))
    stale = sorted(f for f in remote if f.split("/", 1)[0] in configs and f not in ours)
    held = head is not None and not stale and _holds(folder, ours, remote)
    plan = PushPlan(options.repo, tag, private, folder, ours, stale, head, tag_only=held)
    if on_plan:
        on_plan(plan)
    _upload(api, plan, options.version)
    return plan


def _read_head(api, options: CardOptions, tag: str) -> tuple[str | None, dict[str, Any]]:
    """(head commit, {path: RepoFile} at it); (None, {}) for a repo that does not exist."""
    from huggingface_hub.hf_api import RepoFile

    try:
        refs = api.list_repo_refs(options.repo, repo_type="dataset")
        if any(t.name == tag for t in refs.tags):
            raise UserError(
                f"--version {options.version}: {options.repo} already has tag {tag}; "
                "versions are immutable, choose a new one"
            )
        head = next((b.target_commit for b in refs.branches if b.name == "main"), None)
        if head is None:
            return None, {}
        tree = api.list_repo_tree(options.repo, recursive=True, revision=head, repo_type="dataset")
        remote = {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}
        options.history = _history(api, options.repo, head)
    except UserError:
        raise
    except Exception as exc:
        if _status(exc) != 404:
            raise _hub_error(exc, options.repo) from None
        return None, {}
    return head, remote


def _upload(api, plan: PushPlan, version: str) -> None:
    """Commit (unless the head holds the export already), then tag; each failure one line."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    revision = plan.parent
    if not plan.tag_only:
        operations = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(plan.folder / path))
            for path in plan.add
        ] + [CommitOperationDelete(path_in_repo=path) for path in plan.delete]
        try:
            api.create_repo(plan.repo, repo_type="dataset", private=plan.private, exist_ok=True)
            commit = api.create_commit(
                plan.repo,
                operations,
                commit_message=f"dvsynth {version}",
                repo_type="dataset",
                parent_commit=plan.parent,
            )
        except Exception as exc:
            if _status(exc) in (409, 412):
                raise UserError(
                    f"--repo {plan.repo}: the repository changed while this push ran (its "
                    f"head is no longer {plan.parent or 'empty'}); nothing was committed, "
                    "run the command again to push on the new head"
                ) from None
            raise _hub_error(exc, plan.repo) from None
        revision = commit.oid
    try:
        api.create_tag(
            plan.repo,
            tag=plan.tag,
            tag_message=f"dvsynth dataset {version}",
            revision=revision,
            repo_type="dataset",
        )
    except Exception as exc:
        raise UserError(
            f"{_hub_error(exc, plan.repo)}; commit {revision} holds this export untagged: "
            "run the same command again to tag it"
        ) from None


def _holds(folder: Path, paths: list[str], remote: dict[str, Any]) -> bool:
    """Whether the Hub files at `remote` are exactly our files' bytes, path by path.

    LFS files carry their sha256; small files their git blob id (sha1 of a header and
    the bytes). Both are in the tree listing, so nothing is downloaded.
    """
    for path in paths:
        entry, local = remote.get(path), folder / path
        if entry is None:
            return False
        if entry.lfs is not None:
            same = entry.lfs.sha256 == _sha256(local)
        else:
            data = local.read_bytes()
            same = entry.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        if not same:
            return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _history(api, repo: str, revision: str) -> list[dict]:
    """Earlier versions, as the card at the head commit lists them."""
    from huggingface_hub import DatasetCard

    try:
        path = api.hf_hub_download(repo, "README.md", repo_type="dataset", revision=revision)
    except Exception:
        return []
    card = DatasetCard.load(path)
    return list(card.data.to_dict().get(HISTORY_KEY) or [])
