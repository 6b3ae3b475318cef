"""MLflow's two users, made and mended by `ensure_users` without importing MLflow: the server's first start makes
the writer with a one-time password that `ensure_users` replaces at once; a password someone changed is set back
(the reader's through the REST API as the writer, the writer's own through MLflow's auth store)."""

from __future__ import annotations

import pytest
import requests

from platform_core.services.mlflow_auth import BOOTSTRAP_TOKEN, READER, WRITER, MlflowIdentity, users_in_place

pytestmark = pytest.mark.integration


def change_own_password(url: str, identity: MlflowIdentity, password: str) -> None:
    """What MLflow lets any signed-in user do."""
    body = {"username": identity.username, "password": password, "current_password": identity.password}
    response = requests.patch(f"{url}/api/2.0/mlflow/users/update-password", json=body, auth=identity.auth, timeout=10)
    response.raise_for_status()


def test_the_first_starts_password_no_longer_signs_in(stack) -> None:
    mlflow = stack.resource("mlflow_resource")
    bootstrap = MlflowIdentity(WRITER, mlflow.state.credentials.token(BOOTSTRAP_TOKEN))
    current = requests.get(f"{mlflow.url}/api/2.0/mlflow/users/current", auth=bootstrap.auth, timeout=10)
    assert current.status_code == 401
    assert users_in_place(mlflow.url, [(mlflow.writer, True), (mlflow.reader, False)])
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in mlflow.service_spec().env
    assert mlflow.writer.password not in mlflow.service_spec().env.values()  # the server never holds it


def test_a_reader_who_changed_its_password_gets_the_generated_one_back(stack) -> None:
    mlflow = stack.resource("mlflow_resource")
    change_own_password(mlflow.url, mlflow.reader, "chosen-by-the-reader-1")
    assert mlflow.ensure_users() == [f"set the rotated password of MLflow user {READER}"]
    assert mlflow.ensure_users() == []


def test_a_writer_whose_password_changed_is_set_back_through_the_store(stack) -> None:
    mlflow = stack.resource("mlflow_resource")
    change_own_password(mlflow.url, mlflow.writer, "chosen-by-someone-else-1")
    try:
        assert not users_in_place(mlflow.url, [(mlflow.writer, True)])
        assert mlflow.ensure_users() == [f"set the rotated password of MLflow user {WRITER}"]
    finally:
        mlflow.ensure_users()  # whatever happened above, the writer the other tests act as signs in again
    assert users_in_place(mlflow.url, [(mlflow.writer, True), (mlflow.reader, False)])
