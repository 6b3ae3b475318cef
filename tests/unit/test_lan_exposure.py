"""What the LAN reaches, judged from the objects a cluster returns (the k3s scenarios cover the live fake)."""

from __future__ import annotations

from typing import Any

from platform_core.cluster.lan_exposure import pod_entry, service_entry

DECLARED = {("mlops", "inference")}


def _svc(name: str, spec: dict[str, Any], ingress: list[dict[str, str]] | None = None) -> dict[str, Any]:
    status = {"loadBalancer": {"ingress": ingress}} if ingress else {"loadBalancer": {}}
    return {"metadata": {"name": name, "namespace": "mlops"}, "spec": spec, "status": status}


def test_a_declared_load_balancer_is_on_the_lan_at_its_pool_address_only() -> None:
    lb = {"type": "LoadBalancer", "ports": [{"port": 8000}]}
    entry = service_entry(_svc("inference", lb, [{"ip": "10.43.100.201"}]), DECLARED)
    assert entry is not None and entry.declared and str(entry) == "Service mlops/inference at 10.43.100.201:8000"
    pending = service_entry(_svc("inference", lb), DECLARED)
    assert pending is not None and pending.where == "a pool address (pending):8000"
    with_node_port = {**lb, "ports": [{"port": 8000, "nodePort": 31000}]}
    flagged = service_entry(_svc("inference", with_node_port, [{"ip": "10.43.100.201"}]), DECLARED)
    assert flagged is not None and not flagged.declared and flagged.where.endswith("; node ports 31000")
    external = service_entry(_svc("inference", {**lb, "externalIPs": ["10.43.100.9"]}), DECLARED)
    assert external is not None and not external.declared


def test_cluster_ips_are_not_listed_and_node_ports_anywhere_are() -> None:
    assert service_entry(_svc("postgres", {"type": "ClusterIP", "ports": [{"port": 5432}]}), DECLARED) is None
    debug = service_entry(_svc("pg-debug", {"type": "NodePort", "ports": [{"port": 5432, "nodePort": 30432}]}), set())
    assert debug is not None and str(debug) == "Service mlops/pg-debug at node ports 30432 (not declared)"


def test_host_network_pods_are_named_by_the_workload_that_outlives_their_rollouts() -> None:
    pod = {
        "metadata": {
            "name": "agent-7c9f-x2x",
            "namespace": "tools",
            "labels": {"pod-template-hash": "7c9f"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "agent-7c9f"}],
        },
        "spec": {"hostNetwork": True, "containers": [{"name": "a"}]},
    }
    entry = pod_entry(pod, set())
    assert entry is not None and str(entry) == "pods of Deployment tools/agent at host network (not declared)"
    speaker = {
        "metadata": {
            "name": "speaker-abcde",
            "namespace": "metallb-system",
            "ownerReferences": [{"kind": "DaemonSet", "name": "speaker"}],
        },
        "spec": {"containers": [{"name": "s", "ports": [{"containerPort": 7472, "hostPort": 7472}]}]},
    }
    found = pod_entry(speaker, {("metallb-system", "speaker")})
    assert found is not None and found.declared and found.where == "host ports 7472"
    assert pod_entry({"metadata": {"name": "web"}, "spec": {"containers": []}}, set()) is None
