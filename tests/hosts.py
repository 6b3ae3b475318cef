"""Scripted hosts for tests: a dict of probe answers, files, and effects of mutating commands, recording every
mutation. `rocky_host`/`debian_host` are bare hosts for host preparation; `k3s_vm` is a whole Rocky 9 VM for the
k3s target (facts, air-gap install with effects, K3s's kubeconfig = a given one), `offline_bundle` its bundle."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from platform_core.cluster.bundle import archive_path
from platform_core.cluster.image import BUILD_EGRESS_URLS
from platform_core.cluster.render import SEED_NETWORK
from platform_core.cluster.upstream import UpstreamPins
from platform_core.config.models import PlatformConfig, VersionsConfig
from platform_core.host.executor import CommandResult, FileState, HostCommandError
from tests import containerd
from tests.vendor import vendor_dir

# (rc, stdout) or (rc, stdout, stderr), or a function of the host giving one
Answer = tuple[int, str] | tuple[int, str, str] | Callable[["ScriptedHost"], tuple[int, str]]
SYSTEMCTL = "systemctl show -p LoadState -p ActiveState -p UnitFileState"
ROCKY = (
    'NAME="Rocky Linux"\nVERSION_ID="9.4"\nID="rocky"\nID_LIKE="rhel centos fedora"\nPRETTY_NAME="Rocky Linux 9.4"\n'
)
DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n'


def unit(load: str, active: str, enabled: str) -> tuple[int, str]:
    return 0, f"LoadState={load}\nActiveState={active}\nUnitFileState={enabled}\n"


class ScriptedHost:
    """Answers probes from a dict (an unknown probe fails the test), holds files, records every mutation.

    ``effects`` make a mutating command change later answers, as the real one would on a host;
    ``prefix_effects`` do it for every command starting with a prefix, and get its argv.
    """

    def __init__(self, answers: dict[str, Answer], files: dict[str, str], effects: dict[str, Callable[..., Any]]):
        self.answers, self.effects = answers, effects
        self.prefix_effects: dict[str, Callable[[ScriptedHost, list[str]], None]] = {}
        self.files = {path: text.encode() for path, text in files.items()}
        self.modes: dict[str, int] = {}
        self.mutations: list[str] = []
        self.probed: list[str] = []  # every probe and read, to prove that nothing ran at all

    def describe(self) -> str:
        return "scripted"

    def probe(self, argv: list[str], *, sudo: bool = False, timeout: float = 60, check: bool = False) -> CommandResult:
        key = shlex.join(argv)
        self.probed.append(key)
        assert key in self.answers, f"unexpected probe: {key}"
        answer = self.answers[key]
        rc, out, *err = answer(self) if callable(answer) else answer
        result = CommandResult(argv, rc, out.encode(), err[0].encode() if err else b"" if rc == 0 else b"failed")
        if check and rc:
            raise HostCommandError(result, "scripted")
        return result

    def run(self, argv: list[str], *, sudo: bool = False, input: bytes | None = None, **_: Any) -> CommandResult:
        key = shlex.join(argv)
        self.mutations.append(key)
        if effect := self.effects.get(key):
            effect(self)
        for prefix, with_argv in self.prefix_effects.items():
            if key.startswith(prefix + " "):
                with_argv(self, argv)
        return CommandResult(argv, 0, b"", b"")

    def read_file(self, path: str, *, sudo: bool = False) -> bytes | None:
        self.probed.append(f"read {path}")
        return self.files.get(path)

    def file_state(self, path: str, *, sudo: bool = False) -> FileState | None:
        if path not in self.files:
            return None
        return FileState(hashlib.sha256(self.files[path]).hexdigest(), self.modes.get(path, 0o644))

    def write_file(self, path: str, data: bytes, mode: int = 0o644, *, sudo: bool = False) -> bool:
        if self.files.get(path) == data and self.modes.get(path, 0o644) == mode:
            return False
        self.files[path], self.modes[path] = data, mode
        self.mutations.append(f"write {path}")
        return True

    def install_k3s_selinux(self) -> None:
        """dnf finds k3s-selinux only in Rancher's repository: a stock Rocky 9 has no repo that provides it."""
        if "/etc/yum.repos.d/rancher-k3s-common.repo" not in self.files:
            argv = ["dnf", "install", "-y", "container-selinux", "k3s-selinux"]
            failed = CommandResult(argv, 1, b"", b"No match for argument: k3s-selinux\nError: Unable to find a match")
            raise HostCommandError(failed, "scripted")
        self.answers["rpm -q k3s-selinux"] = (0, "k3s-selinux-1.6-1.el9.noarch")

    # Effects shared by both families.
    def load_module(self, name: str) -> None:
        self.files["/proc/modules"] += f"{name} 16384 0 - Live 0x0\n".encode()
        if name == "br_netfilter":
            for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
                self.files[f"/proc/sys/net/bridge/{key}"] = b"0\n"

    def sysctl_system(self) -> None:
        """Apply every `key = value` of the sysctl.d file, as `sysctl --system` does."""
        for key, value in re.findall(r"^(\S+) = (\S+)$", self.files["/etc/sysctl.d/90-k3s.conf"].decode(), re.M):
            path = "/proc/sys/" + key.replace(".", "/")
            if path in self.files:  # an unknown key (module not loaded) is skipped
                self.files[path] = f"{value}\n".encode()


