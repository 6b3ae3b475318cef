"""Unit tests for platform_core.state: the state directory layout and the generated credentials file."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from platform_core.config import PlatformConfig, load_config
from platform_core.settings import CONFIG_ENV, STATE_DIR_ENV
from platform_core.state import Credentials, StateDir, load_platform, resolve_state_dir

pytestmark = pytest.mark.usefixtures("no_env_overrides")

REPO_CONFIG = Path(__file__).parents[2] / "platform.yaml"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def creds_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "secrets" / "credentials.json"


def test_credentials_file_is_private_in_private_dir(creds_path: Path) -> None:
    password = Credentials(creds_path).postgres_password("mlflow")

    assert mode(creds_path) == 0o600
    assert mode(creds_path.parent) == 0o700
    assert json.loads(creds_path.read_text()) == {"postgres": {"mlflow": password}}
    assert not creds_path.with_suffix(".tmp").exists()
    assert len(password) == 32 and password.isalnum()


def test_credentials_are_stable_across_instances(creds_path: Path) -> None:
    first = Credentials(creds_path)
    password = first.postgres_password("mlflow")
    keys = first.s3_keys("ml")

    second = Credentials(creds_path)

    assert second.postgres_password("mlflow") == password
    assert second.s3_keys("ml") == keys
    assert first.postgres_password("mlflow") == password
    assert mode(creds_path) == 0o600


def test_distinct_roles_get_distinct_passwords(creds_path: Path) -> None:
    creds = Credentials(creds_path)

    passwords = {role: creds.postgres_password(role) for role in ("postgres", "mlflow", "ml")}

    assert len(set(passwords.values())) == 3
    assert json.loads(creds_path.read_text())["postgres"] == passwords


def test_s3_keys_are_access_secret_pairs_stable_per_identity(creds_path: Path) -> None:
    creds = Credentials(creds_path)

    access, secret = creds.s3_keys("mlflow")
    other_access, other_secret = creds.s3_keys("ml")

    assert access.startswith("AK") and len(access) == 20 and access.isalnum() and access.isupper()
    assert len(secret) == 40 and secret.isalnum()
    assert (access, secret) != (other_access, other_secret)
    assert creds.s3_keys("mlflow") == (access, secret)
    assert Credentials(creds_path).s3_keys("mlflow") == (access, secret)
    data = json.loads(creds_path.read_text())
    assert data["s3_access_keys"] == {"mlflow": access, "ml": other_access}
    assert data["s3_secret_keys"] == {"mlflow": secret, "ml": other_secret}


def test_state_dir_ensure_creates_layout_with_private_dirs(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "deep" / "state")

    assert state.ensure() is state

    for path in (state.root, state.data, state.logs, state.run, state.etc, state.dagster_home):
        assert path.is_dir(), path
    assert mode(state.etc) == 0o700
    assert mode(state.secrets_file.parent) == 0o700
    assert state.secrets_file == state.root / "secrets" / "credentials.json"
    state.ensure()  # idempotent
    password = state.credentials.postgres_password("ml")
    assert StateDir(state.root).credentials.postgres_password("ml") == password
    assert mode(state.secrets_file) == 0o600


def test_relative_state_dir_resolves_against_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # so a wrong fallback to the cwd would be visible
    base = tmp_path / "project"
    cfg = PlatformConfig(state_dir="var/../state")

    assert resolve_state_dir(cfg, base=base).root == base / "state"
    assert resolve_state_dir(cfg).root == tmp_path.resolve() / "state"


def test_absolute_and_home_state_dirs_ignore_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    assert resolve_state_dir(PlatformConfig(state_dir=str(tmp_path / "abs")), base=Path("/elsewhere")).root == (
        tmp_path / "abs"
    )
    assert resolve_state_dir(PlatformConfig(state_dir="~/.platform"), base=Path("/elsewhere")).root == (
        tmp_path / "home" / ".platform"
    )


def test_state_dir_env_overrides_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "override"))

    state = resolve_state_dir(PlatformConfig(state_dir=str(tmp_path / "configured")), base=tmp_path)

    assert state.root == tmp_path / "override"


def test_load_platform_uses_platform_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "conf" / "platform.yaml"
    config.parent.mkdir()
    shutil.copyfile(REPO_CONFIG, config)
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.chdir(tmp_path)

    cfg, state = load_platform()

    raw = yaml.safe_load(config.read_text())
    assert cfg == load_config(config)
    assert cfg.target == raw["target"]
    assert cfg.services.postgres.port == raw["services"]["postgres"]["port"]
    assert [b.name for b in cfg.buckets] == [b["name"] for b in raw["buckets"]]
    assert state.root == config.parent / raw["state_dir"]  # relative to the config file, not the cwd
    assert not state.root.exists()  # resolving does not create anything


def test_load_platform_state_dir_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "platform.yaml"
    shutil.copyfile(REPO_CONFIG, config)
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "elsewhere"))

    _, state = load_platform()

    assert state.root == tmp_path / "elsewhere"


def test_load_platform_explicit_path_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = tmp_path / "chosen" / "platform.yaml"
    chosen.parent.mkdir()
    shutil.copyfile(REPO_CONFIG, chosen)
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.yaml"))

    cfg, state = load_platform(chosen)

    assert cfg == load_config(chosen)
    assert state.root == chosen.parent / yaml.safe_load(chosen.read_text())["state_dir"]


def _create_password(path: str, role: str) -> str:
    return Credentials(Path(path)).postgres_password(role)


def test_concurrent_processes_never_lose_a_generated_credential(tmp_path: Path) -> None:
    """Sensors and runs of both code locations generate credentials at the same time."""
    import concurrent.futures
    import multiprocessing

    path = tmp_path / "secrets" / "credentials.json"
    roles = [f"role{i}" for i in range(16)]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=8, mp_context=context) as pool:
        returned = dict(zip(roles, pool.map(_create_password, [str(path)] * len(roles), roles), strict=True))
    stored = json.loads(path.read_text())["postgres"]
    assert stored == returned
