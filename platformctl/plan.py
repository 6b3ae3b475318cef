"""`platformctl plan`: what materializing each asset of both code locations would change, changing nothing (the
Terraform `plan` of this platform).

Everything runs inside `state.planning()`: the state directory is read, never written (a credential a real run would
generate first is made up for the plan and listed). k3s target: every reconcile step runs with
`ClusterResource(plan=True)`: host probes run for real, host changes are listed instead of made, Kubernetes writes
are server-side dry runs. Local target: each service's process and config against what platform.yaml renders.
Storage and ML assets are read through the services (buckets, roles, tables, the registry) in both targets.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg

from platform_core.alerting.service_drift import database_drift, service_drift
from platform_core.catalog import SERVICE_ASSETS
from platform_core.cluster.resource import ClusterResource
from platform_core.cluster.services import service_step
from platform_core.cluster.steps import STEPS
from platform_core.config import PlatformConfig
from platform_core.host.resource import HostResource
from platform_core.results import NO_CHANGE, first_line
from platform_core.state import StateDir, planning

SERVICES = ["postgres", "seaweedfs", "mlflow_server", "data_api", "inference_service"]
RESOURCE_OF = {
    "postgres": "postgres_resource",
    "seaweedfs": "seaweedfs_resource",
    "mlflow_server": "mlflow_resource",
    "data_api": "data_api_resource",
    "inference_service": "inference_resource",
}
Planned = Iterator[tuple[str, str]]
LOCAL_HOST = "records facts only (the local target changes nothing on this machine)"


class PlanError(ValueError):
    """A selection that names no asset of the platform."""


def reachable(cfg: PlatformConfig, resources: dict[str, object]) -> set[str]:
    """The services that accept a connection now; the plan reads only through those (no client retry storms)."""
    s = cfg.services
    ports = {
        "postgres": s.postgres.port,
        "seaweedfs": s.seaweedfs.s3_port,
        "mlflow_server": s.mlflow.port,
        "data_api": s.data_api.port,
        "inference_service": s.inference.port,
    }
    up = set()
    for asset, port in ports.items():
        try:
            host, at = resources[RESOURCE_OF[asset]].address(asset, port)  # type: ignore[attr-defined]
            socket.create_connection((host, at), timeout=2).close()
        except (OSError, RuntimeError):  # RuntimeError: k3s has no address recorded for it yet
            continue
        up.add(asset)
    return up


def k3s_steps(cfg_path: Path, state: StateDir, wanted: Callable[[str], bool]) -> Planned:
    cluster = ClusterResource(config_path=str(cfg_path), state_dir=str(state.root), plan=True)
    for asset in [*STEPS, *SERVICES]:
        if not wanted(asset):
            continue
        try:
            result = STEPS[asset](cluster) if asset in STEPS else service_step(cluster, asset)
            yield asset, result.change(plan=True)
        except Exception as err:  # a plan reports what blocks a step instead of stopping at the first one
            yield asset, f"blocked: {first_line(err)}"
    for line in getattr(cluster.executor, "planned", []):
        yield "host commands", line


def port_conflicts(host: HostResource) -> dict[str, str]:
    """Service asset -> why it cannot start: a configured port held by a process that is not ours (another stack,
    a system service). `up` stops at the host's blocking `ports_available` check for the same reason."""
    blocked: dict[str, str] = {}
    for conflict in host.port_conflicts():
        service = conflict.field.split(".")[1]  # services.<service>.<port field>
        blocked.setdefault(SERVICE_ASSETS.get(service, service), f"blocked: {conflict}")
    return blocked


def local_services(resources: dict[str, object], host: HostResource, wanted: Callable[[str], bool]) -> Planned:
    blocked = port_conflicts(host)
    if wanted("host"):
        reasons = "; ".join(reason.removeprefix("blocked: ") for reason in blocked.values())
        yield "host", f"blocked: {reasons}" if reasons else LOCAL_HOST
    for asset in SERVICES:
        if not wanted(asset):
            continue
        resource = resources[RESOURCE_OF[asset]]
        spec = resource.service_spec()  # type: ignore[attr-defined]
        supervisor = resource.supervisor  # type: ignore[attr-defined]
        if not supervisor.status(spec.name).running:
            yield asset, blocked.get(asset, f"would start {spec.name}")
            continue
        try:
            findings = service_drift(supervisor, spec)
        except Exception as err:
            yield asset, f"blocked: {first_line(err)}"
            continue
        yield asset, "; ".join(f"would fix: {f.message}" for f in findings) or NO_CHANGE


