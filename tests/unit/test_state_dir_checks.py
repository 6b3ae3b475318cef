"""A state directory holds every generated password: refused, in one line naming state_dir, where git would commit
it or where it cannot be written, by `plan` as well as `up`, before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from platform_core.config import ConfigError
from platform_core.state import load_platform

pytestmark = pytest.mark.usefixtures("no_env_overrides")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git working tree that ignores `.platform/`, as this project's does."""
    repo = tmp_path / "checkout"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text(".platform/\n")
    return repo


def _config(directory: Path, state_dir: str) -> Path:
    path = directory / "platform.yaml"
    path.write_text(f"state_dir: {state_dir!r}\n")
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_platform(path)
    assert caught.value.path == "state_dir"
    assert "\n" not in str(caught.value)
    return caught.value.message


@pytest.mark.parametrize("state_dir", [".", "state", "ml/.state"])
def test_a_state_dir_git_would_commit_is_refused(checkout: Path, state_dir: str) -> None:
    message = _refusal(_config(checkout, state_dir))
    assert "inside a git working tree and not ignored" in message and ".gitignore" in message
    assert sorted(p.name for p in checkout.iterdir()) == [".git", ".gitignore", "platform.yaml"]  # nothing written


def test_an_ignored_state_dir_in_a_checkout_is_accepted(checkout: Path) -> None:
    _, state = load_platform(_config(checkout, ".platform"))
    assert state.root == checkout / ".platform"


def test_a_state_dir_outside_any_checkout_is_accepted(tmp_path: Path) -> None:
    _, state = load_platform(_config(tmp_path, "anywhere"))
    assert state.root == tmp_path / "anywhere"


@pytest.mark.parametrize(
    ("state_dir", "words"),
    [
        ("/proc/platform", "kernel filesystem"),
        ("/sys", "kernel filesystem"),
        ("FILE", "exists and is not a directory"),
        ("FILE/below", "cannot be created"),
    ],
)
def test_an_unusable_path_is_one_line(tmp_path: Path, state_dir: str, words: str) -> None:
    (tmp_path / "FILE").write_text("not a directory")
    assert words in _refusal(_config(tmp_path, state_dir.replace("FILE", str(tmp_path / "FILE"))))


def test_a_read_only_mount_is_refused(tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root and mount rights)")
    try:
        assert "is not writable" in _refusal(_config(tmp_path, str(mount / "state")))
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("command", ["plan", "up"])
def test_platformctl_refuses_before_writing(checkout: Path, command: str) -> None:
    config = _config(checkout, "state")
    done = subprocess.run(
        [sys.executable, "-m", "platformctl.cli", "--config", str(config), command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=checkout,
    )
    assert done.returncode == (1 if command == "plan" else 2)  # plan: 1 is an error, 2 "changes to make"
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"platformctl: {config}: state_dir: ") and "not ignored" in line
    assert not (checkout / "state").exists()
