"""`dvsynth push`: one commit with the data and the card, then the tag `vX.Y.Z` on it.

A version is immutable: a tag that exists already is refused, so
`load_dataset(repo, config, revision="vX.Y.Z")` returns the same data for ever. Files
that the previous version had and this one lacks (fewer shards) are deleted in the same
commit, so the repository's head is exactly this export. The token comes from the
environment (HF_TOKEN) or the `hf auth login` cache, through huggingface_hub; it is
never printed, logged or written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dvsynth.errors import UserError
from dvsynth.publish.card import HISTORY_KEY, CardOptions
from dvsynth.publish.dataset import export_dataset
from dvsynth.publish.export import CONFIGS
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

    def describe(self) -> list[str]:
        lines = [f"create dataset repo {self.repo} if missing (private={self.private})"]
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


def _hub_error(exc: Exception, repo: str) -> UserError:
    from huggingface_hub.errors import HfHubHTTPError

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return UserError(
            f"--repo {repo}: the Hub refused the token ({status}); set HF_TOKEN or run "
            "`hf auth login` with a token that can write to this repository"
        )
    if isinstance(exc, HfHubHTTPError):
        return UserError(f"--repo {repo}: the Hub answered {status}: {redact(str(exc))[:300]}")
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
    api=None,
) -> PushPlan:
    """Export to `folder`, then (unless dry_run) commit it and tag the commit."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    tag = check_target(options.repo, options.version)
    api = api or HfApi()
    existing_files: list[str] = []
    if not dry_run:
        try:
            refs = api.list_repo_refs(options.repo, repo_type="dataset")
            if any(t.name == tag for t in refs.tags):
                raise UserError(
                    f"--version {options.version}: {options.repo} already has tag {tag}; "
                    "versions are immutable, choose a new one"
                )
            existing_files = api.list_repo_files(options.repo, repo_type="dataset")
            options.history = _history(api, options.repo)
        except UserError:
            raise
        except Exception as exc:
            if getattr(getattr(exc, "response", None), "status_code", None) != 404:
                raise _hub_error(exc, options.repo) from None
    report = export_dataset(run_dirs, folder, options, val_share)
    ours = set(report.files)
    stale = [f for f in existing_files if f.split("/", 1)[0] in CONFIGS and f not in ours]
    plan = PushPlan(options.repo, tag, private, folder, sorted(ours), sorted(stale))
    if on_plan:
        on_plan(plan)
    if dry_run:
        return plan
    try:
        api.create_repo(options.repo, repo_type="dataset", private=private, exist_ok=True)
        operations = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(folder / path))
            for path in plan.add
        ] + [CommitOperationDelete(path_in_repo=path) for path in plan.delete]
        commit = api.create_commit(
            options.repo,
            operations,
            commit_message=f"dvsynth {options.version}",
            repo_type="dataset",
        )
        api.create_tag(
            options.repo,
            tag=tag,
            tag_message=f"dvsynth dataset {options.version}",
            revision=commit.oid,
            repo_type="dataset",
        )
    except Exception as exc:
        raise _hub_error(exc, options.repo) from None
    return plan


def _history(api, repo: str) -> list[dict]:
    """Earlier versions, as the current card on the Hub lists them."""
    from huggingface_hub import DatasetCard

    try:
        path = api.hf_hub_download(repo, "README.md", repo_type="dataset")
    except Exception:
        return []
    card = DatasetCard.load(path)
    return list(card.data.to_dict().get(HISTORY_KEY) or [])
