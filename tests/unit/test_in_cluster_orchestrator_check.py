"""The in-cluster orchestrator's check reads the daemon's health from the webserver's daemonHealth, as its UI does."""

from __future__ import annotations

from platform_assets.defs.orchestrator.in_cluster import daemon_problems

NOW = 1_000_000.0


def _status(kind: str, age: float | None, healthy: bool = True) -> dict[str, object]:
    beat = None if age is None else NOW - age
    return {"daemonType": kind, "required": True, "healthy": healthy, "lastHeartbeatTime": beat}


def test_fresh_heartbeats_pass_and_show_their_ages() -> None:
    ages, problems = daemon_problems([_status("SENSOR", 5), _status("SCHEDULER", 12), _status("QUEUED_RUN", 3)], NOW)
    assert (ages, problems) == (["SENSOR 5s ago", "SCHEDULER 12s ago"], [])


def test_a_stale_missing_or_unhealthy_daemon_is_named() -> None:
    _, problems = daemon_problems([_status("SENSOR", 400)], NOW)
    assert problems == ["SENSOR unhealthy", "SCHEDULER never beat"]
    _, problems = daemon_problems([_status("SENSOR", 5, healthy=False), _status("SCHEDULER", None)], NOW)
    assert problems == ["SENSOR unhealthy", "SCHEDULER never beat"]
