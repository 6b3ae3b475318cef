"""Desired (platform.yaml, rendered service specs) versus live (processes, buckets, roles) for the local target."""

from __future__ import annotations

from typing import Protocol

from platform_core.alerting.findings import Finding
from platform_core.catalog import SERVICE_ASSETS
from platform_core.host.resource import HostResource
from platform_core.orchestrator.services import DagsterResource
from platform_core.results import NO_CHANGE
from platform_core.secrets_record import mismatch
from platform_core.services.mlflow import MlflowResource
from platform_core.services.postgres import PostgresResource
from platform_core.services.seaweedfs import SeaweedFSResource
from platform_core.state import StateDir
from platform_core.supervisor import ServiceSpec, Supervisor


def local_findings(
    postgres: PostgresResource,
    seaweedfs: SeaweedFSResource,
    mlflow: MlflowResource,
    dagster: DagsterResource | None = None,
) -> list[Finding]:
    """The platform location's services against platform.yaml; with `dagster`, the orchestrator's too (the daemon
    evaluating this cannot report itself gone, but its config drift it can; the watchdog reports its death)."""
    stale = credentials_finding(postgres.state)
    if stale is not None:
        return [stale]  # every probe would fail on it: the one finding that says why
    supervisor = postgres.supervisor
    findings: list[Finding] = []
    healthy: dict[str, bool] = {}
    specs = [resource.service_spec() for resource in (postgres, seaweedfs, mlflow)]
    if dagster is not None:
        specs += dagster.specs()
    for spec in specs:
        service_findings = service_drift(supervisor, spec)
        findings += service_findings
        healthy[spec.name] = supervisor.status(spec.name).running and not service_findings
    if healthy["seaweedfs"]:
        findings += bucket_drift(seaweedfs)
    if healthy["postgres"]:
        findings += database_drift(postgres)
    return findings


def credentials_finding(state: StateDir) -> Finding | None:
    """A lost or stale credentials file (secrets_record.py): no service can be probed or healed until a person
    restores the file or rotates, and nothing that watches should touch a service meanwhile."""
    problem = mismatch(state.credentials_record, state.secrets_file)
    if problem is None:
        return None
    title = "the credentials file does not match the data"
    return Finding("credentials_mismatch", "postgres", title, problem, remedy="manual", inhibitable=False)


class Supervised(Protocol):
    """A resource that runs a supervised local service."""

    @property
    def supervisor(self) -> Supervisor: ...

    def service_spec(self) -> ServiceSpec: ...


def service_change(resource: Supervised, host: HostResource) -> str:
    """A local service asset's decision (`Supervisor.inspect`, which `ensure` acts on), in plan's words."""
    return spec_change(resource.supervisor, resource.service_spec(), host)


def spec_change(supervisor: Supervisor, spec: ServiceSpec, host: HostResource) -> str:
    if not supervisor.status(spec.name).running:
        # a port held by a process that is not ours: the start would fail, as the host's ports check says
        conflict = next((c for c in host.port_conflicts() if c.port in spec.ports), None)
        return f"blocked: {conflict}" if conflict else f"would start {spec.name}"
    findings = service_drift(supervisor, spec)
    return "; ".join(f"would fix: {f.message}" for f in findings) or NO_CHANGE


def service_drift(supervisor: Supervisor, spec: ServiceSpec) -> list[Finding]:
    """Every cause the service's decision (`Supervisor.inspect`) would restart it for, as findings."""
    asset = SERVICE_ASSETS[spec.name]
    state = supervisor.inspect(spec)
    if not state.status.deployed:
        return []  # never brought up here, or stopped on purpose with `platform down`
    if not state.status.running:
        return [
            Finding(
                f"service_down:{spec.name}",
                asset,
                f"{spec.name} is down",
                f"{spec.name} is not running (its process is gone); last log: {supervisor.log_tail(spec.name, 2)}",
                inhibitable=False,  # a dead process is its own incident, even below another one
            )
        ]
    if state.status.starting(spec.start_timeout):
        return []  # its start is still waiting for the first healthy probe (or will time out and say so)
    findings = [
        Finding(
            f"config_edited:{spec.name}:{path.name}",
            asset,
            f"{spec.name} config edited out of band",
            f"{path} differs from what platform.yaml renders: re-materialize {asset} to restore it",
        )
        for path in state.edited
    ]
    if state.status.config_hash != state.wanted_hash:
        findings.append(
            Finding(
                f"config_changed:{spec.name}",
                asset,
                f"{spec.name} runs an old config",
                f"{spec.name} runs config {state.status.config_hash}, platform.yaml wants "
                f"{state.wanted_hash}: re-materialize {asset} to restart it",
            )
        )
    if state.stopped:
        findings.append(
            Finding(
                f"service_stopped:{spec.name}",
                asset,
                f"{spec.name} is stopped",
                f"{spec.name} pid {', '.join(map(str, state.stopped))} is stopped (SIGSTOP): re-materialize {asset} "
                "to restart it",
            )
        )
    elif not state.healthy:
        findings.append(
            Finding(
                f"service_unhealthy:{spec.name}",
                asset,
                f"{spec.name} is unhealthy",
                f"{spec.name} (pid {state.status.pid}) runs but fails its health probe",
            )
        )
    return findings


def bucket_drift(seaweedfs: SeaweedFSResource) -> list[Finding]:
    desired = {bucket.name for bucket in seaweedfs.cfg.buckets}
    live = seaweedfs.live_buckets()
    missing = [
        Finding(
            f"bucket_missing:{name}",
            f"buckets/{name}",
            f"bucket {name} is missing",
            f"s3://{name} is declared in platform.yaml but does not exist",
        )
        for name in sorted(desired - live)
    ]
    orphans = [
        Finding(
            f"orphan_bucket:{name}",
            "seaweedfs",
            f"orphan bucket {name}",
            f"s3://{name} exists but is not in platform.yaml: add it there or delete it",
            remedy="manual",
        )
        for name in sorted(live - desired)
    ]
    return missing + orphans


def database_drift(postgres: PostgresResource) -> list[Finding]:
    roles = postgres.live_roles()
    databases = postgres.live_databases()
    findings = []
    for db in postgres.cfg.databases:
        if db.owner not in roles:
            findings.append(
                Finding(
                    f"role_missing:{db.owner}",
                    "postgres_databases",
                    f"role {db.owner} is missing",
                    f"role {db.owner} (owner of {db.name}) does not exist",
                )
            )
        if db.name not in databases:
            findings.append(
                Finding(
                    f"database_missing:{db.name}",
                    "postgres_databases",
                    f"database {db.name} is missing",
                    f"database {db.name} does not exist",
                )
            )
        elif databases[db.name] != db.owner:
            findings.append(
                Finding(
                    f"database_owner:{db.name}",
                    "postgres_databases",
                    f"database {db.name} has the wrong owner",
                    f"{db.name} is owned by {databases[db.name]}, platform.yaml says {db.owner}",
                )
            )
    for name in sorted(set(databases) - {db.name for db in postgres.cfg.databases}):
        findings.append(
            Finding(
                f"orphan_database:{name}",
                "postgres_databases",
                f"orphan database {name}",
                f"database {name} exists but is not in platform.yaml",
                remedy="manual",
            )
        )
    desired_roles = {db.owner for db in postgres.cfg.databases}
    for role in sorted(roles - desired_roles):
        findings.append(
            Finding(
                f"orphan_role:{role}",
                "postgres_databases",
                f"orphan role {role}",
                f"role {role} exists but no database in platform.yaml names it",
                remedy="manual",
            )
        )
    return findings
