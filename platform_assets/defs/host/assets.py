"""The `host` asset: what this machine is and whether the platform can run on it (local target), or the VM
prepared for K3s (k3s target)."""

import hashlib
import ipaddress
import json
from typing import Any

import dagster as dg

from platform_core.catalog import PLATFORM_OWNERS
from platform_core.cluster.reconcile import cluster_spec, reconcile_asset
from platform_core.cluster.resource import ClusterResource
from platform_core.cluster.steps import STEPS
from platform_core.config import PlatformConfig
from platform_core.decisions import decides
from platform_core.host.facts import host_facts
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


# --- the k3s target: a VM, prepared by its reconcile step ------------------------------------------------------
VM_HOST = cluster_spec(
    "host", GROUP, [], "The VM: facts, egress preflight and idempotent, OS-aware preparation.", ["linux"]
)


@dg.asset_check(asset="host", blocking=True, description="network.host_ip is an address of the host itself.")
@check_errors_fail
def host_ip_on_host(cluster: ClusterResource) -> dg.AssetCheckResult:
    net = cluster.cfg.network
    if net is None:  # the k3s target's config requires it; the check says so rather than crash
        return dg.AssetCheckResult(passed=False, description="network: missing (the k3s target needs it)")
    facts = host_facts(cluster.executor, str(net.host_ip))
    # The interface holding host_ip must be on host_subnet: MetalLB answers ARP for the pool on that LAN.
    subnets = [ipaddress.ip_interface(a).network for a in facts["addresses"] if a.split("/")[0] == str(net.host_ip)]
    wanted = net.host_subnet
    on_subnet = any(s.version == wanted.version and s.subnet_of(wanted) for s in subnets)
    return dg.AssetCheckResult(
        passed=bool(facts.get("host_ip_present")) and on_subnet,
        description=f"{net.host_ip} on {cluster.executor.describe()}: addresses {facts.get('addresses')}; "
        f"host_subnet {net.host_subnet} {'matches' if on_subnet else 'does not match'} its interface",
    )


def host_definitions(cfg: PlatformConfig) -> dg.Definitions:
    """This machine described (local target), or the VM prepared (k3s target)."""
    if cfg.target == "k3s":
        return dg.Definitions(assets=[reconcile_asset(VM_HOST, STEPS["host"])], asset_checks=[host_ip_on_host])
    return dg.Definitions(assets=[host], asset_checks=[ports_available, disk_space, config_valid])
