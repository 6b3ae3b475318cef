"""The command lines the k3s pods run: serving settings from the environment, and the data API's admin token."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from ml_assets.data import offline_api
from ml_assets.serving import __main__ as serving_main
from ml_assets.serving.__main__ import SettingsError, settings_from_env
from ml_assets.serving.settings import ServingSettings

SECRET = "do-not-print-this-s3-secret"
TOKEN = "admin-token-for-tests"
ENV = {
    "SERVING_TRACKING_URI": "http://mlflow.mlops.svc.cluster.local:5000",
    "SERVING_MODEL_NAME": "housing-price",
    "SERVING_S3_ENDPOINT": "http://seaweedfs.mlops.svc.cluster.local:8333",
    "SERVING_S3_ACCESS_KEY": "ml-access",
    "SERVING_S3_SECRET_KEY": SECRET,
    "SERVING_PREDICTIONS_BUCKET": "predictions",
    "SERVING_THREADS": "2",
    "SERVING_MAX_BATCH_ROWS": "500",
}


# --- serving: settings from SERVING_<FIELD> ---------------------------------------------------------------------


def test_settings_from_env_complete() -> None:
    # SERVING_CONFIG is what the local target sets (a digest): a SERVING_ name that is no field is ignored
    settings = settings_from_env({**ENV, "SERVING_CONFIG": "abc123", "UNRELATED": "x"})
    assert settings.tracking_uri == ENV["SERVING_TRACKING_URI"] and settings.s3_endpoint == ENV["SERVING_S3_ENDPOINT"]
    assert (settings.model_name, settings.predictions_bucket) == ("housing-price", "predictions")
    assert (settings.s3_access_key, settings.s3_secret_key) == ("ml-access", SECRET)
    assert (settings.threads, settings.max_batch_rows) == (2, 500)  # parsed from strings
    assert (settings.alias, settings.max_body_bytes, settings.log_flush_rows) == ("champion", 1_048_576, 10_000)
    assert SECRET not in repr(settings)


@pytest.mark.parametrize("missing", ["SERVING_TRACKING_URI", "SERVING_S3_SECRET_KEY", "SERVING_MODEL_NAME"])
def test_settings_from_env_names_the_missing_variable(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(SettingsError, match=rf"^environment variable {missing} is not set or empty$"):
        settings_from_env(env)
    with pytest.raises(SettingsError, match=missing):  # empty counts as unset: "" is no usable key or URI
        settings_from_env({**env, missing: ""})


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [("SERVING_THREADS", "many", "valid integer"), ("SERVING_MAX_BODY_BYTES", "12", "greater than or equal to 1024")],
)
def test_settings_from_env_names_the_invalid_variable_without_values(name: str, value: str, rule: str) -> None:
    with pytest.raises(SettingsError) as err:
        settings_from_env({**ENV, name: value})
    message = str(err.value)
    assert message.startswith(f"environment variable {name}: ") and rule in message
    assert "\n" not in message and SECRET not in message and f"'{value}'" not in message


def test_main_reports_a_bad_environment_in_one_line_without_the_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {**ENV, "SERVING_THREADS": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SERVING_TRACKING_URI")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("must not serve"))
    with pytest.raises(SystemExit) as exit_info:
        serving_main.main(["--settings-from-env", "--port", "8000"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].endswith("error: environment variable SERVING_TRACKING_URI is not set or empty")
    assert SECRET not in err


def test_main_serves_env_settings_on_the_given_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # main setdefaults MLflow's client variables; setting them here first lets monkeypatch restore the environment
    mlflow_env = ["MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_DISABLE_TELEMETRY"]
    for name, value in {**ENV, **dict.fromkeys(mlflow_env, "1"), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "0"}.items():
        monkeypatch.setenv(name, value)
    seen: dict[str, Any] = {}

    def fake_create_app(settings: ServingSettings) -> SimpleNamespace:
        seen["settings"] = settings
        # main's startup reload finds no registry, logs it and serves anyway
        return SimpleNamespace(state=SimpleNamespace(slot=SimpleNamespace(reload=fail)))

    def fail() -> None:
        raise ConnectionError("no registry in a unit test")

    monkeypatch.setattr(serving_main, "create_app", fake_create_app)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    serving_main.main(["--host", "0.0.0.0", "--port", "8123", "--settings-from-env"])
    assert (seen["host"], seen["port"]) == ("0.0.0.0", 8123)
    assert seen["settings"].tracking_uri == ENV["SERVING_TRACKING_URI"]


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--config", "p.yaml", "--state-dir", "s", "--settings-from-env", "--port", "1"], "not allowed with"),
        (["--state-dir", "s"], "one of the arguments --config --settings-from-env is required"),
        (["--config", "p.yaml"], "--config needs --state-dir"),
        (["--settings-from-env", "--port", "1", "--state-dir", "s"], "--state-dir goes with --config"),
        (["--settings-from-env"], "--settings-from-env needs --port"),
    ],
)
def test_serving_arguments_are_exclusive(argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serving_main._parse_args(argv)
    assert exit_info.value.code == 2 and complaint in capsys.readouterr().err


def test_serving_local_arguments_keep_loopback() -> None:
    _, args = serving_main._parse_args(["--config", "p.yaml", "--state-dir", "s"])
    assert (args.host, args.port, args.settings_from_env) == ("127.0.0.1", None, False)


# --- data API: the admin token ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded() -> Iterator[TestClient]:
    with TestClient(offline_api.create_app(10, 2, admin_token=TOKEN)) as client:
        yield client


def test_admin_needs_the_bearer_token(guarded: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": ""}):
        response = guarded.get("/admin/drift", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer" and TOKEN not in response.text
        assert guarded.post("/admin/drift", json={"kind": "nulls"}, headers=headers).status_code == 401
    assert guarded.get("/admin/unknown").status_code == 401  # every /admin path, not only the routes
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.post("/admin/drift", json={"kind": "shift"}, headers=auth).json()["kind"] == "shift"
    assert guarded.get("/admin/drift", headers={"authorization": f"bearer {TOKEN}"}).json()["kind"] == "shift"
    assert guarded.post("/admin/drift", json={"kind": "none"}, headers=auth).status_code == 200


def test_data_and_health_stay_open_with_a_token(guarded: TestClient) -> None:
    assert guarded.get("/health").status_code == 200
    assert len(guarded.get("/data", params={"group_number": 1, "day": 0}).json()["data"]) == 10


def test_without_a_token_admin_is_open_as_before() -> None:
    with TestClient(offline_api.create_app(10, 2)) as client:
        assert client.get("/admin/drift").json()["kind"] == "none"
    with pytest.raises(ValueError, match="must not be empty"):
        offline_api.create_app(10, 2, admin_token=" ")


def test_data_api_main_reads_the_token_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    monkeypatch.delenv("TEST_DATA_API_TOKEN", raising=False)
    argv = ["--port", "8001", "--batch-rows", "10", "--batches", "2", "--admin-token-env", "TEST_DATA_API_TOKEN"]
    with pytest.raises(SystemExit):
        offline_api.main(argv)
    assert "TEST_DATA_API_TOKEN is not set or empty" in capsys.readouterr().err and not seen

    monkeypatch.setenv("TEST_DATA_API_TOKEN", f"{TOKEN}\n")  # a Secret made from a file often ends in a newline
    offline_api.main([*argv, "--host", "0.0.0.0"])
    assert (seen["host"], seen["port"]) == ("0.0.0.0", 8001)
    client = TestClient(seen["app"])
    assert client.get("/admin/drift").status_code == 401
    assert client.get("/admin/drift", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert TOKEN not in capsys.readouterr().err

    offline_api.main(["--port", "8001", "--batch-rows", "10", "--batches", "2"])  # the local target's command line
    assert seen["host"] == "127.0.0.1" and TestClient(seen["app"]).get("/admin/drift").status_code == 200