def common_state(os_release: str) -> tuple[dict[str, Answer], dict[str, str], dict[str, Callable[..., Any]]]:
    answers: dict[str, Answer] = {
        f"{SYSTEMCTL} iscsid": unit("not-found", "inactive", ""),
        "uname -r": (0, "5.14.0-427.el9.x86_64"),
    }
    files = {"/etc/os-release": os_release, "/proc/modules": "xfs 2000000 1 - Live 0x0\n"}
    files["/proc/sys/net/ipv4/ip_forward"] = "0\n"
    effects: dict[str, Callable[..., Any]] = {
        "systemctl enable --now iscsid": lambda h: h.answers.update(
            {f"{SYSTEMCTL} iscsid": unit("loaded", "active", "enabled")}
        ),
        "modprobe br_netfilter": lambda h: h.load_module("br_netfilter"),
        "modprobe overlay": lambda h: h.load_module("overlay"),
        "sysctl --system": ScriptedHost.sysctl_system,
    }
    return answers, files, effects


def rocky_host() -> ScriptedHost:
    answers, files, effects = common_state(ROCKY)
    files["/etc/selinux/config"] = "# SELinux\nSELINUX=enforcing\nSELINUXTYPE=targeted\n"
    pkgs = "iscsi-initiator-utils nfs-utils bind-utils"
    answers |= {
        f"rpm -q {pkgs}": (1, "package iscsi-initiator-utils is not installed"),
        f"{SYSTEMCTL} firewalld": unit("loaded", "active", "enabled"),
        "getenforce": (0, "Enforcing"),
        "rpm -q k3s-selinux": (1, "package k3s-selinux is not installed"),
        "rpm -q podman tar": (1, "package podman is not installed"),
    }
    effects |= {
        f"dnf install -y {pkgs}": lambda h: h.answers.update(
            {f"rpm -q {pkgs}": (0, ""), f"{SYSTEMCTL} iscsid": unit("loaded", "inactive", "disabled")}
        ),
        "systemctl disable --now firewalld": lambda h: h.answers.update(
            {f"{SYSTEMCTL} firewalld": unit("loaded", "inactive", "disabled")}
        ),
        "setenforce 0": lambda h: h.answers.update({"getenforce": (0, "Permissive")}),
        "dnf install -y container-selinux k3s-selinux": ScriptedHost.install_k3s_selinux,
        "dnf install -y podman tar": lambda h: h.answers.update(
            {"rpm -q podman tar": (0, "podman-5.2.2-1.el9.x86_64\ntar-1.34-7.el9.x86_64")}
        ),
    }
    return ScriptedHost(answers, files, effects)


