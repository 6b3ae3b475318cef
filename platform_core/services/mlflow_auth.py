"""Who may do what in MLflow: its built-in basic-auth app (`mlflow server --app-name basic-auth`), two users,
and the probe that proves it.

- WRITER, an MLflow admin: whatever trains, registers, promotes or deploys (the Dagster runs, the training pod).
- READER: the inference service, the drift report pod and people browsing. `default_permission = READ` lets it
  read every experiment and model and change none it did not create (moving an alias needs EDIT). MLflow lets
  any signed-in user create experiments and models (and own them), so the writer claims the production model
  and the checks' model as soon as the server answers (`claim_models`): the reader can never own them.
- Anyone else gets 401; MLflow leaves only /health and static files open.

How the users get there, and the server never holds the writer's password:
- Locally, a server start that finds no writer (the first) makes it itself (MLflow's `create_admin_user`) with a
  bootstrap password from its environment (`MLFLOW_AUTH_ADMIN_PASSWORD`, a generated token kept beside the other
  secrets), which the `mlflow_server` asset replaces at once through the REST API (`take_over_bootstrap`), then
  makes or mends the reader there as the writer (`users_via_api`). No MLflow import in `platformctl` (its auth
  store's is ~2.5 s).
- Where the writer cannot sign in (a rotated password), and in the cluster's init container
  (`python -m platform_core.services.mlflow_auth`, before the server starts), both are written into the store
  `mlflow server` itself bootstraps its admin with (`sync_users`), so a password is set without knowing the old.
"""

from __future__ import annotations

import configparser
import io
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from platform_core.state import Credentials

WRITER = "platform-admin"
READER = "reader"
INI_NAME = "mlflow-auth.ini"
APP_NAME = "basic-auth"
FLASK_SECRET_TOKEN = "mlflow-flask-secret"  # the auth app's session signing key, a generated token
BOOTSTRAP_TOKEN = "mlflow-admin-bootstrap"  # the writer's password from a writer-less start until replaced
CHECK_MODEL = "_platform_checks"  # a registered model of the checks' own, like the check experiment
_PROBE_ALIAS = "auth-probe"
# The init container's environment (the Secret mlflow-users); the ini names the store, PGPASSWORD unlocks it.
WRITER_PASSWORD_ENV = "MLFLOW_WRITER_PASSWORD"
READER_PASSWORD_ENV = "MLFLOW_READER_PASSWORD"
CLAIM_MODELS_ENV = "MLFLOW_CLAIM_MODELS"  # the init container's: models made before the server answers


@dataclass(frozen=True)
class MlflowIdentity:
    username: str
    password: str = field(repr=False)

    @property
    def auth(self) -> tuple[str, str]:
        return self.username, self.password

    def environ(self) -> dict[str, str]:
        """MLflow's client reads who it is only from these variables, at each request."""
        return {"MLFLOW_TRACKING_USERNAME": self.username, "MLFLOW_TRACKING_PASSWORD": self.password}

    def export(self) -> None:
        """This process acts as this identity from now on (a check's MLflow client, a step pod)."""
        os.environ.update(self.environ())

    @contextmanager
    def acting(self) -> Iterator[None]:
        """MLflow calls inside act as this identity; the process's own identity, if any, comes back after.
        (Process-wide, like the variables: two threads must not act as two identities at once.)"""
        before = {key: os.environ.get(key) for key in self.environ()}
        os.environ.update(self.environ())
        try:
            yield
        finally:
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def writer(credentials: Credentials) -> MlflowIdentity:
    return MlflowIdentity(WRITER, credentials.mlflow_password(WRITER))


def reader(credentials: Credentials) -> MlflowIdentity:
    return MlflowIdentity(READER, credentials.mlflow_password(READER))


def auth_ini(database_uri: str) -> str:
    """basic_auth.ini without a secret: the store's URI names its role, whose password is PGPASSWORD."""
    config = configparser.ConfigParser()
    config["mlflow"] = {
        "default_permission": "READ",
        "database_uri": database_uri,
        "admin_username": WRITER,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        # without it every request pays a password hash (hundreds of ms); a password sync_users changes while
        # the server runs may still be accepted by a worker for up to a minute
        "auth_cache_ttl_seconds": "60",
    }
    text = io.StringIO()
    config.write(text)
    return text.getvalue()


def ini_database_uri(path: str) -> str:
    config = configparser.ConfigParser()
    if not config.read(path):
        raise FileNotFoundError(f"{path}: the MLflow auth configuration is missing")
    return config["mlflow"]["database_uri"]


