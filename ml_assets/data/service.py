"""The offline data API as a supervised local service, like the tracking server."""

from __future__ import annotations

import sys
from pathlib import Path

import requests

from platform_core.config import PlatformConfig
from platform_core.resource import PlatformResource
from platform_core.supervisor import EnsureResult, ServiceSpec

DATA_API_TOKEN = "data-api-admin"  # the credentials name of the token the k3s Secret carries
# the child imports `ml_assets` from this checkout, whatever the caller's cwd or editable install points at
REPO_ROOT = Path(__file__).resolve().parents[2]


def offline_api_url(cfg: PlatformConfig) -> str:
    return f"http://127.0.0.1:{cfg.services.data_api.port}"


class DataApiResource(PlatformResource):
    """The bundled data API: its process, its URL and its drift switch."""

    @property
    def url(self) -> str:
        host, port = self.address("data_api", self.cfg.services.data_api.port)
        return f"http://{host}:{port}"

    def service_spec(self) -> ServiceSpec:
        cfg = self.cfg
        port = cfg.services.data_api.port
        return ServiceSpec(
            name="data_api",
            argv=(
                sys.executable,
                "-m",
                "ml_assets.data.offline_api",
                "--port",
                str(port),
                "--batch-rows",
                str(cfg.ml.batch_rows),
                "--batches",
                str(cfg.ml.batches),
            ),
            health=self.is_healthy,
            ports=(port,),
            cwd=REPO_ROOT,
            start_timeout=60.0,
        )

    def ensure_server(self) -> EnsureResult:
        return self.supervisor.ensure(self.service_spec())

    def is_healthy(self) -> bool:
        return requests.get(f"{self.url}/health", timeout=2).status_code == 200

    def _admin_headers(self) -> dict[str, str]:
        """In the k3s target the data API is off loopback (in the cluster, or on the LAN when k3s.exposure says so),
        so /admin wants the token the platform generated."""
        if self.cfg.target != "k3s":
            return {}  # local: loopback only, no token
        return {"Authorization": f"Bearer {self.state.credentials.token(DATA_API_TOKEN)}"}

    def drift(self) -> dict[str, object]:
        response = requests.get(f"{self.url}/admin/drift", headers=self._admin_headers(), timeout=5)
        response.raise_for_status()
        return response.json()

    def set_drift(self, kind: str, strength: float = 1.0, columns: list[str] | None = None) -> dict[str, object]:
        """Inject drift into every batch served from now on; kind "none" restores the real data."""
        body: dict[str, object] = {"kind": kind, "strength": strength}
        if columns is not None:
            body["columns"] = columns
        response = requests.post(f"{self.url}/admin/drift", json=body, headers=self._admin_headers(), timeout=5)
        if response.status_code == 422:
            errors = response.json().get("detail", [])
            detail = "; ".join(str(e.get("msg", e)) for e in errors) if isinstance(errors, list) else str(errors)
            raise ValueError(f"data API at {self.url} refused drift {body}: {detail}")
        response.raise_for_status()
        return response.json()
