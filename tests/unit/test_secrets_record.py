"""The record of what the data was made with: a lost or stale credentials file is refused at load, in one line,
before anything is written or started; a stack from before the record gains one on its next run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platform_core.config import ConfigError
from platform_core.secrets_record import read_record
from platform_core.state import Credentials, load_platform, planning

pytestmark = pytest.mark.usefixtures("no_env_overrides")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "platform.yaml"
    path.write_text("state_dir: state\n")
    return path


def _made(config: Path) -> tuple[Path, str]:
    _, state = load_platform(config)
    password = state.credentials.postgres_password("postgres")
    state.credentials.s3_keys("ml")
    return state.secrets_file, password


def test_generated_credentials_are_recorded_by_digest_only(config: Path) -> None:
    _, password = _made(config)
    record = read_record(config.parent / "state" / "data" / "credentials.sha256.json")
    assert set(record) == {"postgres/postgres", "s3_access_keys/ml", "s3_secret_keys/ml"}
    assert password not in json.dumps(record)
    load_platform(config)  # the same file: accepted


def test_a_missing_file_is_refused_naming_both_ways_out(config: Path) -> None:
    secrets, _ = _made(config)
    secrets.unlink()
    with pytest.raises(ConfigError) as caught:
        load_platform(config)
    assert "credentials.json is missing: nothing was started or changed" in str(caught.value)
    assert "restore the file from a backup, or run `platformctl rotate-credentials`" in str(caught.value)
    assert not secrets.exists()
    load_platform(config, allow_credential_mismatch=True)  # the rotation command's way in


def test_a_stale_file_is_refused_naming_what_differs_not_its_value(config: Path) -> None:
    secrets, password = _made(config)
    data = json.loads(secrets.read_text())
    data["postgres"]["postgres"] = "restored-from-an-old-backup"
    secrets.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as caught:
        load_platform(config)
    message = str(caught.value)
    assert "does not hold the credentials" in message and "(postgres/postgres)" in message
    assert "restored-from-an-old-backup" not in message and password not in message


def test_a_stack_from_before_the_record_is_recorded_on_use_but_not_in_a_plan(tmp_path: Path) -> None:
    secrets, record = tmp_path / "credentials.json", tmp_path / "data" / "credentials.sha256.json"
    Credentials(secrets).postgres_password("mlflow")  # written without a record, as before
    with planning():
        Credentials(secrets, record).postgres_password("mlflow")
    assert not record.exists()
    Credentials(secrets, record).postgres_password("mlflow")
    assert set(read_record(record)) == {"postgres/mlflow"}
