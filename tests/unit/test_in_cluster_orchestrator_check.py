"""The in-cluster orchestrator's check reads the daemon's health from the webserver's daemonHealth, as its UI does."""

from __future__ import annotations

from platform_assets.defs.orchestrator.in_cluster import daemon_problems

NOW = 1_000_000.0


def _status(kind: str, age: float | None, healthy: bool = True) -> dict[str, object]:
    beat = None if age is None else NOW - age
    return {"daemonType": kind, "required": True, "healthy": healthy, "lastHeartbeatTime": beat}


ALL = ("SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR", "MONITORING")


def test_fresh_heartbeats_pass_and_show_their_ages() -> None:
    statuses = [_status(kind, 5 + i) for i, kind in enumerate(ALL)] + [_status("BACKFILL", None, healthy=False)]
    ages, problems = daemon_problems(statuses, NOW)
    assert ages == ["SENSOR 5s ago", "SCHEDULER 6s ago", "QUEUED_RUN_COORDINATOR 7s ago", "MONITORING 8s ago"]
    assert problems == []  # a daemon the deployment does not need is not judged


def test_a_stale_missing_or_unhealthy_daemon_is_named() -> None:
    statuses = [_status("SENSOR", 400), _status("SCHEDULER", 5, healthy=False), _status("MONITORING", None)]
    _, problems = daemon_problems(statuses, NOW)
    assert problems == [
        "SENSOR stale",
        "QUEUED_RUN_COORDINATOR never beat",
        "MONITORING never beat",
        "SCHEDULER unhealthy",
    ]
