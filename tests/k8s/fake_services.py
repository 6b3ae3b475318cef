"""The API server's node-port allocation for Services, for the fake's store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]
NODE_PORTS = range(30000, 32768)  # the API server's default --service-node-port-range


def node_ports(services: Iterable[Obj], svc: Obj, prev: Obj) -> None:
    """NodePort and LoadBalancer Services get a node port per port, open on every node's address, kept across
    updates; other types drop them (kubernetes pkg/registry/core/service/storage/alloc.go, allocServiceNodePorts;
    strategy.go, dropTypeDependentFields). A LoadBalancer gets new ones unless allocateLoadBalancerNodePorts is
    false (defaulted true since v1.24, KEP-1864), but keeps those it has: an update that omits them gets them
    back (storage.go, patchAllocatedValues; kubernetes#122381), and an asked-for node port is honoured."""
    spec, kind = svc["spec"], svc["spec"]["type"]
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    else:
        spec.pop("allocateLoadBalancerNodePorts", None)
    wanted = kind == "NodePort" or (kind == "LoadBalancer" and spec["allocateLoadBalancerNodePorts"])
    kept = {(p.get("name"), p.get("port")): p.get("nodePort") for p in prev.get("ports") or []}
    me = svc["metadata"].get("uid")
    used = {
        p.get("nodePort")
        for o in services
        if o["metadata"].get("uid") != me
        for p in o.get("spec", {}).get("ports") or []
    }
    for port in spec.get("ports") or []:
        if kind not in ("NodePort", "LoadBalancer"):
            port.pop("nodePort", None)
            continue
        port["nodePort"] = port.get("nodePort") or kept.get((port.get("name"), port.get("port")))
        if not port["nodePort"] and wanted:
            port["nodePort"] = next(n for n in NODE_PORTS if n not in used)
        if not port["nodePort"]:
            port.pop("nodePort")
        used.add(port.get("nodePort"))