def storage(cfg: PlatformConfig, resources: dict[str, object], up: set[str], wanted: Callable[[str], bool]) -> Planned:
    buckets = [f"buckets/{bucket.name}" for bucket in cfg.buckets if wanted(f"buckets/{bucket.name}")]
    if buckets:
        yield from _buckets(resources, up, buckets)
    if wanted("postgres_databases"):
        yield "postgres_databases", _databases(cfg, resources, up)


def _buckets(resources: dict[str, object], up: set[str], keys: list[str]) -> Planned:
    try:  # up, yet refusing (still starting, or a credential the plan only made up): say so, do not crash
        live = resources["seaweedfs_resource"].live_buckets() if "seaweedfs" in up else set()  # type: ignore[attr-defined]
    except Exception as err:
        yield from ((key, f"blocked: {first_line(err)}") for key in keys)
        return
    for key in keys:
        name = key.removeprefix("buckets/")
        yield key, NO_CHANGE if name in live else f"would create s3://{name}" + _after(up, "seaweedfs")


def _databases(cfg: PlatformConfig, resources: dict[str, object], up: set[str]) -> str:
    if "postgres" not in up:
        names = ", ".join(f"{db.name} (owner {db.owner})" for db in cfg.databases)
        return f"would create {names}" + _after(up, "postgres")
    try:
        findings = database_drift(resources["postgres_resource"])  # type: ignore[arg-type]
    except Exception as err:
        return f"blocked: {first_line(err)}"
    return "; ".join(f"would fix: {f.message}" for f in findings if f.remedy != "manual") or NO_CHANGE


def _after(up: set[str], service: str) -> str:
    return "" if service in up else f" (once {service} is up)"


def ml_assets_plan(
    state: StateDir, resources: dict[str, object], up: set[str], wanted: Callable[[str], bool]
) -> Planned:
    from platformctl.ml_plan import MlPlan, ml_plan

    if not any(map(wanted, known_ml_assets())):
        return
    home = state.dagster_home
    # only an instance that has recorded runs: opening one creates its databases when they are missing
    recorded = (home / "dagster.yaml").exists() and (home / "history" / "runs.db").exists()
    instance = dg.DagsterInstance.from_config(str(home)) if recorded else None
    try:
        yield from ml_plan(MlPlan(resources, instance, up), wanted)
    finally:
        if instance is not None:
            instance.dispose()


def known_ml_assets() -> list[str]:
    from platformctl.ml_plan import PLANNERS

    return list(PLANNERS)


def known_assets(cfg: PlatformConfig) -> list[str]:
    cluster = list(STEPS) if cfg.target == "k3s" else ["host"]
    buckets = [f"buckets/{bucket.name}" for bucket in cfg.buckets]
    return [*cluster, *SERVICES, *buckets, "postgres_databases", *known_ml_assets()]


def exit_code(lines: list[str]) -> int:
    """As `terraform plan -detailed-exitcode`: 0 nothing to do, 2 changes to make, 1 something blocks a step."""
    changes = [line.split(": ", 1)[1] for line in lines]
    if any(change.startswith("blocked:") for change in changes):
        return 1
    return 0 if all(change in (NO_CHANGE, LOCAL_HOST) for change in changes) else 2


def plan(cfg: PlatformConfig, state: StateDir, cfg_path: Path, selection: list[str] | None) -> list[str]:
    """One "asset: change" line per selected asset, then what would be written to the state directory."""
    known = known_assets(cfg)
    unknown = sorted(set(selection or []) - set(known))
    if unknown:
        raise PlanError(f"--select: no asset named {', '.join(unknown)} (known: {', '.join(known)})")
    picked = set(selection or known)
    wanted = picked.__contains__
    lines = []
    with planning() as writes:
        from ml_assets.resources import build_ml_resources

        state.ensure()  # notes the directory a first run would create
        resources = build_ml_resources(cfg, state, cfg_path)
        up = reachable(cfg, resources)
        if cfg.target == "k3s":
            steps: Planned = k3s_steps(cfg_path, state, wanted)
        else:
            host = HostResource(config_path=str(cfg_path), state_dir=str(state.root))
            steps = local_services(resources, host, wanted)
        for part in (steps, storage(cfg, resources, up, wanted), ml_assets_plan(state, resources, up, wanted)):
            lines += [f"{asset}: {change}" for asset, change in part]
    return lines + [f"state: {line}" for line in writes]
