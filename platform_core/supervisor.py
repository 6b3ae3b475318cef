"""A small supervisor for long-lived local services.

Services must outlive the Dagster run that starts them, so each one runs in its own session with a pid file
under `<state>/run/`. The pid file records the process start time (a recycled PID is never mistaken for ours)
and the hash of the rendered config, so `ensure` restarts a service only when what it would run has changed.
Stopping is graceful with a short bound, then SIGKILL to the service's own process group: never by name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from platform_core.processes import (
    group_orphans,
    is_same_process,
    kill_all,
    kill_group_orphans,
    name_of,
    pid_tree,
    ports_in_use,
    signal_group,
    spawn_detached,
    wait_gone,
    wait_reaped,
)

Action = Literal["started", "restarted", "unchanged"]


class ServiceStartError(RuntimeError):
    """A service did not become healthy; the message names it and quotes the end of its log."""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: tuple[str, ...]
    health: Callable[[], bool]
    ports: tuple[int, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[Path, str] = field(default_factory=dict)  # rendered config files, written 0600
    run_as: str | None = None
    cwd: Path | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 5.0
    start_timeout: float = 90.0

    @property
    def config_hash(self) -> str:
        digest = hashlib.sha256()
        # the same venv reached through a symlink is the same program
        for part in (os.path.realpath(self.argv[0]), *self.argv[1:]):
            digest.update(part.encode() + b"\0")
        for key in sorted(self.env):
            digest.update(f"{key}={self.env[key]}\0".encode())
        for path in sorted(self.files):
            digest.update(f"{path}\0{self.files[path]}\0".encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    config_hash: str | None
    started_at: float | None
    deployed: bool = True  # False when never started here or stopped on purpose (`platformctl down`)
    ready: bool = True  # False while its start waits for the first healthy probe

    @property
    def running(self) -> bool:
        return self.pid is not None

    def starting(self, start_timeout: float) -> bool:
        """Started, not yet healthy, and still within its start's bound (after which the start gives up)."""
        return self.running and not self.ready and time.time() - (self.started_at or 0.0) < start_timeout


@dataclass(frozen=True)
class EnsureResult:
    action: Action
    pid: int
    config_hash: str
    reason: str


@dataclass(frozen=True)
class ServiceState:
    """A supervised service against its spec: the decision `ensure` acts on, drift alerts on, plan reports."""

    status: ServiceStatus
    wanted_hash: str
    edited: list[Path]  # rendered config files changed on disk
    stopped: list[int]  # pids stopped by SIGSTOP
    healthy: bool  # probed only when it runs and is not stopped

    @property
    def action(self) -> Literal["start", "restart", "keep"]:
        if not self.status.running:
            return "start"
        same = self.status.config_hash == self.wanted_hash and not self.edited
        return "keep" if same and self.healthy else "restart"

    @property
    def reason(self) -> str:
        """Why `action`, in a few words (the first cause; drift findings list them all)."""
        if not self.status.running:
            return "was not running"
        if self.status.config_hash != self.wanted_hash:
            return "config changed"
        if self.edited:
            return f"{', '.join(p.name for p in self.edited)} edited out of band"
        if self.stopped:
            return f"pid {', '.join(map(str, self.stopped))} stopped (SIGSTOP)"
        return "running with the same config" if self.healthy else "unhealthy"