def sync_users(database_uri: str, users: Sequence[tuple[MlflowIdentity, bool]]) -> list[str]:
    """Each (identity, is_admin) exists in MLflow's auth store with that password; what changed, one line each."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    _reachable(database_uri)
    store = SqlAlchemyStore()
    # creates or migrates the auth tables (their own alembic_version_auth); MLflow leaves it untyped
    store.init_db(database_uri)  # type: ignore[no-untyped-call]
    changes = []
    try:
        for identity, is_admin in users:
            name = identity.username
            if not store.has_user(name, use_primary=True):
                store.create_user(name, identity.password, is_admin=is_admin)
                changes.append(f"created MLflow user {name}")
                continue
            if not store.authenticate_user(name, identity.password, use_primary=True):
                store.update_user(name, password=identity.password)
                changes.append(f"set the rotated password of MLflow user {name}")
            if store.get_user(name).is_admin != is_admin:
                store.update_user(name, is_admin=is_admin)
                changes.append(f"made MLflow user {name} {'an admin' if is_admin else 'a non-admin'} again")
    finally:
        store.engine.dispose()
    return changes


def users_in_place(url: str, users: Sequence[tuple[MlflowIdentity, bool]]) -> bool:
    """The running server answers each identity as itself, with its admin flag: nothing to do (the re-apply path;
    one request each)."""
    return all(_is_admin(url, identity) is is_admin for identity, is_admin in users)


def _is_admin(url: str, identity: MlflowIdentity) -> bool | None:
    """Whether the identity signs in as an admin; None when it does not sign in (or the server does not answer)."""
    try:
        response = requests.get(f"{url}/api/2.0/mlflow/users/current", auth=identity.auth, timeout=5)
        return bool(response.json().get("user", {}).get("is_admin")) if response.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None


def change_own_password(url: str, identity: MlflowIdentity, password: str) -> requests.Response:
    """What MLflow lets any signed-in user do (it asks for the current password)."""
    body = {"username": identity.username, "password": password, "current_password": identity.password}
    return requests.patch(f"{url}/api/2.0/mlflow/users/update-password", json=body, auth=identity.auth, timeout=10)


def take_over_bootstrap(url: str, writer_id: MlflowIdentity, bootstrap: str) -> bool:
    """A start that found no writer made it with the `bootstrap` password: the writer's own replaces it. False when
    the bootstrap password does not sign in (taken over before, or the writer was made otherwise). The change is
    the only request made with it, so the one worker that checks it is the one that forgets it (MLflow's login
    cache is per worker and the password change clears it there)."""
    changed = change_own_password(url, MlflowIdentity(writer_id.username, bootstrap), writer_id.password)
    if changed.status_code == 401:
        return False
    changed.raise_for_status()
    return True


def users_via_api(url: str, admin: MlflowIdentity, users: Sequence[tuple[MlflowIdentity, bool]]) -> list[str] | None:
    """Each (identity, is_admin) made or mended through the REST API as `admin`; what changed, one line each.
    None when `admin` does not sign in as an admin: only the store can mend that (`sync_users`)."""
    if _is_admin(url, admin) is not True:
        return None
    api, changes = f"{url}/api/2.0/mlflow/users", []
    for identity, is_admin in users:
        name, found = identity.username, _is_admin(url, identity)
        if found is None:  # missing, or its password is not the generated one
            known = requests.get(f"{api}/get", params={"username": name}, auth=admin.auth, timeout=10)
            missing = known.status_code == 404
            if not missing:
                known.raise_for_status()
            method, path = ("POST", "create") if missing else ("PATCH", "update-password")
            credentials = {"username": name, "password": identity.password}
            requests.request(method, f"{api}/{path}", json=credentials, auth=admin.auth, timeout=10).raise_for_status()
            changes.append(f"{'created' if missing else 'set the rotated password of'} MLflow user {name}")
            found = _is_admin(url, identity)
        if found is not is_admin:
            flag: dict[str, object] = {"username": name, "is_admin": is_admin}
            requests.patch(f"{api}/update-admin", json=flag, auth=admin.auth, timeout=10).raise_for_status()
            changes.append(f"made MLflow user {name} {'an admin' if is_admin else 'a non-admin'} again")
    return changes


def _reachable(database_uri: str) -> None:
    """One connection, bounded: MLflow's own engine retries a dead database for about 100 s."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_uri, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as err:
        # the driver's message, never the URI (whose password it would show)
        raise ConnectionError(f"MLflow's auth store is not reachable: {type(err).__name__}") from None
    finally:
        engine.dispose()


def claim_models(url: str, writer_id: MlflowIdentity, names: Sequence[str]) -> list[str]:
    """Each registered model exists, made by the writer: whoever creates a model owns it (MANAGE)."""
    made = []
    for name in names:
        if _registered_model(f"{url}/api/2.0/mlflow", writer_id, name)[1]:
            made.append(f"registered model {name} created by {writer_id.username}")
    return made


