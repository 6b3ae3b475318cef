"""Unit tests for the finding life cycle (drift.findings.track) and the check-failure transitions."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from platform_core.alerting.causes import CauseFinder, open_alerts
from platform_core.alerting.findings import Finding, track
from platform_core.alerting.sensors import failing_checks

T0 = 1_700_000_000.0
SOURCE = "infra_drift_sensor"

PG_DOWN = Finding(
    key="service_down:postgres", subject="platform/postgres", title="postgres down", message="no answer on 55432"
)
BUCKET_MISSING = Finding(
    key="bucket_missing:datasets",
    subject="platform/seaweedfs",
    title="bucket missing",
    message="datasets does not exist",
    remedy="manual",
)


def test_new_finding_fires_once_with_onset_now() -> None:
    alerts, cursor = track(None, [PG_DOWN], T0, SOURCE)

    (alert,) = alerts
    assert alert.status == "firing"
    assert alert.key == PG_DOWN.key
    assert alert.onset == T0
    assert alert.title == PG_DOWN.title
    assert alert.message == PG_DOWN.message
    assert alert.subject == PG_DOWN.subject
    assert alert.source == SOURCE
    assert alert.resolved_at is None
    assert alert.details == {"remedy": "self-healable"}
    assert json.loads(cursor)[PG_DOWN.key]["onset"] == T0


def test_same_finding_next_tick_is_silent_and_keeps_onset() -> None:
    _, cursor = track(None, [PG_DOWN], T0, SOURCE)

    alerts, cursor2 = track(cursor, [PG_DOWN], T0 + 30, SOURCE)
    alerts3, cursor3 = track(cursor2, [PG_DOWN], T0 + 60, SOURCE)

    assert alerts == [] and alerts3 == []
    assert json.loads(cursor2)[PG_DOWN.key]["onset"] == T0
    assert json.loads(cursor3)[PG_DOWN.key]["onset"] == T0


def test_cleared_finding_resolves_once_with_duration() -> None:
    _, cursor = track(None, [PG_DOWN], T0, SOURCE)
    _, cursor = track(cursor, [PG_DOWN], T0 + 30, SOURCE)

    alerts, cursor = track(cursor, [], T0 + 95, SOURCE)

    (alert,) = alerts
    assert alert.status == "resolved"
    assert alert.key == PG_DOWN.key
    assert alert.onset == T0
    assert alert.resolved_at == T0 + 95
    assert alert.duration_seconds == 95.0
    assert alert.title == PG_DOWN.title and alert.subject == PG_DOWN.subject
    assert json.loads(cursor) == {}

    again, _ = track(cursor, [], T0 + 125, SOURCE)
    assert again == []


def test_only_the_cleared_finding_resolves() -> None:
    first, cursor = track(None, [PG_DOWN, BUCKET_MISSING], T0, SOURCE)
    assert sorted(a.key for a in first) == sorted([PG_DOWN.key, BUCKET_MISSING.key])
    assert {a.key: a.details["remedy"] for a in first} == {PG_DOWN.key: "self-healable", BUCKET_MISSING.key: "manual"}

    alerts, cursor = track(cursor, [BUCKET_MISSING], T0 + 60, SOURCE)

    (alert,) = alerts
    assert (alert.key, alert.status, alert.duration_seconds) == (PG_DOWN.key, "resolved", 60.0)
    assert list(json.loads(cursor)) == [BUCKET_MISSING.key]
    assert json.loads(cursor)[BUCKET_MISSING.key]["onset"] == T0


def test_finding_that_returns_after_clearing_fires_again_with_new_onset() -> None:
    _, cursor = track(None, [PG_DOWN], T0, SOURCE)
    _, cursor = track(cursor, [], T0 + 30, SOURCE)

    alerts, _ = track(cursor, [PG_DOWN], T0 + 60, SOURCE)

    (alert,) = alerts
    assert (alert.status, alert.onset) == ("firing", T0 + 60)


@pytest.mark.parametrize("cursor", [None, "", "{}"])
def test_empty_cursor_and_no_findings(cursor: str | None) -> None:
    alerts, new_cursor = track(cursor, [], T0, SOURCE)

    assert alerts == []
    assert json.loads(new_cursor) == {}


def test_cursor_is_json_that_round_trips() -> None:
    _, cursor = track(None, [PG_DOWN, BUCKET_MISSING], T0, SOURCE)

    state = json.loads(cursor)
    assert state == {
        BUCKET_MISSING.key: {
            "onset": T0,
            "subject": BUCKET_MISSING.subject,
            "title": BUCKET_MISSING.title,
            "message": BUCKET_MISSING.message,
        },
        PG_DOWN.key: {"onset": T0, "subject": PG_DOWN.subject, "title": PG_DOWN.title, "message": PG_DOWN.message},
    }
    # re-serialised (as a daemon restart would) it is the same cursor, and behaves the same
    reloaded = json.dumps(json.loads(cursor))
    assert json.loads(reloaded) == state
    assert track(reloaded, [PG_DOWN, BUCKET_MISSING], T0 + 30, SOURCE) == ([], cursor)


def evaluation(passed: bool, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR, description: str = ""):
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(["ml", "housing"]),
        check_name="row_count",
        passed=passed,
        severity=severity,
        description=description,
    )


KEY = "check_failed:ml/housing:row_count"


def test_failed_error_check_fires_once_then_resolves_on_pass() -> None:
    alerts, cursor = track(None, failing_checks([evaluation(False, description="0 rows")]), T0, "check_failure_sensor")
    (alert,) = alerts
    assert (alert.status, alert.key, alert.onset, alert.subject) == ("firing", KEY, T0, "ml/housing")
    assert (alert.title, alert.message) == ("check row_count on ml/housing failed", "0 rows")

    again, cursor = track(cursor, failing_checks([evaluation(False, description="still")]), T0 + 30, "c")
    assert again == []
    (resolved,), cursor = track(cursor, failing_checks([evaluation(True)]), T0 + 100, "c")
    assert (resolved.status, resolved.onset, resolved.duration_seconds) == ("resolved", T0, 100.0)
    assert track(cursor, failing_checks([evaluation(True)]), T0 + 130, "c")[0] == []


def test_warn_severity_failure_does_not_alert() -> None:
    assert failing_checks([evaluation(False, dg.AssetCheckSeverity.WARN, "few rows")]) == []


# --- cause links and inhibition --------------------------------------------------------------------------------
LINEAGE = {
    "postgres": frozenset(),
    "postgres_databases": frozenset({"postgres"}),
    "mlflow_server": frozenset({"postgres_databases"}),
    "trained_model": frozenset({"mlflow_server"}),
    "deployed_model": frozenset({"trained_model"}),
    "seaweedfs": frozenset(),
}


def open_alert(key: str, subject: str, title: str, onset: float) -> dict[str, object]:
    return {"key": key, "status": "firing", "subject": subject, "title": title, "onset": onset}


def finder(*alerts: dict[str, object]) -> CauseFinder:
    return CauseFinder(LINEAGE, open_alerts(list(alerts)))


MLFLOW_CHECK = Finding("check_failed:mlflow_server:responds", "mlflow_server", "check responds failed", "HTTP 500")
STALE = Finding("stale:deployed_model", "deployed_model", "deployed_model is stale", "no update", inhibitable=False)
PG_ROOT = open_alert("service_down:postgres", "postgres", "postgres is down", T0)


def test_open_alerts_drop_what_was_resolved() -> None:
    resolved = {"key": "service_down:postgres", "status": "resolved"}
    assert open_alerts([PG_ROOT, resolved]) == {}
    assert list(open_alerts([resolved, PG_ROOT])) == ["service_down:postgres"]


def test_a_downstream_failure_is_inhibited_while_its_cause_is_open_and_fires_if_it_outlives_it() -> None:
    alerts, cursor = track(None, [MLFLOW_CHECK], T0 + 60, "c", finder(PG_ROOT))
    assert alerts == []
    assert json.loads(cursor)[MLFLOW_CHECK.key]["inhibited_by"] == "service_down:postgres"
    # the cause clears but the check still fails: now it is news, with its original onset
    (late,), cursor = track(cursor, [MLFLOW_CHECK], T0 + 120, "c", finder())
    assert (late.status, late.onset) == ("firing", T0 + 60)
    assert json.loads(cursor)[MLFLOW_CHECK.key].get("inhibited_by") is None


def test_an_inhibited_finding_that_clears_sends_nothing() -> None:
    _, cursor = track(None, [MLFLOW_CHECK], T0 + 60, "c", finder(PG_ROOT))
    assert track(cursor, [], T0 + 90, "c", finder(PG_ROOT)) == ([], "{}")


def test_a_stale_asset_alerts_and_names_the_earliest_upstream_cause() -> None:
    later = open_alert("check_failed:mlflow_server:responds", "mlflow_server", "check responds failed", T0 + 300)
    (alert,), _ = track(None, [STALE], T0 + 600, "freshness", finder(later, PG_ROOT))
    assert alert.message == "no update ← postgres: postgres is down since 22:13 UTC"
    assert alert.details["cause"] == "service_down:postgres"


def test_a_root_finding_names_what_depends_on_it() -> None:
    root = Finding("service_down:postgres", "postgres", "postgres is down", "process gone")
    (alert,), _ = track(None, [root], T0, "infra", finder())
    assert alert.message == "process gone; downstream: deployed_model, mlflow_server, postgres_databases, trained_model"


def test_unrelated_open_alerts_are_not_causes() -> None:
    weed = open_alert("service_down:seaweedfs", "seaweedfs", "seaweedfs is down", T0)
    (alert,), _ = track(None, [MLFLOW_CHECK], T0 + 5, "c", finder(weed))
    assert alert.status == "firing" and "←" not in alert.message
