"""Where a secret must never appear: logs, pid files, alerts, run events, asset metadata and compute logs."""

from __future__ import annotations

import json

import dagster as dg

from platform_core.state import StateDir


def generated_secrets(state: StateDir) -> set[str]:
    """Every generated password, S3 secret key and token. Access key IDs are identifiers, not secrets: every S3
    request and presigned report link carries one."""
    stored = json.loads(state.secrets_file.read_text())
    return {value for name, section in stored.items() if name != "s3_access_keys" for value in section.values()}


def readable_places(state: StateDir, instance: dg.DagsterInstance) -> dict[str, str]:
    """Name -> text of everything a person or a log shipper reads: the state directory's logs, pid records and
    alerts, every run's events (metadata included) and the compute logs Dagster keeps."""
    places: dict[str, str] = {}
    for run_record in instance.get_run_records():
        run_id = run_record.dagster_run.run_id
        places[f"events of run {run_id}"] = "".join(
            f"{event.message}{event.dagster_event}" for event in instance.all_logs(run_id)
        )
    files = [*state.run.glob("*.json"), *state.logs.rglob("*"), *state.root.glob("*.jsonl")]
    files += [p for p in state.dagster_home.rglob("*") if p.suffix in (".out", ".err", ".log", ".complete")]
    for path in files:
        if path.is_file():
            places[str(path)] = path.read_text(errors="replace")
    return places


def leaks(places: dict[str, str], secrets: set[str]) -> list[str]:
    return [f"{where} holds {secret[:4]}..." for where, text in places.items() for secret in secrets if secret in text]
