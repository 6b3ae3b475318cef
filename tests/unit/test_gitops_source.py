"""The in-cluster git server's script, run for real with git and tar: a ConfigMap mount's layout in, a bare
repository out whose main is the rendered tree, the same commit for the same tree, and a restart that finds
its previous repository (the emptyDir outlives the container) serves again."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from platform_core.cluster.gitops_source import BRANCH, REPOSITORY, SERVE_SCRIPT, TREE_MOUNT
from platform_core.cluster.render import render_infra_tree, seed_config

pytestmark = pytest.mark.skipif(not (shutil.which("git") and shutil.which("tar")), reason="needs git and tar")


def _mount(root: Path, tree: dict[str, str]) -> Path:
    """A ConfigMap volume as the kubelet writes it: files under ..<timestamp>, ..data -> it, and a symlink per
    top-level entry through ..data."""
    data = root / "..2026_12_06_00_00_00.1"
    for path, text in tree.items():
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        (data / path).write_text(text)
    (root / "..data").symlink_to(data.name)
    for top in {p.split("/", 1)[0] for p in tree}:
        (root / top).symlink_to(f"..data/{top}")
    return root


def _serve(tmp: Path, mount: Path) -> str:
    """The script with the container's paths under ``tmp`` and `git daemon` left out: the commit on main."""
    srv = tmp / "srv"
    srv.mkdir(exist_ok=True)
    script = SERVE_SCRIPT.replace(TREE_MOUNT, str(mount)).replace("/srv/git", str(srv))
    script = script[: script.index("exec git daemon")] + f"git --git-dir={srv}/{REPOSITORY} rev-parse {BRANCH}\n"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp)}
    return subprocess.run(["sh", "-c", script], env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_the_script_commits_the_mounted_tree_and_survives_a_restart(tmp_path: Path) -> None:
    tree = render_infra_tree(seed_config())
    mount = _mount(tmp_path / "tree", tree)
    first = _serve(tmp_path, mount)
    assert len(first) == 40
    assert _serve(tmp_path, mount) == first  # restarted over its old repository: same tree, same commit
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(tmp_path / "srv" / REPOSITORY), str(clone)], check=True)
    files = {p.relative_to(clone).as_posix(): p.read_text() for p in clone.rglob("*.yaml") if ".git" not in p.parts}
    assert files == tree  # every file at its path, and no ..data
    other = tmp_path / "other"
    other.mkdir()
    changed = _mount(other / "tree", {**tree, "infra/apps/extra.yaml": "---\n"})
    assert _serve(other, changed) != first
