"""Unit tests for the finding life cycle (drift.findings.track) and the check-failure transitions."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from platform_assets.drift.findings import Finding, track
from platform_assets.drift.sensors import _check_transition

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
    failing: dict[str, dict] = {}

    alert = _check_transition(failing, KEY, evaluation(False, description="0 rows"), T0)

    assert alert is not None
    assert alert.status == "firing"
    assert alert.key == KEY
    assert alert.onset == T0
    assert alert.subject == "ml/housing"
    assert alert.title == "check row_count on ml/housing failed"
    assert alert.message == "0 rows"
    assert alert.source == "check_failure_sensor"
    assert KEY in failing

    assert _check_transition(failing, KEY, evaluation(False, description="still 0 rows"), T0 + 30) is None

    resolved = _check_transition(failing, KEY, evaluation(True), T0 + 100)

    assert resolved is not None
    assert resolved.status == "resolved"
    assert resolved.onset == T0  # from the first failure, not the second
    assert resolved.resolved_at == T0 + 100
    assert resolved.duration_seconds == 100.0
    assert resolved.message == "0 rows"
    assert resolved.title == "check row_count on ml/housing passes again"
    assert failing == {}

    assert _check_transition(failing, KEY, evaluation(True), T0 + 130) is None


def test_failing_state_survives_a_json_cursor_round_trip() -> None:
    failing: dict[str, dict] = {}
    _check_transition(failing, KEY, evaluation(False, description="0 rows"), T0)
    failing = json.loads(json.dumps(failing, sort_keys=True))  # the sensor keeps `failing` in its cursor

    assert _check_transition(failing, KEY, evaluation(False), T0 + 30) is None
    resolved = _check_transition(failing, KEY, evaluation(True), T0 + 60)
    assert resolved is not None and resolved.onset == T0


def test_warn_severity_failure_does_not_alert() -> None:
    failing: dict[str, dict] = {}

    assert _check_transition(failing, KEY, evaluation(False, dg.AssetCheckSeverity.WARN, "few rows"), T0) is None
    assert failing == {}
    assert _check_transition(failing, KEY, evaluation(True), T0 + 30) is None