def debian_host() -> ScriptedHost:
    answers, files, effects = common_state(DEBIAN)
    query = "dpkg-query -W '-f=${Status}\\n' open-iscsi nfs-common bind9-dnsutils"
    answers[query] = (0, "unknown ok not-installed\nunknown ok not-installed\nunknown ok not-installed")
    podman = "dpkg-query -W '-f=${Status}\\n' podman tar"
    answers[podman] = (1, "")  # dpkg-query: no packages found matching podman
    effects["env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman tar"] = lambda h: h.answers.update(
        {podman: (0, "install ok installed\ninstall ok installed")}
    )
    effects["env DEBIAN_FRONTEND=noninteractive apt-get install -y -q open-iscsi nfs-common bind9-dnsutils"] = (
        lambda h: h.answers.update(
            {
                query: (0, "install ok installed\ninstall ok installed\ninstall ok installed"),
                f"{SYSTEMCTL} iscsid": unit("loaded", "active", "disabled"),
            }
        )
    )
    return ScriptedHost(answers, files, effects)


# --- a whole Rocky 9 VM for the k3s target ---------------------------------------------------------------------
K3S_BIN = "/usr/local/bin/k3s"
K3S_CONFIG = "/etc/rancher/k3s/config.yaml"
K3S_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
K3S_SERVER_DIR = "/var/lib/rancher/k3s/server"
INSTALL_SCRIPT = "/usr/local/share/k3s/install.sh"
PLATFORM_IMAGE = VersionsConfig().platform_image
K3S_EGRESS_URLS = ("https://get.k3s.io", "https://github.com/k3s-io/k3s/releases/download/{v}/sha256sum-amd64.txt")


def airgap_install_command(version: str) -> str:
    return shlex.join(["env", "INSTALL_K3S_SKIP_DOWNLOAD=true", f"INSTALL_K3S_VERSION={version}", "sh", INSTALL_SCRIPT])


def _ip_addr(host_ip: str, prefix: int) -> str:
    lo = {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]}
    eth = {"ifname": "eth0", "addr_info": [{"family": "inet", "local": host_ip, "prefixlen": prefix}]}
    return json.dumps([lo, eth])


def _install_k3s(kubeconfig: bytes, version: str) -> Callable[[ScriptedHost], None]:
    """What install.sh with INSTALL_K3S_SKIP_DOWNLOAD does: start the copied binary as the k3s unit, which
    reads config.yaml, creates the server's data dir and writes the admin kubeconfig (0600)."""

    def effect(h: ScriptedHost) -> None:
        for needed in (K3S_BIN, INSTALL_SCRIPT, K3S_CONFIG):
            assert needed in h.files, f"install.sh ran before {needed} was in place"
        h.answers |= {
            f"{K3S_BIN} --version": (0, f"k3s version {version} (abcdef12)\ngo version go1.22.9"),
            f"test -d {K3S_SERVER_DIR}": (0, ""),
            f"{SYSTEMCTL} k3s": unit("loaded", "active", "enabled"),
        }
        h.files[K3S_KUBECONFIG], h.modes[K3S_KUBECONFIG] = kubeconfig, 0o600
        h.answers[coredns_query(h)] = (0, _first_service_ip(h) + "\n")  # CoreDNS answers for the API Service

    return effect


def _installed(h: ScriptedHost) -> dict[str, Any]:
    return yaml.safe_load(h.files[K3S_CONFIG])


def coredns_query(h: ScriptedHost) -> str:
    """The query cluster_dns_serves sends on the node, to the cluster DNS K3s was installed with."""
    dns = _installed(h)["cluster-dns"]
    return shlex.join(["dig", "+short", "+time=2", "+tries=2", f"@{dns}", "kubernetes.default.svc.cluster.local", "A"])


