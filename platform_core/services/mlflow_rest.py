"""MLflow's REST API (https://mlflow.org/docs/latest/api_reference/rest-api.html), for the calls every `up` makes.

The platform's checks and the pipeline's "no change" passes only read: a run, a registry version, an alias, a
version's files. Through MLflow's Python client each of them first costs the client's import, most of a second
(pandas and MLflow's data modules come with it); these are the same documented endpoints the client calls. What
writes a model (logging, registering) stays with the client.
"""

from __future__ import annotations

import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

ARTIFACTS = "api/2.0/mlflow-artifacts/artifacts"  # the tracking server's artifact proxy (mlflow-artifacts:/ URIs)
DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
NO_SUCH_ALIAS = "INVALID_PARAMETER_VALUE"  # what MLflow answers for an alias no version carries
DOWNLOAD_THREADS = 4  # within the session's connection pool (requests: 10 per host)


def _error_code(response: requests.Response) -> str | None:
    try:
        return str(response.json().get("error_code"))
    except ValueError:
        return None


class MlflowRest:
    def __init__(self, url: str, auth: tuple[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self._auth = auth  # None: whoever the environment names, read at each call as MLflow's client does
        # reads are retried as MLflow's client retries them: a refused connection or a busy server's 429/5xx
        retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(429, 502, 503, 504), allowed_methods={"GET"})
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    @property
    def auth(self) -> tuple[str, str] | None:
        if self._auth is not None:
            return self._auth
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        return (user, password) if user and password else None

    def get(self, method: str, absent: tuple[str, ...] = (DOES_NOT_EXIST,), **params: str) -> dict[str, Any] | None:
        """The answer of GET api/2.0/mlflow/<method>; None when MLflow answers with an error code in `absent`."""
        response = self.session.get(f"{self.url}/api/2.0/mlflow/{method}", params=params, auth=self.auth, timeout=30)
        if response.status_code in (400, 404) and _error_code(response) in absent:
            return None
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def post(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.session.post(f"{self.url}/api/2.0/mlflow/{method}", json=body, auth=self.auth, timeout=30)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def version_root(self, name: str, version: str) -> str:
        """Where a registry version's files are, as a path under the artifact proxy: the version's download URI,
        as MLflow's client resolves it (its storage location, else its source)."""
        found = self.get("model-versions/get-download-uri", name=name, version=version)
        if found is None:
            raise LookupError(f"model {name} v{version} is not in the registry")
        uri = str(found["artifact_uri"])
        if uri.startswith("models:/m-"):  # MLflow 3: the logged model the version was registered from
            logged = self.get(f"logged-models/{uri.removeprefix('models:/')}")
            if logged is None:
                raise LookupError(f"model {name} v{version}: its logged model {uri} is gone")
            uri = str(logged["model"]["info"]["artifact_uri"])
        elif uri.startswith("runs:/"):  # registered from a run's artifact path
            run_id, _, path = uri.removeprefix("runs:/").partition("/")
            run = self.get("runs/get", run_id=run_id)
            if run is None:
                raise LookupError(f"model {name} v{version}: its run {run_id} is gone")
            uri = f"{run['run']['info']['artifact_uri'].rstrip('/')}/{path}".rstrip("/")
        if not uri.startswith("mlflow-artifacts:/"):
            raise ValueError(f"model {name} v{version}: files at {uri}, not behind the tracking server's proxy")
        return uri.removeprefix("mlflow-artifacts:").lstrip("/")

    def download_tree(self, root: str, destination: Path) -> Path:
        """Every file below `root` (a path under the artifact proxy) into `destination`, as the client would, a few
        at a time (a model is ~7 small files, each a round trip of ~15 ms)."""
        with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS) as pool:
            # list() re-raises the first failure
            list(pool.map(lambda relative: self._download(root, relative, destination), self._files(root)))
        return destination

    def _download(self, root: str, relative: str, destination: Path) -> None:
        target = destination.joinpath(*relative.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        url = f"{self.url}/{ARTIFACTS}/{root}/{relative}"
        with self.session.get(url, auth=self.auth, timeout=60, stream=True) as response:
            response.raise_for_status()
            with target.open("wb") as handle:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    handle.write(chunk)

    def _files(self, root: str, below: str = "") -> list[str]:
        path = posixpath.join(root, below) if below else root
        response = self.session.get(f"{self.url}/{ARTIFACTS}", params={"path": path}, auth=self.auth, timeout=30)
        response.raise_for_status()
        files: list[str] = []
        for entry in response.json().get("files", []):  # each named by its basename (the proxy's listing)
            if entry["path"] in ("", ".", "..") or "/" in entry["path"]:
                raise ValueError(f"the artifact proxy listed {entry['path']!r} under {path}: not a file name")
            relative = posixpath.join(below, entry["path"]) if below else entry["path"]
            files += self._files(root, relative) if entry.get("is_dir") else [relative]
        return files
