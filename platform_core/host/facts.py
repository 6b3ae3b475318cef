"""Read-only facts about the k3s host, and whether the host itself (not this machine) has egress."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from platform_core.host.executor import Executor
from platform_core.host.prepare import detect_os

K3S_BIN = "/usr/local/bin/k3s"
# `uname -m` -> the arch suffix of k3s release assets.
K3S_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}


@dataclass(frozen=True)
class EgressReport:
    mode: Literal["online", "airgap"]
    reasons: list[str]  # one line per URL: reachable or why not


def installed_k3s_version(executor: Executor) -> str | None:
    """``v1.31.4+k3s1`` from ``k3s --version``, or None when k3s is not installed."""
    result = executor.probe([K3S_BIN, "--version"])
    found = re.search(r"k3s version (\S+)", result.out) if result.ok else None
    return found.group(1) if found else None


def _interfaces(executor: Executor) -> list[dict[str, Any]]:
    result = executor.probe(["ip", "-j", "addr"])
    return json.loads(result.out) if result.ok and result.out else []


def _default_route_subnet(executor: Executor, interfaces: list[dict[str, Any]]) -> str | None:
    result = executor.probe(["ip", "-j", "route", "show", "default"])
    routes = json.loads(result.out) if result.ok and result.out else []
    dev = next((route.get("dev") for route in routes if route.get("dev")), None)
    for iface in interfaces:
        for addr in iface.get("addr_info", []):
            if iface.get("ifname") == dev and addr.get("family") == "inet":
                return str(ipaddress.ip_interface(f"{addr['local']}/{addr['prefixlen']}").network)
    return None


def _meminfo_bytes(executor: Executor) -> int | None:
    raw = executor.read_file("/proc/meminfo") or b""
    found = re.search(rb"^MemTotal:\s+(\d+) kB", raw, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def _disk_free_bytes(executor: Executor, path: str = "/var/lib") -> int | None:
    result = executor.probe(["df", "-P", "-B1", path])
    lines = result.out.splitlines()
    return int(lines[-1].split()[3]) if result.ok and len(lines) >= 2 else None


def host_facts(executor: Executor, host_ip: str | None = None) -> dict[str, Any]:
    """OS, arch, IPv4 addresses, default-route subnet, disk (/var/lib), memory, installed k3s; probes only."""
    os_info = detect_os(executor)
    arch = executor.probe(["uname", "-m"], check=True).out
    interfaces = _interfaces(executor)
    addresses = [
        f"{addr['local']}/{addr['prefixlen']}"
        for iface in interfaces
        for addr in iface.get("addr_info", [])
        if addr.get("family") == "inet" and not ipaddress.ip_address(addr["local"]).is_loopback
    ]
    return {
        "os_id": os_info.id,
        "os_version": os_info.version,
        "os_family": os_info.family,
        "os": os_info.pretty,
        "arch": arch,
        "k3s_arch": K3S_ARCH.get(arch),
        "addresses": addresses,
        "default_route_subnet": _default_route_subnet(executor, interfaces),
        # None when no host_ip was asked about; a check fails when network.host_ip is not on the host.
        "host_ip_present": None if host_ip is None else any(a.split("/")[0] == str(host_ip) for a in addresses),
        "disk_free_bytes": _disk_free_bytes(executor),
        "memory_bytes": _meminfo_bytes(executor),
        "k3s_version": installed_k3s_version(executor),
    }


def probe_egress(executor: Executor, urls: Sequence[str], timeout: int = 5) -> EgressReport:
    """HEAD each URL with curl from the HOST (the seed's VM had no egress, not this machine); online iff all answer."""
    reasons, reachable = [], True
    for url in urls:
        argv = ["curl", "-sSI", "--max-time", str(timeout), "-o", "/dev/null", "-w", "%{http_code}", url]
        result = executor.probe(argv, timeout=timeout + 10)
        if result.rc == 127:
            return EgressReport("airgap", [f"curl is not installed on {executor.describe()}"])
        code = result.out
        if result.ok and code[:1] in ("2", "3"):
            reasons.append(f"{url}: reachable (HTTP {code})")
            continue
        reachable = False
        error = result.stderr.decode(errors="replace").strip().splitlines()
        reasons.append(f"{url}: unreachable ({error[-1] if error else f'HTTP {code}'})")
    return EgressReport("online" if reachable else "airgap", reasons)
