"""The UI's "open source code" link on every asset: the local file always, and the file in the repository's web
view when the checkout has a GitHub or GitLab `origin` (read from git itself, so nothing is configured twice)."""

from __future__ import annotations

import subprocess
import warnings
from functools import lru_cache
from pathlib import Path

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def _git_origin() -> tuple[str, str] | None:
    """(web URL, branch) of the checkout's origin, or None (no git, no origin, or not a known host)."""
    try:
        url = _git("remote", "get-url", "origin")
        branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    if url.startswith("git@"):  # git@github.com:owner/repo.git -> https://github.com/owner/repo
        url = "https://" + url[len("git@") :].replace(":", "/", 1)
    url = url.removesuffix(".git")
    if not url.startswith("https://") or not any(host in url for host in ("github.com", "gitlab.com")):
        return None
    return url, branch


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=5, check=True)
    return done.stdout.strip()


def with_code_links(defs: dg.Definitions) -> dg.Definitions:
    """`defs` with each asset's source file (and line) attached, linked to the git web view when there is one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # the documented way to link code, still "beta"
        linked = dg.with_source_code_references(list(defs.assets or []))
        origin = _git_origin()
        if origin is not None:
            url, branch = origin
            mapping = dg.AnchorBasedFilePathMapping(local_file_anchor=REPO_ROOT, file_anchor_path_in_repository="")
            linked = dg.link_code_references_to_git(linked, git_url=url, git_branch=branch, file_path_mapping=mapping)
    rest = dg.Definitions(
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        schedules=defs.schedules,
        sensors=defs.sensors,
        resources=defs.resources,
        executor=defs.executor,
        loggers=defs.loggers,
        metadata=defs.metadata,
    )
    return dg.Definitions.merge(dg.Definitions(assets=linked), rest)