class Supervisor:
    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def status(self, name: str) -> ServiceStatus:
        record = self._read_record(name)
        if record is None:
            return ServiceStatus(name, None, None, None, deployed=False)
        deployed = record.get("deployed", True)
        pid = record.get("pid")
        if pid is None or not is_same_process(pid, record["create_time"]):
            return ServiceStatus(name, None, record.get("config_hash"), None, deployed=deployed)
        return ServiceStatus(name, pid, record["config_hash"], record["started_at"], ready=record.get("ready", True))

    def inspect(self, spec: ServiceSpec) -> ServiceState:
        """The service as it runs against `spec`; reads only (a health probe at most)."""
        status = self.status(spec.name)
        stopped = self.stopped(spec.name) if status.running else []
        healthy = status.running and not stopped and probe(spec.health)
        return ServiceState(status, spec.config_hash, edited_files(spec), stopped, healthy)

    def ensure(self, spec: ServiceSpec) -> EnsureResult:
        """Start the service, or restart it if its config changed, or leave it be (and say so). One caller at a
        time per service: a run and the watchdog may both find it dead."""
        with self._locked(spec.name):
            return self._ensure(spec)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / f"{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def ensure_together(self, specs: Sequence[ServiceSpec]) -> list[EnsureResult]:
        """`ensure` for services that need not wait for each other: every one to start is spawned before the first
        is waited for, so their start-ups overlap (Dagster's webserver and daemon take seconds each)."""
        with contextlib.ExitStack() as locks:
            for name in sorted(spec.name for spec in specs):  # one order for every caller: no deadlock
                locks.enter_context(self._locked(name))
            begun = [self._begin(spec) for spec in specs]
            failures = []
            for spec, (_, record) in zip(specs, begun, strict=True):
                try:  # every one started is waited for (and marked ready or stopped), whatever another did
                    if record is not None:
                        self._await_healthy(spec, record)
                except ServiceStartError as err:
                    failures.append(err)
            if failures:
                raise failures[0]
            return [result for result, _ in begun]

    def _ensure(self, spec: ServiceSpec) -> EnsureResult:
        result, record = self._begin(spec)
        if record is not None:
            self._await_healthy(spec, record)
        return result

    def _begin(self, spec: ServiceSpec) -> tuple[EnsureResult, dict[str, Any] | None]:
        """Leave the service be, or (re)start it without waiting: its result, and its record when it started."""
        state = self.inspect(spec)
        if state.action == "keep" and state.status.pid:
            return EnsureResult("unchanged", state.status.pid, spec.config_hash, state.reason), None
        if state.action == "restart":
            self._stop(spec.name, spec.stop_signal, spec.stop_timeout)
        record = self._spawn(spec)
        change: Action = "restarted" if state.action == "restart" else "started"
        return EnsureResult(change, record["pid"], spec.config_hash, state.reason), record

    def stop(self, name: str, stop_signal: int = signal.SIGTERM, timeout: float = 5.0, on_purpose: bool = True) -> bool:
        """Stop the recorded process group, one caller at a time (see `_stop`)."""
        with self._locked(name):
            return self._stop(name, stop_signal, timeout, on_purpose)

    def _stop(
        self, name: str, stop_signal: int = signal.SIGTERM, timeout: float = 5.0, on_purpose: bool = True
    ) -> bool:
        """Stop the recorded process group; returns whether anything was running.

        On purpose (`platformctl down`) the service counts as no longer deployed, so drift checks leave it be;
        otherwise (a failed start) it stays deployed and therefore "down".
        """
        record = self._read_record(name)
        status = self.status(name)
        if record is not None:
            self._mark_stopped(name, status.config_hash, deployed=status.deployed and not on_purpose)
        if status.pid is None:
            return kill_group_orphans((record or {}).get("pid"))
        tree = pid_tree(status.pid)  # Postgres's children lead process groups of their own: the group is not all
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.resume()  # a stopped process cannot act on the stop signal
        signal_group(status.pid, stop_signal)
        if not wait_gone(status.pid, timeout):
            signal_group(status.pid, signal.SIGKILL)
            wait_gone(status.pid, 10.0)
        # members that outlived their leader (they would hold its ports or shared memory)
        kill_group_orphans((record or {}).get("pid"))
        kill_all(tree)  # and descendants outside its group, e.g. a Postgres worker that was stopped
        return True

    def stop_recorded(self, name: str) -> bool:
        """`stop` with the signal and grace the service was started with, read from its record alone: no service
        spec, so no credential is read (a stack whose credentials file is lost can still be stopped)."""
        record = self._read_record(name) or {}
        return self.stop(name, record.get("stop_signal", signal.SIGTERM), record.get("stop_timeout", 5.0))

    def _mark_stopped(self, name: str, config_hash: str | None, deployed: bool) -> None:
        stopped = {"pid": None, "config_hash": config_hash, "deployed": deployed, "stopped_at": time.time()}
        write_private(self.pid_file(name), json.dumps(stopped, indent=2))

    def _spawn(self, spec: ServiceSpec) -> dict[str, Any]:
        for path, content in spec.files.items():
            write_private(path, content)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        record = self._read_record(spec.name)
        kill_group_orphans((record or {}).get("pid"))  # children of a leader that died still hold its ports
        wait_reaped((record or {}).get("pid"), (record or {}).get("create_time", 0.0), timeout=10.0)
        _wait_ports_free(spec.name, spec.ports, timeout=15.0)
        log = self.log_file(spec.name).open("ab")
        log.write(f"\n--- starting {spec.name} at {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
        log.flush()
        try:
            # in the state directory unless the spec says otherwise: never wherever the caller happened to stand
            cwd = spec.cwd or self.run_dir.parent
            pid = spawn_detached(spec.argv, service_env(spec), cwd, spec.run_as, log)
            create_time = psutil.Process(pid).create_time()
        except (OSError, psutil.Error) as err:  # exec failed at once (a missing binary): the log says why
            self._mark_stopped(spec.name, spec.config_hash, deployed=True)
            raise ServiceStartError(f"{spec.name} did not start ({err}): {self.log_tail(spec.name)}") from err
        finally:
            log.close()
        record = {
            "pid": pid,
            "create_time": create_time,
            "config_hash": spec.config_hash,
            "started_at": time.time(),
            "argv": list(spec.argv),
            "stop_signal": int(spec.stop_signal),  # so a stop needs nothing but this record (`platformctl down`)
            "stop_timeout": spec.stop_timeout,
            "ready": False,  # a watcher probing it meanwhile sees a start, not an outage
        }
        write_private(self.pid_file(spec.name), json.dumps(record, indent=2))
        return record

    def _await_healthy(self, spec: ServiceSpec, record: dict[str, Any]) -> None:
        self._wait_healthy(spec, record["pid"], record["create_time"])
        write_private(self.pid_file(spec.name), json.dumps({**record, "ready": True}, indent=2))

    def _wait_healthy(self, spec: ServiceSpec, pid: int, create_time: float) -> None:
        deadline = time.monotonic() + spec.start_timeout
        while time.monotonic() < deadline:
            if not is_same_process(pid, create_time):
                self._mark_stopped(spec.name, spec.config_hash, deployed=True)  # wanted up, so it is down
                raise ServiceStartError(f"{spec.name} exited while starting: {self.log_tail(spec.name)}")
            if probe(spec.health):
                return
            time.sleep(0.2)
        self._stop(spec.name, spec.stop_signal, spec.stop_timeout, on_purpose=False)
        raise ServiceStartError(f"{spec.name} not healthy after {spec.start_timeout:.0f}s: {self.log_tail(spec.name)}")

    def process_tree(self, name: str) -> set[int]:
        """The service's pid and its descendants' (mlflow forks a uvicorn worker, Postgres its backends)."""
        pid = self.status(name).pid
        if pid is None:
            return set()
        try:
            return {pid} | {child.pid for child in psutil.Process(pid).children(recursive=True)}
        except psutil.Error:
            return {pid}

    def stopped(self, name: str) -> list[int]:
        """Processes of the service that are stopped (SIGSTOP, a debugger): a stopped leader no longer replaces its
        children, a stopped child no longer serves, and a health probe may not notice either in time."""
        stopped = []
        for pid in sorted(self.process_tree(name)):
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
                    stopped.append(pid)
        return stopped

    def orphans(self, name: str) -> set[int]:
        """Live members of the service's recorded process group whose leader died (mlflow's uvicorn child after
        a kill -9 of mlflow): still ours, holding our ports, reaped by the next start."""
        return {proc.pid for proc in group_orphans((self._read_record(name) or {}).get("pid"))}

    def listen_addresses(self, name: str) -> set[tuple[str, int]]:
        """(address, port) of every listening socket the service holds."""
        found: set[tuple[str, int]] = set()
        for pid in self.process_tree(name):  # each process's sockets: the machine-wide list walks every process
            with contextlib.suppress(psutil.Error):
                found.update(
                    (conn.laddr.ip, conn.laddr.port)
                    # TCP only: listening is a TCP state (UDP's would double the /proc/net tables read per process)
                    for conn in psutil.Process(pid).net_connections(kind="tcp")
                    if conn.status == psutil.CONN_LISTEN
                )
        return found

    def log_tail(self, name: str, lines: int = 5) -> str:
        path = self.log_file(name)
        if not path.exists():
            return "(no log)"
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
        return " | ".join(line.strip() for line in tail)

    def _read_record(self, name: str) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads(self.pid_file(name).read_text())
            return record
        except (FileNotFoundError, json.JSONDecodeError):
            return None


# Secrets a starter may hold in its own environment (a Dagster run, the watchdog) that no service inherits: each
# service gets exactly the ones its spec names.
NOT_INHERITED = (
    "DAGSTER_PG_PASSWORD",
    "PGPASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_TRACKING_USERNAME",  # a service that talks to MLflow is given its own identity, or none
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
)


def service_env(spec: ServiceSpec) -> dict[str, str]:
    inherited = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    return {**inherited, **spec.env}


def edited_files(spec: ServiceSpec) -> list[Path]:
    """Rendered config files whose content on disk is not what the spec renders."""
    return [path for path, content in spec.files.items() if not path.exists() or path.read_text() != content]


def probe(health: Callable[[], bool]) -> bool:
    try:
        return bool(health())
    except Exception:  # a probe that raises means "not healthy yet"
        return False


def _wait_ports_free(name: str, ports: tuple[int, ...], timeout: float) -> None:
    """A start racing a previous instance's exit dies on a busy port, so wait for the ports first."""
    deadline = time.monotonic() + timeout
    while (busy := ports_in_use(ports)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if busy:
        held = ", ".join(f"{port} (held by {name_of(pid)} pid {pid})" for port, pid in sorted(busy.items()))
        raise ServiceStartError(f"{name} cannot start: port(s) {held} still in use after {timeout:.0f}s")


def write_private(path: Path, content: str) -> None:
    """0600, and atomic: pid records are read by other processes (the watchdog, the sensors) while rewritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(tmp, path)
