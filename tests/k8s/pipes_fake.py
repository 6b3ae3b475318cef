"""The Kubernetes API fake, extended for dagster-k8s Pipes: a Pod's command runs for real, as a local process.

What dagster-k8s needs beyond the shared fake:
- a Pod handed to ``pod_runner`` ends as the kubelet leaves it, with a *terminated* container status (exit code 0
  or 1): ``wait_for_pod`` looks at container statuses, not at the phase;
- ``GET .../pods/<name>/log`` honours ``timestamps`` (one RFC 3339 stamp with nanoseconds per line, as the kubelet
  writes them, which the Pipes log reader splits messages on) and ``tailLines``. dagster-k8s reads logs with
  ``_preload_content=False``, so the kubernetes client's text/plain-to-"b'...'" quirk never applies.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client, config

from tests.k8s.fake_apiserver import FakeApiServer, _Handler
from tests.k8s.fake_controllers import Controllers
from tests.k8s.fake_store import Obj, clone
from tests.k8s.fake_types import ResourceType

POD_TIMEOUT = 600.0
PASSED_ENV = ("PATH", "HOME", "LANG", "TMPDIR")  # what a container's runtime would provide anyway


class PipesControllers(Controllers):
    def _pod(self, prt: ResourceType, pod: Obj) -> bool:
        fresh = pod["metadata"]["uid"] not in self._ran
        changed = super()._pod(prt, pod)
        if not fresh or pod["metadata"]["uid"] not in self._ran:
            return changed  # not (or no longer) a pod this step ran
        meta = pod["metadata"]
        stored = self.store.get(prt, meta["namespace"], meta["name"])
        stored["status"] = _terminated(stored)
        return self._put(prt, stored) or changed


def _terminated(pod: Obj) -> Obj:
    status = pod["status"]
    code = 0 if status["phase"] == "Succeeded" else 1
    started = status["startTime"]
    finished = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    statuses = [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": started,
                    "finishedAt": finished,
                }
            },
        }
        for c in pod["spec"]["containers"]
    ]
    conditions = [{"type": t, "status": "False", "lastTransitionTime": started} for t in ("Ready", "ContainersReady")]
    return {**status, "containerStatuses": statuses, "conditions": conditions}


class _PipesHandler(_Handler):
    def _resource(
        self, method: str, group: str, version: str, rest: list[str], query: dict[str, str], raw: bytes
    ) -> tuple[int, Any]:
        code, body = super()._resource(method, group, version, rest, query, raw)
        if method == "GET" and rest[-1:] == ["log"] and isinstance(body, str):
            pod = self.fake.store.get(self.fake.rtype("v1", "Pod"), rest[1], rest[3])
            body = shape_log(body, pod["metadata"]["creationTimestamp"], query)
        return code, body


def shape_log(log: str, started: str, query: dict[str, str]) -> str:
    """As the kubelet serves a container log: optionally the last lines only, optionally each line stamped."""
    lines = log.splitlines()
    if query.get("tailLines"):
        lines = lines[-int(query["tailLines"]) :] if int(query["tailLines"]) else []
    if query.get("timestamps", "").lower() in ("true", "1"):
        base = datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ")
        stamp = [(base + timedelta(microseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f") for i in range(len(lines))]
        lines = [f"{s}000Z {line}" for s, line in zip(stamp, lines, strict=True)]
    return "".join(f"{line}\n" for line in lines)


class PipesFakeApiServer(FakeApiServer):
    """``run_pods_locally(cwd)``: every new Pod's first container runs as a subprocess of this test, with the
    env values and envFrom Secrets a kubelet would give it; its output becomes the pod's log."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        old = self.controllers
        self.controllers = PipesControllers(self)
        self.controllers._seen, self.controllers._ran = old._seen, old._ran  # bootstrap pods keep their state
        self.ran_pods: list[Obj] = []
        self.cwd = Path.cwd()

    def start(self) -> PipesFakeApiServer:
        handler = type("Handler", (_PipesHandler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> PipesFakeApiServer:
        return self.start()

    def run_pods_locally(self, cwd: Path) -> None:
        self.cwd = cwd
        self.pod_runner = self._run_locally

    def _run_locally(self, pod: Obj) -> tuple[str, str]:
        """Called under the store's lock: reads Secrets from the store directly, never through the API."""
        self.ran_pods.append(clone(pod))
        container = pod["spec"]["containers"][0]
        try:
            env = {**{k: os.environ[k] for k in PASSED_ENV if k in os.environ}, **self._container_env(pod)}
        except LookupError as err:  # the kubelet's CreateContainerConfigError, shortened to a failed pod
            return "Failed", str(err.args[0])
        argv = [*container.get("command", []), *container.get("args", [])]
        argv = [sys.executable, *argv[1:]] if argv[:1] == ["python"] else argv
        done = subprocess.run(
            argv, cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=POD_TIMEOUT
        )
        return ("Succeeded" if done.returncode == 0 else "Failed"), done.stdout.decode(errors="replace")

    def _container_env(self, pod: Obj) -> dict[str, str]:
        container, ns = pod["spec"]["containers"][0], pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            name = source["secretRef"]["name"]
            secret = self.store.find(self.rtype("v1", "Secret"), ns, name)
            if secret is None:
                raise LookupError(f'Error: secret "{name}" not found')
            data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            env.update(data)  # the server folded any stringData into data
        env.update({e["name"]: e.get("value", "") for e in container.get("env") or []})
        return env


@dataclass
class PipesCluster:
    """A started PipesFakeApiServer whose pods run this checkout's code, a state dir with its kubeconfig (what a
    step runner reads) and a CoreV1Api on it with the namespace the platform creates."""

    fake: PipesFakeApiServer
    state_dir: Path
    api: client.CoreV1Api
    namespace: str
    runner: Any = None  # the step runner a test points at this cluster

    def put_secret(self, name: str, values: dict[str, str]) -> None:
        data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        self.api.create_namespaced_secret(self.namespace, {"metadata": {"name": name}, "data": data})


@contextmanager
def pipes_cluster(tmp_path: Path, repo: Path, namespace: str) -> Iterator[PipesCluster]:
    with PipesFakeApiServer(repo_root=tmp_path / "repo") as fake:
        fake.run_pods_locally(repo)
        state = tmp_path / "state"
        state.mkdir()
        fake.write_kubeconfig(state / "kubeconfig")
        api_client = config.new_client_from_config(config_file=str(state / "kubeconfig"))
        api = client.CoreV1Api(api_client)
        api.create_namespace({"metadata": {"name": namespace}})
        try:
            yield PipesCluster(fake, state, api, namespace)
        finally:
            api_client.close()
