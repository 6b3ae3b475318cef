"""MetalLB's configuration (ConfigMap for < v0.13, CRDs after), its pool checks and the LoadBalancer probe Service.

The seed deployment's MetalLB v0.13 failed on its webhook certificate and v0.12.1 with a ConfigMap worked, so both
shapes are rendered, chosen by ``cfg.versions.metallb_mode``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import yaml

from platform_core.cluster.render_base import LOAD_BALANCER_ONLY, Obj, meta, obj
from platform_core.config import NetworkConfig, PlatformConfig

METALLB_NAMESPACE = "metallb-system"
ASSET = "metallb"
POOL_NAME = "default"
PROBE_SERVICE = "mlops-platform-lb-probe"


def _network(cfg: PlatformConfig) -> NetworkConfig:
    if cfg.network is None:
        raise ValueError("network: required when target is k3s (MetalLB needs a pool)")
    return cfg.network


def render_metallb(cfg: PlatformConfig, memberlist_key: str | None = None) -> list[Obj]:
    """MetalLB's pool config; v0.12 also needs the memberlist Secret, whose key the platform generates and keeps."""
    pool = _network(cfg).metallb_pool
    if cfg.versions.metallb_mode == "crd":
        return _crd_objects(pool)
    if not memberlist_key:
        raise ValueError(f"MetalLB {cfg.versions.metallb} needs the memberlist secret key (none was given)")
    config = yaml.safe_dump(
        {"address-pools": [{"name": POOL_NAME, "protocol": "layer2", "addresses": [pool]}]}, sort_keys=True
    )
    cm = obj("v1", "ConfigMap", meta("config", ASSET, METALLB_NAMESPACE), data={"config": config})
    secret = obj(
        "v1",
        "Secret",
        meta("memberlist", ASSET, METALLB_NAMESPACE),
        type="Opaque",
        data={"secretkey": base64.b64encode(memberlist_key.encode()).decode()},
    )
    return [cm, secret]


def _crd_objects(pool: str) -> list[Obj]:
    ip_pool = obj(
        "metallb.io/v1beta1",
        "IPAddressPool",
        meta(POOL_NAME, ASSET, METALLB_NAMESPACE),
        spec={"addresses": [pool]},
    )
    l2 = obj(
        "metallb.io/v1beta1",
        "L2Advertisement",
        meta(POOL_NAME, ASSET, METALLB_NAMESPACE),
        spec={"ipAddressPools": [POOL_NAME]},
    )
    return [ip_pool, l2]


def probe_service(cfg: PlatformConfig) -> Obj:
    """A selector-less LoadBalancer Service: if MetalLB works, it gets a pool IP; nothing ever answers on it (no
    node port either)."""
    spec = {"type": "LoadBalancer", "ports": [{"name": "probe", "port": 80, "protocol": "TCP"}], **LOAD_BALANCER_ONLY}
    return obj("v1", "Service", meta(PROBE_SERVICE, ASSET, cfg.k3s.namespace, PROBE_SERVICE), spec=spec)


def _parse(pool: str) -> tuple[IPv4Address, IPv4Address]:
    """Like the config's parser, but for any pool string (a live one may be anything)."""
    if "-" in pool:
        first, last = (IPv4Address(part.strip()) for part in pool.split("-", 1))
    else:
        net = IPv4Network(pool.strip(), strict=True)
        first, last = net.network_address, net.broadcast_address
    if first > last:
        raise ValueError(f"range {pool!r} starts after it ends")
    return first, last


def _range_problems(pool: str, net: NetworkConfig) -> list[str]:
    try:
        first, last = _parse(pool)
    except ValueError as exc:
        return [f"metallb pool {pool!r} does not parse: {exc}"]
    out = []
    for name, cidr in (("pod_cidr", net.pod_cidr), ("service_cidr", net.service_cidr)):
        if cidr.network_address <= last and first <= cidr.broadcast_address:
            out.append(f"metallb pool {pool} overlaps {name} {cidr}")
    if first not in net.host_subnet or last not in net.host_subnet:  # layer 2 only answers ARP on the LAN
        out.append(f"metallb pool {pool} is not entirely inside host_subnet {net.host_subnet}")
    if first <= net.host_ip <= last:
        out.append(f"metallb pool {pool} contains host_ip {net.host_ip}")
    return out


def pool_problems(cfg: PlatformConfig) -> list[str]:
    """The configured pool re-checked against the cluster CIDRs and the host subnet (empty when fine)."""
    return _range_problems(_network(cfg).metallb_pool, _network(cfg))


def live_pool_problems(cfg: PlatformConfig, live_pool_strings: Iterable[str]) -> list[str]:
    """Problems of the pools a cluster actually has: unsafe ranges, and drift from the configured pool."""
    net = _network(cfg)
    live = list(live_pool_strings)
    out = [problem for pool in live for problem in _range_problems(pool, net)]
    if not live:
        out.append(f"MetalLB has no address pool (configured: {net.metallb_pool})")
    elif [p.strip() for p in live] != [net.metallb_pool.strip()]:
        out.append(f"MetalLB pool is {', '.join(live)}, configured {net.metallb_pool}")
    return out


def live_pool_strings(objs: Iterable[dict[str, Any]]) -> list[str]:
    """Pool addresses held by live MetalLB objects: the v0.12 ``config`` ConfigMap or IPAddressPools."""
    out: list[str] = []
    for item in objs:
        if item.get("kind") == "IPAddressPool":
            out.extend(item.get("spec", {}).get("addresses", []))
        elif item.get("kind") == "ConfigMap" and "config" in item.get("data", {}):
            config = yaml.safe_load(item["data"]["config"]) or {}
            for pool in config.get("address-pools", []):
                out.extend(pool.get("addresses", []))
    return out
