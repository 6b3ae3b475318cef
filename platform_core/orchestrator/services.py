"""Dagster's webserver and daemon as supervised services of the stack, and the probes that test their function:
the webserver answers GraphQL for both code locations, the daemon's heartbeats in the instance are fresh."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import requests
import yaml

from platform_core.dagster_storage import PASSWORD_ENV
from platform_core.orchestrator.instance import instance_env, instance_file, instance_yaml, open_instance
from platform_core.resource import PlatformResource
from platform_core.source_digest import code_digest
from platform_core.supervisor import ServiceSpec

if TYPE_CHECKING:
    import dagster as dg

LOCATIONS = {"platform_assets": "platform_assets.definitions", "ml_assets": "ml_assets.definitions"}
CODE_SERVERS = {"platform_assets": "dagster_code_platform", "ml_assets": "dagster_code_ml"}  # location -> service
GRPC_HEALTH_SERVICE = "DagsterApi"  # what Dagster's gRPC server reports SERVING once its code is loaded
WATCHED_DAEMONS = ("SENSOR", "SCHEDULER")  # what evaluates the alerting sensors and the health schedule
# in the cluster, runs are queued, then launched and watched as Jobs: those daemons too
CLUSTER_DAEMONS = (*WATCHED_DAEMONS, "QUEUED_RUN_COORDINATOR", "MONITORING")
HEARTBEAT_STALE_SECONDS = 90  # the daemon beats every 30 s: three missed beats mean it is gone

WATCHDOG_BEAT = "watchdog-beat.json"  # in the run directory: the watchdog's last round (time, findings)
WATCHDOG_STALE_ROUNDS = 3  # rounds without a beat before the watchdog counts as gone


def heartbeat_ages(
    beats: dict[str, float], now: float, watched: tuple[str, ...] = WATCHED_DAEMONS
) -> tuple[dict[str, float], list[str]]:
    """(seconds since each watched daemon's newest heartbeat, the watched daemons that are stale or never beat):
    the one judgement `platformctl status` and the daemons' checks report."""
    ages = {name: now - beats[name] for name in watched if name in beats}
    stale = [name for name in watched if ages.get(name, float("inf")) > HEARTBEAT_STALE_SECONDS]
    return ages, stale


def unloaded_locations(workspace: dict[str, object]) -> tuple[list[str], list[str]]:
    """(the locations the webserver lists, each code location not loaded with why) from WORKSPACE_QUERY's answer."""
    entries = workspace["workspaceOrError"]["locationEntries"]  # type: ignore[index]
    loaded = {e["name"]: e["locationOrLoadError"]["__typename"] for e in entries}
    problems = [
        f"{name}: {loaded.get(name, 'missing')}" for name in LOCATIONS if loaded.get(name) != "RepositoryLocation"
    ]
    return sorted(loaded), problems


WORKSPACE_QUERY = """{
  workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } }
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy lastHeartbeatTime } } }
}"""


class SelfRestartError(RuntimeError):
    """A run asked to restart the Dagster service it runs under: it would kill its own run."""


class DagsterResource(PlatformResource):
    """The orchestrator's processes: where the UI answers, how both start, and their function probes."""

    @property
    def url(self) -> str:
        """127.0.0.1 locally; in the k3s target the in-cluster webserver, through the port-forward (or its DNS
        name from a pod)."""
        host, port = self.address("dagster", self.cfg.services.dagster.webserver_port)
        return f"http://{host}:{port}"

    @property
    def workspace_file(self) -> Path:
        return self.state.etc / "workspace.yaml"

    def _workspace_yaml(self) -> str:
        """The shared code servers, not modules: a `python_module` entry makes the webserver and the daemon each
        spawn a server per location, and the daemon spawns fresh ones every minute (dagster/_daemon/controller.py,
        RELOAD_WORKSPACE_INTERVAL), each loading the code again."""
        entries = [
            {"grpc_server": {"host": "127.0.0.1", "port": self.code_port(n), "location_name": n}} for n in LOCATIONS
        ]
        return yaml.safe_dump({"load_from": entries}, sort_keys=False)

    def code_port(self, location: str) -> int:
        dagster = self.cfg.services.dagster
        return dagster.platform_code_port if location == "platform_assets" else dagster.ml_code_port

    def _spec(self, name: str, argv: list[str], health: Callable[[], bool], ports: tuple[int, ...] = ()) -> ServiceSpec:
        state = self.state
        return ServiceSpec(
            name=name,
            argv=(str(Path(sys.executable).parent / argv[0]), *argv[1:]),
            env=instance_env(self.cfg, state, Path(self.config_path)),
            files={instance_file(state): instance_yaml(self.cfg), self.workspace_file: self._workspace_yaml()},
            health=health,
            ports=ports,
            cwd=Path(self.config_path).parent,
            stop_timeout=15.0,
            start_timeout=180.0,  # a busy 2-core machine may take long to load a location
        )

    def webserver_spec(self) -> ServiceSpec:
        port = self.cfg.services.dagster.webserver_port
        argv = ["dagster-webserver", "-h", "127.0.0.1", "-p", str(port), "-w", str(self.workspace_file)]
        return self._spec("dagster_webserver", argv, self.webserver_healthy, (port,))

    def specs(self) -> list[ServiceSpec]:
        """Every process of the orchestrator, in start order."""
        return [*self.code_server_specs(), self.webserver_spec(), self.daemon_spec(), self.watchdog_spec()]

    def code_server_specs(self) -> list[ServiceSpec]:
        """One `dagster api grpc` per code location (as in the cluster). What they load (the code, platform.yaml) is
        part of their spec, so an edit restarts them at the next `make up` (a gRPC server never reloads itself)."""
        return [self._code_server_spec(location) for location in LOCATIONS]

    def _code_server_spec(self, location: str) -> ServiceSpec:
        port = self.code_port(location)
        argv = ["dagster", "api", "grpc", "-m", LOCATIONS[location], "-h", "127.0.0.1", "-p", str(port)]
        spec = self._spec(CODE_SERVERS[location], [*argv, "--location-name", location], self._serving(port), (port,))
        # what they load: the code, and platform.yaml, which the definitions are built from at import
        loaded = hashlib.sha256(f"{code_digest()}|{self.cfg.model_dump_json()}".encode()).hexdigest()[:16]
        return replace(spec, env={**spec.env, CODE_DIGEST_ENV: loaded}, start_timeout=60.0)

    @staticmethod
    def _serving(port: int) -> Callable[[], bool]:
        return lambda: grpc_serving(f"127.0.0.1:{port}")

    def daemon_spec(self, instance: dg.DagsterInstance | None = None) -> ServiceSpec:
        """`instance`: where its health probe reads the heartbeats (a run's own, open already), else opened per
        probe (~70 ms: the storage's three connections)."""
        return self._spec(
            "dagster_daemon",
            ["dagster-daemon", "run", "-w", str(self.workspace_file)],
            lambda: self.daemon_healthy(instance),
        )

    def watchdog_spec(self) -> ServiceSpec:
        # not the instance's password: the watchdog reads the credentials itself, only when it needs them
        env = {k: v for k, v in instance_env(self.cfg, self.state, Path(self.config_path)).items() if k != PASSWORD_ENV}
        return ServiceSpec(
            name="watchdog",
            argv=(sys.executable, "-m", "platform_core.watchdog"),
            env=env,
            health=self.watchdog_healthy,
            cwd=Path(self.config_path).parent,
            start_timeout=60.0,
        )

    def watchdog_beat(self) -> dict[str, object]:
        """The watchdog's last round: {"time": unix time, "findings": [keys]}, {} before its first."""
        path = self.state.run / WATCHDOG_BEAT
        return json.loads(path.read_text()) if path.exists() else {}

    def watchdog_round_age(self) -> float:
        """Seconds since the watchdog's last round (infinite before its first)."""
        last = self.watchdog_beat().get("time")
        return time.time() - float(last) if last is not None else float("inf")  # type: ignore[arg-type]

    def watchdog_healthy(self) -> bool:
        """A round since this watchdog started, and within its stale bound."""
        started = self.supervisor.status("watchdog").started_at or 0.0
        age = self.watchdog_round_age()
        return age <= WATCHDOG_STALE_ROUNDS * self.cfg.orchestrator.watchdog_seconds and time.time() - age >= started

    def webserver_healthy(self) -> bool:
        # generous: while it loads both code locations, a busy 2-core machine can keep it from answering for seconds
        return requests.get(f"{self.url}/server_info", timeout=10).status_code == 200

    def daemon_healthy(self, instance: dg.DagsterInstance | None = None) -> bool:
        """Every watched daemon has beaten since this daemon process started, and within the stale window."""
        started = self.supervisor.status("dagster_daemon").started_at or 0.0
        beats = self.heartbeats(instance)
        since = max(started, time.time() - HEARTBEAT_STALE_SECONDS)
        return all(beats.get(name, 0.0) >= since for name in WATCHED_DAEMONS)

    def heartbeats(self, instance: dg.DagsterInstance | None = None) -> dict[str, float]:
        """Each daemon's newest heartbeat in the instance (unix time): the one given (a run's), else opened here."""
        if instance is not None:
            return {name: beat.timestamp for name, beat in instance.get_daemon_heartbeats().items()}
        with open_instance(self.cfg, self.state) as opened:
            return self.heartbeats(opened)

    def graphql(self) -> dict[str, object]:
        response = requests.post(f"{self.url}/graphql", json={"query": WORKSPACE_QUERY}, timeout=30)
        response.raise_for_status()
        body: dict[str, object] = response.json()
        if body.get("errors"):
            raise RuntimeError(f"the webserver's GraphQL API answered with errors: {body['errors']}")
        data: dict[str, object] = body["data"]  # type: ignore[assignment]
        return data

    def refuse_self_restart(self, name: str) -> None:
        """A run launched from the UI or by a sensor is a child of a code server (and in a service's process group
        before): restarting that service from the run would kill the run halfway. Only a run from outside
        (`platformctl up`) may."""
        pid = self.supervisor.status(name).pid
        ancestors = {proc.pid for proc in psutil.Process().parents()}
        if pid is not None and (os.getpgid(0) == pid or pid in ancestors):
            raise SelfRestartError(f"{name} cannot restart itself from a run it launched: run `platformctl up`")


CODE_DIGEST_ENV = "PLATFORM_LOADED_DIGEST"  # a code server's code and config: a change restarts it


def grpc_serving(target: str, timeout: float = 2.0) -> bool:
    """grpc.health.v1 Check of Dagster's own service on a code server: SERVING once its definitions loaded."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service=GRPC_HEALTH_SERVICE)
        answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout)
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
