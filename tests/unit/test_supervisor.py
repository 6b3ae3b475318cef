"""Unit tests for platform_core.supervisor with real child processes, pid files and HTTP probes.

Each test supervises `python -m http.server` (or a tiny python child) on a free loopback port under its own
tmp_path; a finalizer stops every service name the test used, then kills by pid (checking its start time)
any child that is still alive, so that neither a test nor a regression in stop() leaks a process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from platform_core.supervisor import (
    EnsureResult,
    ServiceSpec,
    ServiceStartError,
    Supervisor,
    ports_in_use,
    probe,
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
        return response.status == 200


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def gone(pid: int) -> bool:
    """Exited and reaped, or at least a zombie (a child nobody waited for yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Harness:
    """A Supervisor on tmp_path plus bookkeeping so that every process a test starts is cleaned up."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sup = Supervisor(root / "run", root / "logs")
        self.names: set[str] = set()
        self.started_pids: list[tuple[int, float]] = []

    def http_spec(
        self,
        name: str,
        port: int,
        *,
        extra_argv: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        files: dict[Path, str] | None = None,
        health: Callable[[], bool] | None = None,
    ) -> ServiceSpec:
        self.names.add(name)
        return ServiceSpec(
            name=name,
            argv=(sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", *extra_argv),
            health=health or (lambda: http_ok(port)),
            ports=(port,),
            env=env or {},
            files=files or {},
            cwd=self.root,
            stop_timeout=3.0,
            start_timeout=15.0,
        )

    def python_spec(self, name: str, code: str, *args: str, health: Callable[[], bool], **kwargs: float) -> ServiceSpec:
        self.names.add(name)
        return ServiceSpec(name=name, argv=(sys.executable, "-c", code, *args), health=health, cwd=self.root, **kwargs)

    def ensure(self, spec: ServiceSpec) -> EnsureResult:
        result = self.sup.ensure(spec)
        self.remember(result.pid)  # killed in cleanup if, despite stop(), it still runs
        return result

    def record(self, name: str) -> dict:
        return json.loads(self.sup.pid_file(name).read_text())

    def remember(self, pid: int) -> None:
        """Kill this pid (if still the same process) in the finalizer, whether or not the supervisor claims it."""
        self.started_pids.append((pid, psutil.Process(pid).create_time()))

    def cleanup(self) -> None:
        for name in sorted(self.names):
            self.sup.stop(name, signal.SIGTERM, 2.0)
        for pid, created in self.started_pids:
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) < 0.01:
                    proc.kill()
                    proc.wait(5)
            except psutil.Error:
                pass


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.cleanup()


@pytest.fixture
def port() -> int:
    return free_port()


def test_start_records_pid_file_and_serves(harness: Harness, port: int) -> None:
    spec = harness.http_spec("web", port)
    before = time.time()

    result = harness.ensure(spec)

    assert result.action == "started"
    assert result.reason == "was not running"
    assert result.config_hash == spec.config_hash
    status = harness.sup.status("web")
    assert status.running and status.deployed
    assert status.pid == result.pid
    assert status.config_hash == spec.config_hash
    assert before <= status.started_at <= time.time()
    assert http_ok(port)
    assert os.getsid(result.pid) == result.pid  # leads its own session, so stop() can signal the group
    # nobody's child: a long-lived starter (the watchdog) neither keeps its zombie nor stops it with its own tree
    assert result.pid not in {child.pid for child in psutil.Process().children(recursive=True)}

    pid_file = harness.sup.pid_file("web")
    assert mode(pid_file) == 0o600
    record = harness.record("web")
    assert record["pid"] == result.pid
    assert record["create_time"] == pytest.approx(psutil.Process(result.pid).create_time(), abs=0.01)
    assert record["config_hash"] == spec.config_hash
    assert record["argv"] == list(spec.argv)


def test_ensure_again_is_unchanged(harness: Harness, port: int) -> None:
    spec = harness.http_spec("web", port)
    first = harness.ensure(spec)

    again = harness.ensure(harness.http_spec("web", port))

    assert again.action == "unchanged"
    assert again.pid == first.pid
    assert again.config_hash == first.config_hash
    assert harness.sup.status("web").pid == first.pid


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"extra_argv": ("--directory", ".")}, id="argv"),
        pytest.param({"env": {"SUPERVISOR_TEST": "2"}}, id="env"),
    ],
)
def test_config_change_restarts_with_new_pid(harness: Harness, port: int, change: dict) -> None:
    original = harness.http_spec("web", port, env={"SUPERVISOR_TEST": "1"})
    first = harness.ensure(original)
    changed = harness.http_spec("web", port, **{"env": {"SUPERVISOR_TEST": "1"}, **change})
    assert changed.config_hash != original.config_hash

    result = harness.ensure(changed)

    assert result.action == "restarted"
    assert result.reason == "config changed"
    assert result.pid != first.pid
    assert result.config_hash == changed.config_hash
    assert not psutil.pid_exists(first.pid)
    status = harness.sup.status("web")
    assert status.pid == result.pid
    assert status.config_hash == changed.config_hash
    assert http_ok(port)
    assert psutil.Process(result.pid).cmdline()[1:] == list(changed.argv[1:])
    if "env" in change:
        assert psutil.Process(result.pid).environ()["SUPERVISOR_TEST"] == "2"


def test_unhealthy_service_is_restarted(harness: Harness, port: int) -> None:
    failures = {"left": 0}

    def health() -> bool:
        if failures["left"]:
            failures["left"] -= 1
            return False
        return http_ok(port)

    spec = harness.http_spec("web", port, health=health)
    first = harness.ensure(spec)
    failures["left"] = 1  # ensure's own probe sees it unhealthy once

    result = harness.ensure(spec)

    assert result.action == "restarted"
    assert result.reason == "unhealthy"
    assert result.pid != first.pid
    assert not psutil.pid_exists(first.pid)
    assert http_ok(port)


def test_killed_service_is_not_running_but_deployed_then_started_again(harness: Harness, port: int) -> None:
    spec = harness.http_spec("web", port)
    first = harness.ensure(spec)

    os.kill(harness.sup.status("web").pid, signal.SIGKILL)

    assert wait_until(lambda: not harness.sup.status("web").running)
    status = harness.sup.status("web")
    assert status.pid is None
    assert status.deployed is True
    assert status.config_hash == spec.config_hash

    result = harness.ensure(spec)

    assert result.action == "started"
    assert result.reason == "was not running"
    assert result.pid != first.pid
    assert harness.sup.status("web").pid == result.pid
    assert http_ok(port)


def test_a_recorded_stop_needs_no_spec(harness: Harness, port: int) -> None:
    """`platformctl down` stops from the pid record alone, with the signal and grace the service started with."""
    spec = replace(harness.http_spec("web", port), stop_signal=signal.SIGINT, stop_timeout=3.0)
    pid = harness.ensure(spec).pid
    record = harness.record("web")
    assert (record["stop_signal"], record["stop_timeout"]) == (int(signal.SIGINT), 3.0)

    assert harness.sup.stop_recorded("web") is True

    assert not psutil.pid_exists(pid) and harness.sup.status("web").deployed is False
    assert harness.sup.stop_recorded("web") is False and harness.sup.stop_recorded("never-started") is False


def test_stop_ends_the_process_and_marks_not_deployed(harness: Harness, port: int) -> None:
    spec = harness.http_spec("web", port)
    pid = harness.ensure(spec).pid

    assert harness.sup.stop("web") is True

    assert not psutil.pid_exists(pid)
    assert ports_in_use((port,)) == {}
    status = harness.sup.status("web")
    assert status.running is False
    assert status.deployed is False
    record = harness.record("web")
    assert record["pid"] is None
    assert record["config_hash"] == spec.config_hash
    assert mode(harness.sup.pid_file("web")) == 0o600

    assert harness.sup.stop("web") is False
    assert harness.sup.stop("never-started") is False

    again = harness.ensure(spec)
    assert again.action == "started"
    assert http_ok(port)


def test_recycled_pid_is_not_treated_as_ours(harness: Harness, port: int) -> None:
    pid = harness.ensure(harness.http_spec("web", port)).pid
    record = harness.record("web")
    record["create_time"] -= 1000.0  # as if this pid now belonged to a newer, unrelated process
    harness.sup.pid_file("web").write_text(json.dumps(record))

    status = harness.sup.status("web")

    assert status.running is False
    assert status.pid is None
    assert status.deployed is True
    assert harness.sup.process_tree("web") == set()
    # stop() must not signal a process it cannot prove is its own
    assert harness.sup.stop("web") is False
    time.sleep(0.3)
    assert psutil.Process(pid).is_running() and not gone(pid)
    assert http_ok(port)


def test_service_exiting_at_once_raises_with_its_log_tail(harness: Harness) -> None:
    """Services start detached (nobody's child), so their exit code is not ours to read: the log says why."""
    spec = harness.python_spec(
        "crasher", "import sys; print('boom'); sys.exit(3)", health=lambda: False, start_timeout=10.0
    )

    with pytest.raises(ServiceStartError) as excinfo:
        harness.ensure(spec)

    message = str(excinfo.value)
    assert "crasher exited while starting" in message
    assert "boom" in message
    status = harness.sup.status("crasher")
    assert not status.running
    assert status.deployed is True, "a service that failed to start is down, not stopped on purpose"
    assert "boom" in harness.sup.log_file("crasher").read_text()


def test_service_never_healthy_times_out_and_is_stopped(harness: Harness) -> None:
    seen: list[int] = []

    def health() -> bool:
        if not seen:
            seen.append(harness.record("sleeper")["pid"])  # the pid file is written before probing starts
        return False

    spec = harness.python_spec(
        "sleeper", "import time; time.sleep(60)", health=health, start_timeout=1.0, stop_timeout=2.0
    )
    started = time.monotonic()

    with pytest.raises(ServiceStartError, match=r"sleeper not healthy after 1s"):
        harness.ensure(spec)

    assert 1.0 <= time.monotonic() - started < 5.0
    assert seen, "the health probe never ran"
    assert not psutil.pid_exists(seen[0])
    status = harness.sup.status("sleeper")
    assert status.running is False
    assert status.deployed is True, "a service that never became healthy is down, not stopped on purpose"


def test_files_written_private_and_part_of_config_hash(harness: Harness, port: int) -> None:
    conf = harness.root / "etc" / "web" / "service.conf"
    spec = harness.http_spec("web", port, files={conf: "password=one\n"})
    same = harness.http_spec("web", port, files={conf: "password=one\n"})
    changed = harness.http_spec("web", port, files={conf: "password=two\n"})
    assert same.config_hash == spec.config_hash
    assert changed.config_hash != spec.config_hash

    first = harness.ensure(spec)

    assert conf.read_text() == "password=one\n"
    assert mode(conf) == 0o600

    result = harness.ensure(changed)

    assert result.action == "restarted"
    assert result.reason == "config changed"
    assert result.pid != first.pid
    assert conf.read_text() == "password=two\n"
    assert mode(conf) == 0o600


def test_config_file_edited_out_of_band_is_rewritten_and_service_restarted(harness: Harness, port: int) -> None:
    conf = harness.root / "etc" / "service.conf"
    spec = harness.http_spec("web", port, files={conf: "password=one\n"})
    first = harness.ensure(spec)
    conf.write_text("password=tampered\n")

    result = harness.ensure(spec)

    assert result.action == "restarted"
    assert result.reason == "service.conf edited out of band"
    assert result.pid != first.pid
    assert conf.read_text() == "password=one\n"
    assert harness.ensure(spec).action == "unchanged"


def test_existing_world_readable_config_file_is_made_private(harness: Harness, port: int) -> None:
    conf = harness.root / "etc" / "service.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("old\n")
    conf.chmod(0o644)

    harness.ensure(harness.http_spec("web", port, files={conf: "password=secret\n"}))

    assert conf.read_text() == "password=secret\n"
    assert mode(conf) == 0o600


def test_listen_addresses_and_ports_in_use(harness: Harness, port: int) -> None:
    other = free_port()
    pid = harness.ensure(harness.http_spec("web", port)).pid

    assert harness.sup.listen_addresses("web") == {("127.0.0.1", port)}
    assert harness.sup.process_tree("web") == {pid}
    assert ports_in_use((port, other)) == {port: pid}

    harness.sup.stop("web")

    assert harness.sup.listen_addresses("web") == set()
    assert ports_in_use((port,)) == {}


SIGTERM_IGNORER = """
import pathlib, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(sys.argv[1]).write_text("ignoring SIGTERM")
time.sleep(120)
"""


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(harness: Harness) -> None:
    ready = harness.root / "ready"
    spec = harness.python_spec(
        "stubborn", SIGTERM_IGNORER, str(ready), health=ready.exists, stop_timeout=0.5, start_timeout=10.0
    )
    pid = harness.ensure(spec).pid  # healthy only once the handler is installed
    started = time.monotonic()

    assert harness.sup.stop("stubborn", spec.stop_signal, spec.stop_timeout) is True

    elapsed = time.monotonic() - started
    assert elapsed >= 0.5  # SIGTERM alone did not end it
    assert elapsed < 5.0
    assert not psutil.pid_exists(pid)
    assert harness.sup.status("stubborn").deployed is False


def test_probe_treats_exceptions_as_unhealthy() -> None:
    def broken() -> bool:
        raise ConnectionRefusedError

    assert probe(broken) is False
    assert probe(lambda: 0) is False
    assert probe(lambda: True) is True


FORKING_SERVER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "http.server", sys.argv[1], "--bind", "127.0.0.1"])
print(child.pid, flush=True)
time.sleep(600)
"""


def test_orphans_of_a_dead_leader_are_killed_before_a_restart(harness: Harness, port: int) -> None:
    """Like mlflow's uvicorn child: the leader dies, its child keeps the port; healing must clear it."""
    spec = ServiceSpec(
        name="forker",
        argv=(sys.executable, "-c", FORKING_SERVER, str(port)),
        health=lambda: http_ok(port),
        ports=(port,),
        cwd=harness.root,
        start_timeout=15.0,
    )
    harness.names.add("forker")
    leader = harness.ensure(spec).pid
    child = next(iter(psutil.Process(leader).children()))
    harness.remember(child.pid)
    os.kill(leader, signal.SIGKILL)  # the leader alone, not its group; left a zombie, as in a long-lived parent
    time.sleep(0.3)
    assert http_ok(port), "the orphaned child still serves the port"
    assert harness.sup.orphans("forker") == {child.pid}  # still ours: a port check must not call it foreign
    assert ports_in_use((port,)) == {port: child.pid}

    again = harness.ensure(spec)

    assert again.action == "started"
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert http_ok(port)
    assert harness.sup.stop("forker") is True
