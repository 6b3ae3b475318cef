"""MLflow's identities without a server: who each process acts as, and what the auth configuration says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from platform_core.cluster.secrets import MLFLOW_READER_SECRET, MLFLOW_WRITER_SECRET, ml_step_env
from platform_core.config import parse_config
from platform_core.services import mlflow_auth
from platform_core.services.mlflow_auth import AuthProof, MlflowIdentity
from platform_core.state import StateDir


def test_an_identity_never_shows_its_password() -> None:
    identity = MlflowIdentity("reader", "s3cretPassw0rdXYZ")
    assert "s3cret" not in repr(identity) and "s3cret" not in str(identity)


def test_acting_sets_the_identity_and_gives_the_old_one_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "before")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with MlflowIdentity("platform-admin", "pw-writer-123456").acting():
        assert os.environ["MLFLOW_TRACKING_USERNAME"] == "platform-admin"
        with MlflowIdentity("reader", "pw-reader-123456").acting():
            assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "pw-reader-123456"
        assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "pw-writer-123456"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "before"
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ


def test_the_auth_ini_holds_no_secret_and_names_the_store(tmp_path: Path) -> None:
    uri = "postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow"
    path = tmp_path / "auth.ini"
    path.write_text(mlflow_auth.auth_ini(uri))
    assert mlflow_auth.ini_database_uri(str(path)) == uri
    text = path.read_text()
    assert "default_permission = READ" in text and "admin_username = platform-admin" in text
    assert "password" not in text
    with pytest.raises(FileNotFoundError, match="missing"):
        mlflow_auth.ini_database_uri(str(tmp_path / "none.ini"))


def test_with_password_puts_the_password_only_in_the_returned_uri() -> None:
    uri = "postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow"
    assert (
        mlflow_auth.with_password(uri, "p@ss/word")
        == "postgresql+psycopg2://mlflow:p%40ss%2Fword@127.0.0.1:5432/mlflow"
    )


def test_the_proof_names_each_status_that_is_not_the_rule() -> None:
    assert AuthProof(401, 403, 200, 200, 403).problems == []
    problems = AuthProof(200, 200, 200, 401, 404).problems
    assert problems == [
        "anonymous_write: HTTP 200, expected 401",
        "reader_alias: HTTP 200, expected 403",
        "reader_read: HTTP 401, expected 200",
        "reader_champion: HTTP 404, expected 403",
    ]


def test_steps_get_the_writer_or_the_reader(tmp_path: Path) -> None:
    cfg = parse_config({"state_dir": str(tmp_path / "state")})
    credentials = StateDir(tmp_path / "state").ensure().credentials
    env = ml_step_env(cfg, credentials)
    assert env[MLFLOW_WRITER_SECRET]["MLFLOW_TRACKING_USERNAME"] == "platform-admin"
    assert env[MLFLOW_READER_SECRET]["MLFLOW_TRACKING_USERNAME"] == "reader"
    assert (
        env[MLFLOW_WRITER_SECRET]["MLFLOW_TRACKING_PASSWORD"] != env[MLFLOW_READER_SECRET]["MLFLOW_TRACKING_PASSWORD"]
    )
    assert mlflow_auth.writer(credentials).password == env[MLFLOW_WRITER_SECRET]["MLFLOW_TRACKING_PASSWORD"]
