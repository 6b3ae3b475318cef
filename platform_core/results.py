"""How a service asset reports itself: what changed, where it listens, which process and config it runs."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from platform_core.redact import redact
from platform_core.supervisor import EnsureResult, Supervisor

NO_CHANGE = "no change"


def latest_metadata(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None
) -> dict[str, dg.MetadataValue]:
    """The metadata of the asset's latest materialization (of that partition, when given), {} if none."""
    partitions = [partition] if partition is not None else None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    return dict(materialization.metadata) if materialization else {}


def previous_metadata(context: dg.AssetExecutionContext) -> dict[str, object]:
    """Metadata values of this asset's latest materialization, to tell a no-op from a change."""
    return {key: value.value for key, value in latest_metadata(context.instance, context.asset_key).items()}


def directory_bytes(path: Path) -> int:
    """Bytes on disk under `path` (files the service user made may be unreadable to us: skipped)."""
    total = 0
    for entry in path.rglob("*"):
        with contextlib.suppress(OSError):
            if entry.is_file():
                total += entry.stat().st_size
    return total


def change_text(result: EnsureResult, also: Sequence[str] = ()) -> str:
    """What the ensure did, then what was made or mended beside the process (e.g. MLflow's users)."""
    lines = ([] if result.action == "unchanged" else [f"{result.action} ({result.reason})"]) + list(also)
    return "; ".join(lines) or NO_CHANGE


def service_result(
    supervisor: Supervisor,
    name: str,
    result: EnsureResult,
    metadata: dict[str, Any],
    also: Sequence[str] = (),
    asset_key: str | None = None,
) -> dg.MaterializeResult[Any]:
    """Metadata a person wants in the UI; the config hash doubles as the data version, so a re-run that
    changed nothing shows the same version. `also`: changes made beside the process, reported with it;
    `asset_key`: which asset, when one step materializes several."""
    listening = sorted(f"{ip}:{port}" for ip, port in supervisor.listen_addresses(name))
    return dg.MaterializeResult(
        asset_key=asset_key,
        metadata={
            "change": change_text(result, also),
            "pid": result.pid,
            "config_hash": result.config_hash,
            "listening": ", ".join(listening),
            "log": dg.MetadataValue.path(str(supervisor.log_file(name))),
            **metadata,
        },
        data_version=dg.DataVersion(result.config_hash),
    )


LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1")  # gRPC binds 127.0.0.1 on a dual-stack socket, in its mapped form


def loopback_only(supervisor: Supervisor, name: str) -> dg.AssetCheckResult:
    """Every socket the service listens on is bound to 127.0.0.1, as the platform promises."""
    addresses = supervisor.listen_addresses(name)
    exposed = sorted(f"{ip}:{port}" for ip, port in addresses if ip not in LOOPBACK)
    return dg.AssetCheckResult(
        passed=bool(addresses) and not exposed,
        description=(
            f"{name} listens on {', '.join(exposed)} beyond loopback"
            if exposed
            else f"{name} listens on 127.0.0.1 only"
            if addresses
            else f"{name} is not listening"
        ),
        metadata={"listening": ", ".join(sorted(f"{ip}:{port}" for ip, port in addresses))},
    )


def first_line(err: Exception) -> str:
    """An error in one line for a listing (plan output): its first line, or its type when it says nothing."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_errors_fail(fn: Callable[..., dg.AssetCheckResult]) -> Callable[..., dg.AssetCheckResult]:
    """A check that cannot reach its service fails with the reason, instead of crashing the step, so the
    failure is recorded as a check evaluation the alert sensor can see."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> dg.AssetCheckResult:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            message = redact(" ".join(str(err).split()))[:500]  # errors quote the URL they failed on
            return dg.AssetCheckResult(passed=False, description=f"{type(err).__name__}: {message}")

    return wrapper