def claim_in_store(database_uri: str, names: Sequence[str]) -> list[str]:
    """The cluster's init container: each model made in the registry's own tables before the server answers
    anyone, so no signed-in user can create (and so own) it first. Made here it has no owner: READ
    (default_permission) to every non-admin, everything to the writer (an admin)."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    # creates MLflow's tables when they are missing (a first start), as the server would; MLflow leaves it untyped
    store = SqlAlchemyStore(database_uri)  # type: ignore[no-untyped-call]
    made = []
    try:
        for name in names:
            try:  # the insert is the check: an existing name (made before, or meanwhile by the writer) is kept
                store.create_registered_model(name)  # type: ignore[no-untyped-call]
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                continue
            made.append(f"registered model {name} created with no owner (READ to non-admins)")
    finally:
        store.engine.dispose()
    return made


def _registered_model(api: str, writer_id: MlflowIdentity, name: str) -> tuple[dict[str, Any], bool]:
    """(the registered model, created now): got, or created by the writer when missing."""
    found = requests.get(f"{api}/registered-models/get", params={"name": name}, auth=writer_id.auth, timeout=10)
    if found.status_code != 404:
        found.raise_for_status()
        return dict(found.json()["registered_model"]), False
    created = requests.post(f"{api}/registered-models/create", json={"name": name}, auth=writer_id.auth, timeout=10)
    created.raise_for_status()
    return dict(created.json()["registered_model"]), True


def with_password(uri: str, password: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(uri).set(password=password).render_as_string(hide_password=False)


@dataclass(frozen=True)
class AuthProof:
    anonymous_write: int
    reader_alias: int
    writer_alias: int
    reader_read: int
    reader_champion: int  # the reader aiming `champion` at version 0 (there is none: a leak moves nothing)

    @property
    def problems(self) -> list[str]:
        expected = {
            "anonymous_write": 401,
            "reader_alias": 403,
            "writer_alias": 200,
            "reader_read": 200,
            "reader_champion": 403,
        }
        return [
            f"{name}: HTTP {getattr(self, name)}, expected {want}"
            for name, want in expected.items()
            if getattr(self, name) != want
        ]


def prove_auth(
    url: str, writer_id: MlflowIdentity, reader_id: MlflowIdentity, artifact_bucket: str, model: str
) -> AuthProof:
    """An anonymous write is refused and leaves nothing behind, the reader reads but cannot move an alias, the
    writer can (on the checks' own model; its version points into the artifact bucket, the only host the server
    accepts a source on), and the reader cannot aim the production model's `champion` either."""
    api = f"{url}/api/2.0/mlflow"
    probe = f"_platform_auth_probe_{uuid.uuid4().hex[:8]}"
    anonymous = requests.post(f"{api}/experiments/create", json={"name": probe}, timeout=10).status_code
    left = requests.get(
        f"{api}/experiments/get-by-name", params={"experiment_name": probe}, auth=writer_id.auth, timeout=10
    )
    if left.status_code == 200:
        raise AssertionError(f"an anonymous request created experiment {probe}")
    version = _check_model_version(api, writer_id, f"s3://{artifact_bucket}/{CHECK_MODEL}/probe")
    alias = {"name": CHECK_MODEL, "alias": _PROBE_ALIAS, "version": version}
    by_reader = requests.post(f"{api}/registered-models/alias", json=alias, auth=reader_id.auth, timeout=10)
    by_writer = requests.post(f"{api}/registered-models/alias", json=alias, auth=writer_id.auth, timeout=10)
    read = requests.get(f"{api}/registered-models/get", params={"name": CHECK_MODEL}, auth=reader_id.auth, timeout=10)
    champion = {"name": model, "alias": "champion", "version": "0"}
    aimed = requests.post(f"{api}/registered-models/alias", json=champion, auth=reader_id.auth, timeout=10)
    return AuthProof(anonymous, by_reader.status_code, by_writer.status_code, read.status_code, aimed.status_code)


def _check_model_version(api: str, writer_id: MlflowIdentity, source: str) -> str:
    """Version 1 of the checks' model, made on first use: the alias probe needs a version to point at."""
    versions = _registered_model(api, writer_id, CHECK_MODEL)[0].get("latest_versions") or []
    if versions:
        return str(versions[0]["version"])
    made = requests.post(
        f"{api}/model-versions/create",
        json={"name": CHECK_MODEL, "source": source},
        auth=writer_id.auth,
        timeout=10,
    )
    made.raise_for_status()
    return str(made.json()["model_version"]["version"])


def main(argv: Sequence[str] | None = None) -> int:
    """The cluster's init container: the ini and the passwords come from the pod's ConfigMap and Secrets."""
    del argv
    uri = ini_database_uri(os.environ["MLFLOW_AUTH_CONFIG_PATH"])
    users = [
        (MlflowIdentity(WRITER, os.environ[WRITER_PASSWORD_ENV]), True),
        (MlflowIdentity(READER, os.environ[READER_PASSWORD_ENV]), False),
    ]
    models = [name for name in os.environ.get(CLAIM_MODELS_ENV, "").split(",") if name]
    for line in [*sync_users(uri, users), *claim_in_store(uri, models)] or ["MLflow users and models: no change"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
