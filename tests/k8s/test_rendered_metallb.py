"""MetalLB as the k3s target renders it, in both of its configuration modes, and the pool checks that keep its
addresses on the host's LAN and out of the cluster's CIDRs."""

from __future__ import annotations

import base64
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
import yaml

from platform_core.cluster import render
from platform_core.config import NetworkConfig, PlatformConfig
from tests.k8s.test_rendered_schemas import KEY, config


@pytest.fixture(scope="module")
def seed() -> PlatformConfig:
    return render.seed_config()


def test_metallb_configmap_mode(seed: PlatformConfig) -> None:
    assert seed.versions.metallb_mode == "configmap"
    cm, secret = render.render_metallb(seed, KEY)
    assert (cm["kind"], cm["metadata"]["namespace"], cm["metadata"]["name"]) == (
        "ConfigMap",
        "metallb-system",
        "config",
    )
    pools = yaml.safe_load(cm["data"]["config"])
    assert pools == {
        "address-pools": [{"name": "default", "protocol": "layer2", "addresses": ["10.43.100.200-10.43.100.220"]}]
    }
    assert (secret["metadata"]["name"], base64.b64decode(secret["data"]["secretkey"]).decode()) == ("memberlist", KEY)
    assert render.render_metallb(seed, KEY) == [cm, secret]  # deterministic given the key
    assert render.live_pool_strings([cm]) == ["10.43.100.200-10.43.100.220"]
    with pytest.raises(ValueError, match="needs the memberlist secret key"):
        render.render_metallb(seed, None)


def test_metallb_crd_mode() -> None:
    cfg = config(metallb="v0.15.3")
    pool, l2 = render.render_metallb(cfg)
    assert (pool["apiVersion"], pool["kind"], pool["spec"]) == (
        "metallb.io/v1beta1",
        "IPAddressPool",
        {"addresses": ["10.43.100.200-10.43.100.220"]},
    )
    assert (l2["kind"], l2["spec"]["ipAddressPools"]) == ("L2Advertisement", [pool["metadata"]["name"]])
    assert render.live_pool_strings([pool, l2]) == ["10.43.100.200-10.43.100.220"]


def _with_network(cfg: PlatformConfig, **changes: Any) -> PlatformConfig:
    """A network the config would refuse, to exercise the re-check (model_construct skips validation)."""
    fields = {**cfg.network.model_dump(), **changes} if cfg.network else changes
    return cfg.model_copy(update={"network": NetworkConfig.model_construct(**fields)})


def test_pool_problems(seed: PlatformConfig) -> None:
    assert render.pool_problems(seed) == []
    bad = _with_network(seed, metallb_pool="10.45.0.1-10.45.0.9", host_subnet=IPv4Network("10.43.100.0/24"))
    assert render.pool_problems(bad) == [
        "metallb pool 10.45.0.1-10.45.0.9 overlaps service_cidr 10.45.0.0/16",
        "metallb pool 10.45.0.1-10.45.0.9 is not entirely inside host_subnet 10.43.100.0/24",
    ]
    host = _with_network(seed, metallb_pool="10.43.100.90-10.43.100.99", host_ip=IPv4Address("10.43.100.94"))
    assert render.pool_problems(host) == ["metallb pool 10.43.100.90-10.43.100.99 contains host_ip 10.43.100.94"]


def test_live_pool_problems(seed: PlatformConfig) -> None:
    assert render.live_pool_problems(seed, ["10.43.100.200-10.43.100.220"]) == []
    assert render.live_pool_problems(seed, []) == [
        "MetalLB has no address pool (configured: 10.43.100.200-10.43.100.220)"
    ]
    assert render.live_pool_problems(seed, ["10.44.0.0/24"]) == [
        "metallb pool 10.44.0.0/24 overlaps pod_cidr 10.44.0.0/16",
        "metallb pool 10.44.0.0/24 is not entirely inside host_subnet 10.43.100.0/24",
        "MetalLB pool is 10.44.0.0/24, configured 10.43.100.200-10.43.100.220",
    ]
    problems = render.live_pool_problems(seed, ["10.43.100.220-10.43.100.200"])
    assert problems[0].startswith("metallb pool '10.43.100.220-10.43.100.200' does not parse: range")
