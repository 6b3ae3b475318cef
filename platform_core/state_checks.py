"""Can this directory hold a stack? It will hold every generated password: never where git would commit it,
never on a file, a read-only mount or a kernel filesystem. Asked before anything is written, by `plan` too."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Kernel filesystems: root may pass os.access() there, yet nothing can be created (mkdir in /proc is ENOENT).
_KERNEL_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


def state_dir_problem(root: Path) -> str | None:
    """Why ``root`` cannot be a state directory, in words naming the path, or None when it can."""
    try:
        return _problem(root)
    except OSError as err:  # a name too long for the filesystem, a loop of symlinks...
        return f"{root} cannot be used: {err.strerror or err}"


def _problem(root: Path) -> str | None:
    if any(root == fs or fs in root.parents for fs in _KERNEL_FILESYSTEMS):
        return f"{root} is on a kernel filesystem; choose a directory on disk"
    if root.exists() and not root.is_dir():
        return f"{root} exists and is not a directory"
    existing = _nearest_existing(root)
    if not existing.is_dir():
        return f"{root} cannot be created: {existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{root} is not writable ({existing} does not allow this user {os.geteuid()} to write)"
    return _tracked_by_git(root, existing)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _tracked_by_git(root: Path, existing: Path) -> str | None:
    """A state directory inside a git working tree must be ignored there, or one `git add -A` commits every secret."""
    git = shutil.which("git")
    if git is None or not any((d / ".git").exists() for d in (existing, *existing.parents)):
        return None
    try:
        ignored = subprocess.run(
            [git, "-C", str(existing), "check-ignore", "-q", "--", str(root / "secrets" / "credentials.json")],
            capture_output=True,
            timeout=10,
            check=False,
        ).returncode
    except (OSError, subprocess.TimeoutExpired):
        return None  # no answer from git: nothing to judge by
    if ignored == 1:  # 0: ignored; 128: not a working tree after all (e.g. inside .git)
        return (
            f"{root} is inside a git working tree and not ignored there: its secrets/credentials.json would be "
            f"committed by `git add -A`; add it to .gitignore or choose a directory outside the checkout"
        )
    return None