def _first_service_ip(h: ScriptedHost) -> str:
    return str(ipaddress.ip_network(_installed(h)["service-cidr"])[1])


def k3s_vm(host_ip: str, kubeconfig: bytes, version: str = "v1.31.4+k3s1", prefix: int = 24) -> ScriptedHost:
    """A fresh Rocky 9.4 VM without egress: answers every probe of host_facts, the egress preflight,
    installed_cidrs and k3s_installed; the air-gap install makes K3s answer with ``kubeconfig``; containerd
    (without the platform image) and podman as in tests/containerd.py."""
    host = rocky_host()
    containerd.install(host, [PLATFORM_IMAGE])
    no_egress = (7, "")  # curl: (7) Failed to connect
    host.answers |= {
        "uname -m": (0, "x86_64"),
        "ip -j addr": (0, _ip_addr(host_ip, prefix)),
        "ip -j route show default": (0, json.dumps([{"dst": "default", "gateway": host_ip, "dev": "eth0"}])),
        "df -P -B1 /var/lib": (
            0,
            "Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/vda1 1 1 42949672960 5% /",
        ),
        f"{K3S_BIN} --version": (127, ""),
        f"test -d {K3S_SERVER_DIR}": (1, ""),
        f"{SYSTEMCTL} k3s": unit("not-found", "inactive", ""),
        **{
            shlex.join(["curl", "-sSI", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", url]): no_egress
            for url in [*(u.format(v=version.replace("+", "%2B")) for u in K3S_EGRESS_URLS), *BUILD_EGRESS_URLS]
        },
    }
    host.files["/proc/meminfo"] = b"MemTotal:       16303872 kB\nMemFree:         9000000 kB\n"
    host.effects[airgap_install_command(version)] = _install_k3s(kubeconfig, version)
    return host


def offline_bundle(
    root: Path, k3s_version: str, manifests: dict[str, list[str]], platform_image: str | None = PLATFORM_IMAGE
) -> Path:
    """An air-gap bundle under ``root``: a stand-in k3s binary and images with a matching sha256sum-amd64.txt,
    install.sh, the pinned upstream manifests copied from the vendor dir (component -> versions), and unless
    ``platform_image`` is None a `docker save` of it as images/platform-image.tar."""
    k3s = root / "k3s" / k3s_version
    k3s.mkdir(parents=True)
    (k3s / "k3s").write_bytes(b"\x7fELF stand-in k3s " + k3s_version.encode())
    (k3s / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"(zstd) stand-in airgap images")
    (k3s / "install.sh").write_text("#!/bin/sh\n# stand-in for get.k3s.io\n")
    sums = [
        f"{hashlib.sha256((k3s / n).read_bytes()).hexdigest()}  {n}" for n in ("k3s", "k3s-airgap-images-amd64.tar.zst")
    ]
    (k3s / "sha256sum-amd64.txt").write_text("\n".join(sums) + "\n")
    for component, versions in manifests.items():
        for version in versions:
            names = [f.name for f in UpstreamPins.load().pin(component, version).files]
            shutil.copytree(vendor_dir(component, version, names), root / component / version)
    if platform_image:
        (root / "images").mkdir()
        (root / "images" / "platform-image.tar").write_bytes(containerd.docker_archive([platform_image], {}))
    return root


def bundle_images(root: Path, refs: list[str]) -> Path:
    """``docker save`` archives of ``refs`` under ``root/images`` at the names `platformctl bundle` lists, with
    their SHA256SUMS."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for ref in refs:
        path = root / archive_path(ref)
        path.write_bytes(containerd.docker_archive([ref], {}, layer=ref.encode()))
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
    (images / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return root


def k3s_cfg(**k3s: str) -> PlatformConfig:
    host = {"address": "10.43.100.94", "ssh_user": "root"}
    return PlatformConfig.model_validate({"target": "k3s", "host": host, "network": SEED_NETWORK, "k3s": k3s})
