"""The inference service as a platform resource: its process, its URL and a small client."""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import requests

from platform_core.resource import PlatformResource
from platform_core.services.mlflow_auth import READER
from platform_core.supervisor import EnsureResult, ServiceSpec


class InferenceResource(PlatformResource):
    @property
    def url(self) -> str:
        host, port = self.address("inference_service", self.cfg.services.inference.port)
        return f"http://{host}:{port}"

    def service_spec(self) -> ServiceSpec:
        return ServiceSpec(
            name="inference",
            argv=(
                sys.executable,
                "-m",
                "ml_assets.serving",
                "--config",
                self.config_path,
                "--state-dir",
                self.state_dir,
            ),
            health=self.is_up,
            ports=(self.cfg.services.inference.port,),
            # The service reads platform.yaml itself; this digest of what it reads makes a change to any of it
            # change the config hash, so the asset restarts it and drift reports it.
            env={"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "SERVING_CONFIG": self._digest()},
            stop_timeout=15.0,  # the shutdown writes the buffered predictions to S3 first
            start_timeout=90.0,
        )

    def _digest(self) -> str:
        cfg = self.cfg
        credentials = self.state.credentials
        read = (
            cfg.services.inference,
            cfg.services.mlflow.port,
            cfg.services.seaweedfs.s3_port,
            cfg.ml.model_name,
            cfg.ml.predictions_bucket,
            # the credentials it reads at start: rotated ones restart it (only a digest of them is in its env)
            credentials.s3_keys(cfg.bucket(cfg.ml.predictions_bucket).owner),
            credentials.mlflow_password(READER),
        )
        return hashlib.sha256(repr(read).encode()).hexdigest()[:16]

    def ensure_server(self) -> EnsureResult:
        return self.supervisor.ensure(self.service_spec())

    def is_up(self) -> bool:
        # /metrics, not /health: the process is up (and can be told to /reload) before any champion exists
        return requests.get(f"{self.url}/metrics", timeout=2).status_code == 200

    def reload(self) -> dict[str, Any]:
        """Load the current champion; raises with the service's reason when there is none or it fails."""
        response = requests.post(f"{self.url}/reload", timeout=120)
        if not response.ok:
            raise RuntimeError(f"POST {self.url}/reload: {response.status_code} {_detail(response)}")
        return response.json()

    def model_info(self) -> dict[str, Any] | None:
        """What is served (name, version, run, metrics), or None while no model is loaded."""
        response = requests.get(f"{self.url}/model", timeout=10)
        if response.status_code == 503:
            return None
        response.raise_for_status()
        return response.json()

    def predict(self, listing: dict[str, Any]) -> float:
        response = requests.post(f"{self.url}/predict", json=listing, timeout=30)
        if not response.ok:
            raise RuntimeError(f"POST {self.url}/predict: {response.status_code} {_detail(response)}")
        return float(response.json()["price"])


def _detail(response: requests.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]
