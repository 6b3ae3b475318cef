"""The base every local-target resource shares: where the config is and where the state lives."""

from __future__ import annotations

import json
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg

from platform_core.cluster.kube_error import KubeError
from platform_core.config import PlatformConfig, load_config
from platform_core.settings import in_cluster
from platform_core.state import StateDir, is_planning
from platform_core.supervisor import Supervisor

KUBECONFIG_FILE = "kubeconfig"  # k3s target: fetched from the host by k3s_cluster
ENDPOINTS_FILE = "endpoints.json"  # k3s target: service -> its LoadBalancer host and port, or its port-forward


@lru_cache(maxsize=8)
def _cached_config(path: str, mtime_ns: int) -> PlatformConfig:
    return load_config(path)


@lru_cache(maxsize=8)
def _prepared_state(root: str) -> StateDir:
    return StateDir(Path(root)).ensure()


def read_config(path: str) -> PlatformConfig:
    """Parse once per file version: resources are rebuilt per step, the file rarely changes."""
    return _cached_config(path, Path(path).stat().st_mtime_ns)


def recorded_endpoints(state: StateDir) -> dict[str, Any]:
    """How the workstation reaches each k3s service, as its asset recorded it (endpoints.json; {} before any)."""
    path = state.root / ENDPOINTS_FILE
    return dict(json.loads(path.read_text())) if path.exists() else {}


def recorded_endpoint(state: StateDir, service: str) -> dict[str, Any]:
    """How the workstation reaches one k3s service, as its asset recorded it."""
    found = recorded_endpoints(state).get(service)
    if not found:
        raise RuntimeError(f"no address recorded for {service}: materialize it first")
    return dict(found)


def service_address(cfg: PlatformConfig, state: StateDir, service: str, local_port: int) -> tuple[str, int]:
    """Where a platform service answers: 127.0.0.1 in the local target; in the k3s target, what its asset
    recorded in the state directory when Argo CD had it Healthy: its LoadBalancer address, or for a service
    kept off the LAN (k3s.exposure), a port-forward this process opens on 127.0.0.1. In a pod of the cluster,
    the Service's DNS name."""
    if cfg.target == "local":
        return "127.0.0.1", local_port
    if in_cluster():  # a pod of the orchestrator: the Service's cluster DNS name
        from platform_core.cluster.addresses import service_dns_address

        return service_dns_address(cfg, service)
    found = recorded_endpoint(state, service)
    if "service" in found:  # in the cluster only
        from platform_core.cluster.port_forward import forwarded_port

        kubeconfig = state.root / KUBECONFIG_FILE
        return "127.0.0.1", forwarded_port(kubeconfig, found["namespace"], found["service"], int(found["port"]))
    return str(found["host"]), int(found["port"])


class PlatformResource(dg.ConfigurableResource):  # type: ignore[type-arg]  # its type parameter is Dagster-internal
    """Knows the stack's description (`config_path`) and its state directory (`state_dir`)."""

    config_path: str
    state_dir: str

    @property
    def cfg(self) -> PlatformConfig:
        return read_config(self.config_path)

    @property
    def state(self) -> StateDir:
        if is_planning():  # not the cached one: that one has made its directories
            return StateDir(Path(self.state_dir))
        return _prepared_state(self.state_dir)

    def address(self, service: str, local_port: int) -> tuple[str, int]:
        return service_address(self.cfg, self.state, service, local_port)

    def answers(self, service: str, local_port: int) -> bool:
        """Whether the service takes a connection now. Behind a port-forward that is a ready pod behind its
        Service: the local listener itself accepts whether or not anything is there."""
        try:
            found = None if self.cfg.target == "local" or in_cluster() else self._recorded(service)
            if found and "service" in found:
                from platform_core.cluster.kube import KubeClient
                from platform_core.cluster.port_forward import ready_pod

                kube = KubeClient.from_kubeconfig(self.state.root / KUBECONFIG_FILE)
                try:
                    ready_pod(kube, found["namespace"], found["service"], int(found["port"]))
                finally:
                    kube.close()
                return True
            socket.create_connection(self.address(service, local_port), timeout=2).close()
            return True
        except (OSError, RuntimeError, LookupError, KubeError):  # RuntimeError: no address recorded yet
            return False

    def _recorded(self, service: str) -> dict[str, Any]:
        return recorded_endpoint(self.state, service)

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.state.run, self.state.logs)
