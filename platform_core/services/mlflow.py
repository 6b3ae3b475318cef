"""A real `mlflow server` on the platform's Postgres, with artifacts proxied to SeaweedFS S3."""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from platform_core.resource import PlatformResource
from platform_core.services import mlflow_auth
from platform_core.services.mlflow_auth import INI_NAME, WRITER, MlflowIdentity
from platform_core.services.mlflow_rest import ARTIFACTS, MlflowRest
from platform_core.services.seaweedfs import ADMIN, SeaweedFSResource
from platform_core.supervisor import EnsureResult, ServiceSpec

CHECK_EXPERIMENT = "_platform_checks"


@dataclass(frozen=True)
class MlflowRoundTrip:
    experiment_id: str
    run_id: str
    artifact_key: str


class MlflowResource(PlatformResource):
    """The tracking server: its process, its URL and a function probe."""

    @property
    def url(self) -> str:
        host, port = self.address("mlflow_server", self.cfg.services.mlflow.port)
        return f"http://{host}:{port}"

    @property
    def backend_role(self) -> str:
        return next(db.owner for db in self.cfg.databases if db.name == self.cfg.mlflow.database)

    @property
    def artifact_identity(self) -> str:
        return self.cfg.bucket(self.cfg.mlflow.artifact_bucket).owner

    @property
    def backend_uri(self) -> str:
        """Without its password (PGPASSWORD): also the auth store's, whose tables sit beside the tracking ones."""
        cfg = self.cfg
        return f"postgresql+psycopg2://{self.backend_role}@127.0.0.1:{cfg.services.postgres.port}/{cfg.mlflow.database}"

    @property
    def writer(self) -> MlflowIdentity:
        return mlflow_auth.writer(self.state.credentials)

    @property
    def reader(self) -> MlflowIdentity:
        return mlflow_auth.reader(self.state.credentials)

    def ensure_users(self) -> list[str]:
        """The writer and the reader, once the server answers (see mlflow_auth): nothing when both sign in as
        themselves; else, after taking over a writer-less start's bootstrap password, mended through the REST API
        as the writer, or through MLflow's auth store when the writer cannot sign in (a rotated password)."""
        users = [(self.writer, True), (self.reader, False)]
        if mlflow_auth.users_in_place(self.url, users):
            return []
        bootstrap = self.state.credentials.token(mlflow_auth.BOOTSTRAP_TOKEN)
        made = []
        if mlflow_auth.take_over_bootstrap(self.url, self.writer, bootstrap):
            made.append(f"MLflow user {WRITER} made by the server's start, its password set")
        mended = mlflow_auth.users_via_api(self.url, self.writer, users)
        if mended is None:
            password = self.state.credentials.postgres_password(self.backend_role)
            mended = mlflow_auth.sync_users(mlflow_auth.with_password(self.backend_uri, password), users)
        return made + mended

    def claim_models(self) -> list[str]:
        """The production model and the checks' model, made by the writer before anyone else can own them."""
        return mlflow_auth.claim_models(self.url, self.writer, [self.cfg.ml.model_name, mlflow_auth.CHECK_MODEL])

    def service_spec(self) -> ServiceSpec:
        cfg = self.cfg
        access, secret = self.state.credentials.s3_keys(self.artifact_identity)
        env = {
            # the password travels in the environment, never on a command line that `ps` shows
            "MLFLOW_BACKEND_STORE_URI": self.backend_uri,
            "PGPASSWORD": self.state.credentials.postgres_password(self.backend_role),
            "MLFLOW_AUTH_CONFIG_PATH": str(self.state.etc / INI_NAME),
            # signs the UI's sessions and CSRF tokens: the same in every worker
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.state.credentials.token(mlflow_auth.FLASK_SECRET_TOKEN),
            # the writer's password after a start that found none, until ensure_users replaces it: never its own
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.state.credentials.token(mlflow_auth.BOOTSTRAP_TOKEN),
            "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{cfg.services.seaweedfs.s3_port}",
            "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # else 9 worker processes and ~2.4 GB
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        return ServiceSpec(
            name="mlflow",
            argv=(
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--app-name",
                mlflow_auth.APP_NAME,
                "--host",
                "127.0.0.1",
                "--port",
                str(cfg.services.mlflow.port),
                "--workers",
                str(cfg.services.mlflow.workers),
                "--artifacts-destination",
                f"s3://{cfg.mlflow.artifact_bucket}",
            ),
            env=env,
            files={self.state.etc / INI_NAME: mlflow_auth.auth_ini(self.backend_uri)},
            health=self.is_healthy,
            ports=(cfg.services.mlflow.port,),
            stop_timeout=10.0,
            start_timeout=120.0,
        )

    def ensure_server(self) -> EnsureResult:
        return self.supervisor.ensure(self.service_spec())

    def is_healthy(self) -> bool:
        return requests.get(f"{self.url}/health", timeout=2).status_code == 200

    def server_version(self) -> str:
        response = requests.get(f"{self.url}/version", auth=self.writer.auth, timeout=5)
        response.raise_for_status()
        return response.text.strip()

    def experiment_count(self) -> int:
        response = requests.post(
            f"{self.url}/api/2.0/mlflow/experiments/search",
            json={"max_results": 1000},
            auth=self.writer.auth,
            timeout=10,
        )
        response.raise_for_status()
        return len(response.json().get("experiments", []))

    def get_experiment(self, name: str) -> dict[str, Any] | None:
        response = requests.get(
            f"{self.url}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": name},
            auth=self.writer.auth,
            timeout=10,
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        experiment: dict[str, Any] = response.json()["experiment"]
        return experiment

    def ensure_experiment(self, name: str) -> tuple[str, bool]:
        """(experiment id, created now); a deleted experiment is restored rather than shadowed."""
        experiment = self.get_experiment(name)
        if experiment is None:
            response = requests.post(
                f"{self.url}/api/2.0/mlflow/experiments/create", json={"name": name}, auth=self.writer.auth, timeout=10
            )
            response.raise_for_status()
            return response.json()["experiment_id"], True
        if experiment["lifecycle_stage"] != "active":
            requests.post(
                f"{self.url}/api/2.0/mlflow/experiments/restore",
                json={"experiment_id": experiment["experiment_id"]},
                auth=self.writer.auth,
                timeout=10,
            ).raise_for_status()
            return experiment["experiment_id"], True
        return experiment["experiment_id"], False

    def round_trip(self, s3: SeaweedFSResource) -> MlflowRoundTrip:
        """Create or get an experiment, log an artifact through the server, read it back, find it in S3.

        Through MLflow's REST API, as its client would call it: the client's import is most of a second, and this
        check runs on every `up`."""
        try:  # a down server fails the check at once (a client would retry it for minutes)
            requests.get(f"{self.url}/health", timeout=5).raise_for_status()
        except requests.RequestException as err:
            raise ConnectionError(f"mlflow server at {self.url} is not reachable: {err}") from err
        experiment_id, _ = self.ensure_experiment(CHECK_EXPERIMENT)
        rest = MlflowRest(self.url, self.writer.auth)
        run = rest.post("runs/create", {"experiment_id": experiment_id, "run_name": "platform-check"})["run"]["info"]
        token = uuid.uuid4().hex
        try:
            root = run["artifact_uri"].split(":/", 1)[1]  # mlflow-artifacts:/<experiment>/<run>/artifacts
            artifact = f"{self.url}/{ARTIFACTS}/{root}/probe.txt"  # the server's proxy
            requests.put(artifact, data=token.encode(), auth=self.writer.auth, timeout=30).raise_for_status()
            back = requests.get(artifact, auth=self.writer.auth, timeout=30)
            back.raise_for_status()
            if back.text != token:
                raise AssertionError("artifact read back through MLflow differs from what was logged")
            key = self._find_in_bucket(s3, experiment_id, run["run_id"])
        finally:  # check runs are bookkeeping, not experiments: leave neither the run nor its artifact behind
            rest.post("runs/delete", {"run_id": run["run_id"]})
            self._delete_artifacts(s3, experiment_id, run["run_id"])
        return MlflowRoundTrip(experiment_id, run["run_id"], key)

    def _delete_artifacts(self, s3: SeaweedFSResource, experiment_id: str, run_id: str) -> None:
        admin, bucket = s3.client(ADMIN), self.cfg.mlflow.artifact_bucket
        listing = admin.list_objects_v2(Bucket=bucket, Prefix=f"{experiment_id}/{run_id}/")
        for obj in listing.get("Contents", []):
            admin.delete_object(Bucket=bucket, Key=obj["Key"])

    def _find_in_bucket(self, s3: SeaweedFSResource, experiment_id: str, run_id: str) -> str:
        bucket = self.cfg.mlflow.artifact_bucket
        listing = s3.client(ADMIN).list_objects_v2(Bucket=bucket, Prefix=f"{experiment_id}/{run_id}/")
        keys = [obj["Key"] for obj in listing.get("Contents", [])]
        if not keys:
            raise AssertionError(f"artifact of run {run_id} is not in s3://{bucket}: the proxy is not writing to S3")
        return str(keys[0])
