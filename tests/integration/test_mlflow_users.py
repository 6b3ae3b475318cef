"""MLflow's two users, made and mended by `ensure_users` without importing MLflow: the server's first start makes
the writer with a one-time password that `ensure_users` replaces at once; a password someone changed is set back
(the reader's through the REST API as the writer, the writer's own through MLflow's auth store)."""

from __future__ import annotations

import pytest
import requests

from platform_core.services.mlflow_auth import (
    BOOTSTRAP_TOKEN,
    READER,
    WRITER,
    MlflowIdentity,
    change_own_password,
    users_in_place,
)

pytestmark = pytest.mark.integration


def test_the_first_start_made_the_writer_whose_bootstrap_password_then_stopped_working(stack) -> None:
    mlflow = stack.resource("mlflow_resource")
    assert stack.first_run.changes["mlflow_server"].startswith(
        f"started (was not running); MLflow user {WRITER} made by the server's start, its password set; "
        f"created MLflow user {READER}"
    )
    bootstrap = MlflowIdentity(WRITER, mlflow.state.credentials.token(BOOTSTRAP_TOKEN))
    current = requests.get(f"{mlflow.url}/api/2.0/mlflow/users/current", auth=bootstrap.auth, timeout=10)
    assert current.status_code == 401
    assert users_in_place(mlflow.url, [(mlflow.writer, True), (mlflow.reader, False)])
    env = mlflow.service_spec().env
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == bootstrap.password
    assert mlflow.writer.password not in env.values()  # the server never holds the writer's own


def test_a_reader_who_changed_its_password_gets_the_generated_one_back(stack) -> None:
    mlflow = stack.resource("mlflow_resource")
    change_own_password(mlflow.url, mlflow.reader, "chosen-by-the-reader-1").raise_for_status()
    assert mlflow.ensure_users() == [f"set the rotated password of MLflow user {READER}"]
    assert mlflow.ensure_users() == []


def test_a_reader_made_an_admin_is_made_a_reader_again(stack) -> None:
    mlflow = stack.resource("mlflow_resource")
    promote = {"username": READER, "is_admin": True}
    api = f"{mlflow.url}/api/2.0/mlflow/users/update-admin"
    requests.patch(api, json=promote, auth=mlflow.writer.auth, timeout=10).raise_for_status()
    assert mlflow.ensure_users() == [f"made MLflow user {READER} a non-admin again"]
    assert users_in_place(mlflow.url, [(mlflow.reader, False)])


def test_a_writer_whose_password_changed_is_set_back_through_the_store(stack) -> None:
    mlflow = stack.resource("mlflow_resource")
    change_own_password(mlflow.url, mlflow.writer, "chosen-by-someone-else-1").raise_for_status()
    try:
        assert not users_in_place(mlflow.url, [(mlflow.writer, True)])
        assert mlflow.ensure_users() == [f"set the rotated password of MLflow user {WRITER}"]
    finally:
        mlflow.ensure_users()  # whatever happened above, the writer the other tests act as signs in again
    assert users_in_place(mlflow.url, [(mlflow.writer, True), (mlflow.reader, False)])
