"""k3s networking: the lessons of the seed deployment (node IP inside a cluster CIDR) as validation."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Self

from pydantic import (
    BeforeValidator,
    field_validator,
    model_validator,
)

from platform_core.config.base import _FieldError, _Model


def _host_bits(text: str) -> None:
    """Refuse ``10.44.0.1/16`` saying so: pydantic's own message ("not a valid IPv4 network") hides the reason."""
    try:
        IPv4Network(text)
    except ValueError as err:
        if "host bits set" in str(err):
            raise ValueError(f"{text} has host bits set; the network is {IPv4Network(text, strict=False)}") from None


def _network(value: object) -> object:
    if isinstance(value, str):
        _host_bits(value.strip())
    return value


Network = Annotated[IPv4Network, BeforeValidator(_network)]


def _parse_pool(pool: str) -> tuple[IPv4Address, IPv4Address]:
    if "-" not in pool:
        _host_bits(pool.strip())
    try:
        if "-" in pool:
            first, last = (IPv4Address(part.strip()) for part in pool.split("-", 1))
        else:
            net = IPv4Network(pool.strip())
            first, last = net.network_address, net.broadcast_address
    except ValueError:
        raise ValueError(f"cannot parse {pool!r}; use 'a.b.c.d-e.f.g.h' or a CIDR 'a.b.c.d/n'") from None
    if first > last:
        raise ValueError(f"range {pool!r} starts after it ends")
    return first, last


def _overlaps(net: IPv4Network, first: IPv4Address, last: IPv4Address) -> bool:
    return net.network_address <= last and first <= net.broadcast_address


class NetworkConfig(_Model):
    """k3s networking; k3s's default CIDRs clash with LANs that are in 10.42/10.43."""

    host_ip: IPv4Address
    host_subnet: Network
    pod_cidr: Network = IPv4Network("10.42.0.0/16")
    service_cidr: Network = IPv4Network("10.43.0.0/16")
    cluster_dns: IPv4Address = IPv4Address("10.43.0.10")
    metallb_pool: str

    @field_validator("metallb_pool")
    @classmethod
    def _pool_parses(cls, v: str) -> str:
        _parse_pool(v)
        return v

    @property
    def pool_range(self) -> tuple[IPv4Address, IPv4Address]:
        """First and last address MetalLB may hand out (inclusive)."""
        return _parse_pool(self.metallb_pool)

    def _free16(self, field: str, other: IPv4Network) -> str:
        """First 10.X.0.0/16 (X from 42 up, wrapping) that clashes with nothing."""
        avoid = [self.host_subnet, IPv4Network(self.host_ip), other]
        for x in [*range(42, 256), *range(42)]:
            cand = IPv4Network(f"10.{x}.0.0/16")
            if not any(map(cand.overlaps, avoid)) and not _overlaps(cand, *self.pool_range):
                dns = f" with cluster_dns {cand[10]}" if field == "service_cidr" else ""
                return f"; use a free /16 such as {cand}{dns}"
        return "; pick an unused private range"

    def _problem(self) -> tuple[str, str] | None:
        ip, subnet, dns = self.host_ip, self.host_subnet, self.cluster_dns
        pod, svc, (first, last) = self.pod_cidr, self.service_cidr, self.pool_range
        if ip not in subnet:
            return "host_ip", f"host_ip {ip} is not inside host_subnet {subnet}"
        # The seed's outage: a node IP inside a cluster CIDR is routed into the cluster.
        for name, cidr, other in (("pod_cidr", pod, svc), ("service_cidr", svc, pod)):
            fix = self._free16(name, other)
            if ip in cidr:
                return name, f"host_ip {ip} is inside {name} {cidr}{fix}"
            if cidr.overlaps(subnet):
                return name, f"{name} {cidr} overlaps host_subnet {subnet}{fix}"
        if svc.overlaps(pod):
            fix = self._free16("service_cidr", pod)
            return "service_cidr", f"service_cidr {svc} overlaps pod_cidr {pod}{fix}"
        bad, use = f"cluster_dns {dns}", f"; use {svc.network_address + 10}"
        if dns not in svc:
            return "cluster_dns", f"{bad} is outside service_cidr {svc}{use}"
        if dns in (svc.network_address, svc.broadcast_address):
            return "cluster_dns", f"{bad} is not a usable address of {svc}{use}"
        if dns == svc.network_address + 1:  # always taken by the `kubernetes` Service
            return "cluster_dns", f"{bad} is the `kubernetes` Service ClusterIP{use}"
        pool = f"metallb_pool {self.metallb_pool}"
        for name, cidr in (("pod_cidr", pod), ("service_cidr", svc)):
            if _overlaps(cidr, first, last):
                return "metallb_pool", f"{pool} overlaps {name} {cidr}"
        if first not in subnet or last not in subnet:  # L2 mode only answers ARP on the LAN
            return "metallb_pool", f"{pool} is not entirely inside host_subnet {subnet}"
        if first <= ip <= last:
            return "metallb_pool", f"{pool} contains host_ip {ip}"
        return None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if problem := self._problem():
            raise _FieldError(*problem)
        return self
