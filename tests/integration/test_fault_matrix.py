"""The fault matrix: every supervised platform service, its leader and its children, each hit by `kill -9`,
`SIGSTOP`, or a foreign process on its port. Each time the drift sensor names the service and the cause, the next
materialization (what `make up` runs) heals it or refuses in one line naming the foreign process, and no object,
row or MLflow run is lost. No step needs a person: nothing is found or killed by hand."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Callable

import psutil
import pytest
import requests

from platform_core.services.seaweedfs import ADMIN

pytestmark = pytest.mark.integration


def _writer(stack) -> tuple[str, str]:
    """MLflow's writer, as the platform's runs act (anonymous requests get 401)."""
    return stack.resource("mlflow_resource").writer.auth


SERVICES = {"postgres": "postgres_resource", "seaweedfs": "seaweedfs_resource", "mlflow": "mlflow_resource"}
ASSETS = {"postgres": "postgres", "seaweedfs": "seaweedfs", "mlflow": "mlflow_server"}
FAULTS = ["kill_leader", "kill_child", "stop_leader", "stop_child", "foreign_port"]


def _inventory(stack) -> dict[str, object]:
    """What must survive every fault: objects per bucket, the survivors table, active MLflow runs."""
    s3 = stack.resource("seaweedfs_resource").client(ADMIN)
    pages = s3.get_paginator("list_objects_v2")
    buckets = [b.name for b in stack.resource("seaweedfs_resource").cfg.buckets]
    url = stack.resource("mlflow_resource").url
    experiments = requests.post(
        f"{url}/api/2.0/mlflow/experiments/search", json={"max_results": 1000}, auth=_writer(stack), timeout=10
    )
    ids = [e["experiment_id"] for e in experiments.json().get("experiments", [])]
    runs = requests.post(
        f"{url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": ids, "max_results": 1000},
        auth=_writer(stack),
        timeout=10,
    )
    return {
        "objects": {b: sum(p.get("KeyCount", 0) for p in pages.paginate(Bucket=b, Prefix="matrix/")) for b in buckets},
        "rows": stack.resource("postgres_resource").query("ml", "mldata", "select count(*) from matrix_rows")[0][0],
        "runs": len(runs.json().get("runs", [])),
    }


@pytest.fixture(scope="module")
def seeded(stack) -> dict[str, object]:
    healed = stack.materialize()  # whatever an earlier module left is healed first
    assert healed.status == "SUCCESS", healed.failures
    token = uuid.uuid4().hex
    pg = stack.resource("postgres_resource")
    pg.query("ml", "mldata", "create table if not exists matrix_rows(token text)")
    pg.query("ml", "mldata", "insert into matrix_rows values (%s)", (token,))
    stack.resource("seaweedfs_resource").client("ml").put_object(Bucket="datasets", Key=f"matrix/{token}", Body=b"x")
    url = stack.resource("mlflow_resource").url
    experiment = requests.post(
        f"{url}/api/2.0/mlflow/experiments/create", json={"name": f"matrix-{token}"}, auth=_writer(stack), timeout=10
    ).json()["experiment_id"]
    requests.post(
        f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}, auth=_writer(stack), timeout=10
    )
    return _inventory(stack)


def _leader(stack, service: str) -> psutil.Process:
    pid = stack.resource(SERVICES[service]).supervisor.status(service).pid
    assert pid is not None, f"{service} is not running before the fault"
    return psutil.Process(pid)


def _wait(what: str, done: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s"
        time.sleep(0.2)


def _healthy(stack, service: str) -> bool:
    return stack.resource(SERVICES[service]).is_healthy()


def _settle(stack) -> None:
    stack.drift_tick()
    stack.checks_tick()


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("service", list(SERVICES))
def test_a_fault_is_reported_then_healed_with_nothing_lost(stack, seeded, service: str, fault: str) -> None:
    _settle(stack)
    leader = _leader(stack, service)
    expected = {
        "kill_leader": "is not running",
        "foreign_port": "is not running",
        "stop_leader": "is stopped (SIGSTOP)",
    }
    expected["stop_child"] = expected["stop_leader"]
    squatter = None  # set by inject for foreign_port; closed whatever happens
    try:
        squatter = inject(fault, service, leader, stack.resource(SERVICES[service]).service_spec().ports[0])
        summary = stack.drift_tick()
        if fault == "kill_child":  # Postgres's postmaster and MLflow's server replace a dead child themselves
            assert f"{service} is" in summary or _healthy(stack, service), summary
        else:
            assert service in summary and expected[fault] in summary, summary

        if squatter is not None:
            refused = stack.materialize()
            assert refused.status == "FAILURE"
            description = refused.failures.get("host:ports_available", "")
            assert f"is held by {psutil.Process().name()} (pid {os.getpid()})" in description, refused.failures
            squatter.close()
            squatter = None
    finally:
        if squatter is not None:
            squatter.close()
    # a stopped leader is left stopped: the heal must deal with it (the supervisor SIGKILLs what ignores TERM)

    healed = stack.materialize()
    assert healed.status == "SUCCESS" and healed.failed_checks == [], healed.failures
    assert _healthy(stack, service)
    assert _inventory(stack) == seeded
    assert "is not running" not in stack.drift_tick()


def inject(fault: str, service: str, leader: psutil.Process, port: int) -> socket.socket | None:
    """Do one fault of the matrix to a running service; for `foreign_port`, return the socket now on its port."""
    if fault == "kill_leader":
        leader.kill()  # the leader alone, as an OOM kill would: its children may live on, holding ports
        _wait("exit of the leader", lambda: not leader.is_running() or leader.status() == psutil.STATUS_ZOMBIE)
    elif fault in ("kill_child", "stop_child"):
        children = leader.children(recursive=True)
        if not children:
            pytest.skip(f"{service} runs as one process: no child (its leader's faults cover it)")
        if fault == "kill_child":
            children[0].kill()
        else:
            children[0].suspend()
    elif fault == "stop_leader":
        leader.suspend()
    else:
        os.killpg(leader.pid, signal.SIGKILL)
        _wait("the port to be free", lambda: not _port_held(port))
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        return squatter
    return None


def _port_held(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
