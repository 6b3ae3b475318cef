"""The `host` asset: what this machine is, and whether the platform can run on it."""

import hashlib
import json
from typing import Any

import dagster as dg

from platform_core.catalog import PLATFORM_OWNERS
from platform_core.decisions import decides
from platform_core.host.resource import MIN_FREE_DISK_BYTES, HostResource
from platform_core.results import NO_CHANGE, check_errors_fail, previous_metadata

GROUP = "host"
LOCAL_HOST = "records facts only (the local target changes nothing on this machine)"


@decides("host", target="local")
def host_change(host_resource: HostResource) -> str:
    """The local host is only described; a configured port held by another process blocks the services."""
    conflicts = "; ".join(map(str, host_resource.port_conflicts()))
    return f"blocked: {conflicts}" if conflicts else LOCAL_HOST


@dg.asset(
    group_name=GROUP, kinds={"linux"}, owners=PLATFORM_OWNERS, description="The machine the local target runs on."
)
def host(context: dg.AssetExecutionContext, host_resource: HostResource) -> dg.MaterializeResult:
    facts = host_resource.facts()
    # Only stable facts make the data version: free disk and listening ports move all the time.
    stable = {key: facts[key] for key in ("os", "kernel", "cpus", "memory_gib", "addresses", "state_dir")}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:16]
    same = previous_metadata(context).get("facts_digest") == digest
    metadata: dict[str, Any] = {key: ", ".join(map(str, v)) if isinstance(v, list) else v for key, v in facts.items()}
    return dg.MaterializeResult(
        metadata={"change": NO_CHANGE if same else "facts recorded", "facts_digest": digest, **metadata},
        data_version=dg.DataVersion(digest),
    )


@dg.asset_check(asset=host, blocking=True, description="Every configured port is free or held by our own service.")
@check_errors_fail
def ports_available(host_resource: HostResource) -> dg.AssetCheckResult:
    conflicts, orphans = host_resource.port_holders()
    reaped = f" ({'; '.join(orphans)}: reaped when the service restarts)" if orphans else ""
    return dg.AssetCheckResult(
        passed=not conflicts,
        description="; ".join(map(str, conflicts)) or f"all configured ports are free or ours{reaped}",
        metadata={"ports": dg.MetadataValue.json(host_resource.cfg.all_ports())},
    )


@dg.asset_check(asset=host, blocking=True, description="Enough free disk under the state directory.")
@check_errors_fail
def disk_space(host_resource: HostResource) -> dg.AssetCheckResult:
    free = host_resource.free_disk_bytes()
    return dg.AssetCheckResult(
        passed=free >= MIN_FREE_DISK_BYTES,
        description=f"{free / 1024**3:.1f} GiB free under {host_resource.state.root} "
        f"(need {MIN_FREE_DISK_BYTES / 1024**3:.0f} GiB)",
        metadata={"free_bytes": free},
    )


@dg.asset_check(asset=host, blocking=True, description="platform.yaml on disk still validates.")
@check_errors_fail
def config_valid(host_resource: HostResource) -> dg.AssetCheckResult:
    problem = host_resource.config_problem()
    return dg.AssetCheckResult(passed=problem is None, description=problem or "platform.yaml is valid")
