"""Host preparation for k3s as idempotent steps: probe, apply only what is missing, re-probe to verify.

What the seed deployment did by hand (firewalld off, SELinux permissive, iSCSI/NFS clients, kernel
modules and sysctls), per OS family, so a second run reports "no change".
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from platform_core.config.models import PlatformConfig
from platform_core.host.executor import Executor, HostError, PlanExecutor

Status = Literal["already", "changed", "would change"]
Family = Literal["rhel", "debian"]

_FAMILY_IDS: dict[str, Family] = {
    **dict.fromkeys(("rocky", "rhel", "almalinux", "centos", "ol"), "rhel"),
    **dict.fromkeys(("debian", "ubuntu"), "debian"),
}
# iSCSI and NFS for volumes; dig, with which the k3s_cluster check asks CoreDNS a real question from the node.
PACKAGES: dict[Family, tuple[str, ...]] = {
    "rhel": ("iscsi-initiator-utils", "nfs-utils", "bind-utils"),
    "debian": ("open-iscsi", "nfs-common", "bind9-dnsutils"),
}
MODULES = ("br_netfilter", "overlay")
MODULES_FILE = "/etc/modules-load.d/k3s.conf"
SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
}
SYSCTL_FILE = "/etc/sysctl.d/90-k3s.conf"
SELINUX_FILE = "/etc/selinux/config"
# API server, kubelet, flannel VXLAN, MetalLB L2 memberlist, ingress HTTP(S).
FIREWALL_PORTS = ("6443/tcp", "10250/tcp", "8472/udp", "7946/tcp", "7946/udp", "80/tcp", "443/tcp")
_INSTALL_TIMEOUT = 900.0


class HostPrepError(HostError):
    """Host preparation cannot start or did not take effect."""


@dataclass(frozen=True)
class HostStep:
    name: str
    probe: Callable[[Executor], bool]  # True when already satisfied; only looks
    apply: Callable[[Executor], None]
    why: str


@dataclass(frozen=True)
class StepOutcome:
    name: str
    status: Status
    why: str
    planned: tuple[str, ...] = ()  # plan mode: the commands and writes it would do

    def line(self) -> str:
        todo = f" [{'; '.join(self.planned)}]" if self.planned else ""
        return f"{self.name}: {self.status} ({self.why}){todo}"


@dataclass(frozen=True)
class OsInfo:
    id: str
    version: str
    family: Family
    pretty: str


@dataclass
class StepReport:
    host: str
    steps: list[StepOutcome]
    os: OsInfo | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(step.status != "already" for step in self.steps)

    def pending(self) -> list[StepOutcome]:
        return [step for step in self.steps if step.status != "already"]

    def summary(self) -> str:
        if not self.changed:
            return "no change"
        verb = "would change" if any(s.status == "would change" for s in self.steps) else "changed"
        return f"{verb}: {', '.join(step.name for step in self.pending())}"


def run_steps(executor: Executor, steps: Sequence[HostStep]) -> list[StepOutcome]:
    """Apply the unsatisfied steps in order; in plan mode record what each would do instead."""
    outcomes = []
    for step in steps:
        if step.probe(executor):
            outcomes.append(StepOutcome(step.name, "already", step.why))
            continue
        if isinstance(executor, PlanExecutor):
            start = len(executor.planned)
            step.apply(executor)
            outcomes.append(StepOutcome(step.name, "would change", step.why, tuple(executor.planned[start:])))
            continue
        step.apply(executor)
        if not step.probe(executor):
            raise HostPrepError(f"step {step.name!r} was applied on {executor.describe()} but its probe still fails")
        outcomes.append(StepOutcome(step.name, "changed", step.why))
    return outcomes


def parse_os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            out[key] = " ".join(shlex.split(value)) if value else ""
    return out


def detect_os(executor: Executor, os_family: str = "auto") -> OsInfo:
    """The host's OS from /etc/os-release; ``os_family`` other than auto overrides the family."""
    raw = executor.read_file("/etc/os-release")
    release = parse_os_release(raw.decode(errors="replace")) if raw else {}
    os_id = release.get("ID", "").lower()
    family: Family | None = None
    if os_family == "rhel":  # one literal per branch: mypy narrows `str` to `Family` only on an equality
        family = "rhel"
    elif os_family == "debian":
        family = "debian"
    else:
        candidates = [os_id, *release.get("ID_LIKE", "").lower().split()]
        family = next((_FAMILY_IDS[c] for c in candidates if c in _FAMILY_IDS), None)
    if family is None:
        shown = repr(os_id) if os_id else "(no /etc/os-release)"
        raise HostPrepError(
            f"unsupported OS ID {shown} on {executor.describe()}: supported are Rocky/RHEL/Alma/CentOS Stream "
            "and Debian/Ubuntu; set host.os_family to rhel or debian if it is compatible"
        )
    return OsInfo(os_id, release.get("VERSION_ID", ""), family, release.get("PRETTY_NAME", os_id))


def file_is(executor: Executor, path: str, data: bytes, mode: int = 0o644, *, sudo: bool = False) -> bool:
    """Whether ``path`` holds exactly ``data`` with ``mode`` (compared by sha256: nothing is copied back)."""
    state = executor.file_state(path, sudo=sudo)
    return state is not None and (state.sha256, state.mode) == (hashlib.sha256(data).hexdigest(), mode)


def unit_state(executor: Executor, unit: str) -> dict[str, str]:
    """LoadState/ActiveState/UnitFileState of a systemd unit ({} when systemd does not answer)."""
    result = executor.probe(["systemctl", "show", "-p", "LoadState", "-p", "ActiveState", "-p", "UnitFileState", unit])
    if not result.ok:
        return {}
    return dict(line.partition("=")[::2] for line in result.out.splitlines() if "=" in line)


def _packages_step(family: Family, name: str = "packages", pkgs: Sequence[str] = (), why: str = "") -> HostStep:
    pkgs = list(pkgs or PACKAGES[family])

    def probe(ex: Executor) -> bool:
        if family == "rhel":
            return ex.probe(["rpm", "-q", *pkgs]).ok
        result = ex.probe(["dpkg-query", "-W", "-f=${Status}\\n", *pkgs])
        lines = result.out.splitlines()
        return result.ok and len(lines) == len(pkgs) and all(s == "install ok installed" for s in lines)

    def apply(ex: Executor) -> None:
        if family == "rhel":
            ex.run(["dnf", "install", "-y", *pkgs], sudo=True, timeout=_INSTALL_TIMEOUT, check=True)
            return
        apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        ex.run([*apt, "update", "-q"], sudo=True, timeout=_INSTALL_TIMEOUT)  # may fail offline with a local mirror
        ex.run([*apt, "install", "-y", "-q", *pkgs], sudo=True, timeout=_INSTALL_TIMEOUT, check=True)

    tool = "dnf" if family == "rhel" else "apt-get"
    return HostStep(name, probe, apply, f"{' '.join(pkgs)} via {tool}: {why or 'iSCSI and NFS clients for volumes'}")


def _service_step(unit: str, why: str) -> HostStep:
    def probe(ex: Executor) -> bool:
        state = unit_state(ex, unit)
        return state.get("ActiveState") == "active" and state.get("UnitFileState") == "enabled"

    def apply(ex: Executor) -> None:
        ex.run(["systemctl", "enable", "--now", unit], sudo=True, check=True)

    return HostStep(unit, probe, apply, why)


def _firewalld_disable_step() -> HostStep:
    def probe(ex: Executor) -> bool:
        state = unit_state(ex, "firewalld")
        if state.get("LoadState") == "not-found":
            return True
        return bool(state) and state.get("ActiveState") != "active" and state.get("UnitFileState") != "enabled"

    def apply(ex: Executor) -> None:
        ex.run(["systemctl", "disable", "--now", "firewalld"], sudo=True, check=True)

    why = "k3s.firewalld disable: stopped and disabled if present (its rules break pod networking)"
    return HostStep("firewalld", probe, apply, why)


def _firewalld_keep_step(cfg: PlatformConfig) -> HostStep:
    if cfg.network is None:
        raise HostPrepError("network: required for k3s.firewalld keep (the pod and service CIDRs to trust)")
    sources = [str(cfg.network.pod_cidr), str(cfg.network.service_cidr)]

    def listed(ex: Executor, *args: str) -> set[str]:
        return set(ex.probe(["firewall-cmd", *args], sudo=True, check=True).out.split())

    def probe(ex: Executor) -> bool:
        if unit_state(ex, "firewalld").get("ActiveState") != "active":
            return True  # not running: nothing filters (firewall-cmd needs the daemon)
        return all(
            set(FIREWALL_PORTS) <= listed(ex, *perm, "--list-ports")
            and set(sources) <= listed(ex, *perm, "--zone=trusted", "--list-sources")
            for perm in ((), ("--permanent",))
        )

    def apply(ex: Executor) -> None:
        ports = [f"--add-port={port}" for port in FIREWALL_PORTS]
        ex.run(["firewall-cmd", "--permanent", *ports], sudo=True, check=True)
        added = [f"--add-source={cidr}" for cidr in sources]
        ex.run(["firewall-cmd", "--permanent", "--zone=trusted", *added], sudo=True, check=True)
        ex.run(["firewall-cmd", "--reload"], sudo=True, check=True)

    why = f"k3s.firewalld keep: open {' '.join(FIREWALL_PORTS)} and trust {' '.join(sources)}"
    return HostStep("firewalld", probe, apply, why)


def _selinux_config(current: str) -> str:
    line = "SELINUX=permissive"
    if re.search(r"^SELINUX=", current, re.MULTILINE):
        return re.sub(r"^SELINUX=.*$", line, current, flags=re.MULTILINE)
    return current + ("" if current.endswith("\n") or not current else "\n") + line + "\n"


def _selinux_permissive_step() -> HostStep:
    def modes(ex: Executor) -> tuple[str | None, str | None]:
        result = ex.probe(["getenforce"])
        runtime = result.out.lower() if result.ok else None
        raw = ex.read_file(SELINUX_FILE)
        found = re.search(r"^SELINUX=(\w+)", raw.decode(errors="replace"), re.MULTILINE) if raw else None
        return runtime, found.group(1).lower() if found else None

    def probe(ex: Executor) -> bool:
        runtime, boot = modes(ex)
        if runtime is None and boot is None:
            return True  # no SELinux on this host
        return runtime in (None, "permissive", "disabled") and boot in ("permissive", "disabled")

    def apply(ex: Executor) -> None:
        runtime, boot = modes(ex)
        if runtime == "enforcing":
            ex.run(["setenforce", "0"], sudo=True, check=True)
        if boot not in ("permissive", "disabled"):
            current = (ex.read_file(SELINUX_FILE) or b"").decode()
            ex.write_file(SELINUX_FILE, _selinux_config(current).encode(), 0o644, sudo=True)

    why = "k3s.selinux permissive: setenforce 0 now and SELINUX=permissive in /etc/selinux/config for reboots"
    return HostStep("selinux", probe, apply, why)


RANCHER_REPO = "/etc/yum.repos.d/rancher-k3s-common.repo"
SELINUX_RPMS = "/var/tmp/k3s-selinux"  # where bundled RPMs are copied on the host


def _rancher_repo(major: str) -> bytes:
    """The repository K3s's install.sh (setup_selinux) writes for k3s-selinux: a stock Rocky 9 has none that
    provides it, so `dnf install k3s-selinux` before the K3s install used to fail."""
    return (
        "[rancher-k3s-common-stable]\n"
        "name=Rancher K3s Common (stable)\n"
        f"baseurl=https://rpm.rancher.io/k3s/stable/common/centos/{major}/noarch\n"
        "enabled=1\ngpgcheck=1\nrepo_gpgcheck=0\ngpgkey=https://rpm.rancher.io/public.key\n"
    ).encode()


def _bundled_selinux_rpms(cfg: PlatformConfig) -> list[Path]:
    bundle = cfg.k3s.offline_bundle_dir
    return sorted(Path(bundle, "selinux").glob("*.rpm")) if bundle else []


def _selinux_enforcing_step(cfg: PlatformConfig, os_info: OsInfo) -> HostStep:
    """k3s-selinux from the offline bundle (<bundle>/selinux/*.rpm) when it holds it, else from Rancher's RPM
    repository (added as install.sh adds it); in air-gap without the RPM, refused before any change."""
    major = os_info.version.split(".")[0] or "9"
    rpms = _bundled_selinux_rpms(cfg)
    if cfg.k3s.install == "airgap" and not any(p.name.startswith("k3s-selinux") for p in rpms):
        where = Path(cfg.k3s.offline_bundle_dir or "<k3s.offline_bundle_dir>") / "selinux"
        raise HostPrepError(
            f"k3s.selinux enforcing in air-gap needs the k3s-selinux RPM (el{major} noarch, from the k3s-selinux "
            f"releases) in {where}/; container-selinux comes from the OS repositories"
        )

    def probe(ex: Executor) -> bool:
        return ex.probe(["rpm", "-q", "k3s-selinux"]).ok

    def apply(ex: Executor) -> None:
        if rpms:
            paths = [f"{SELINUX_RPMS}/{rpm.name}" for rpm in rpms]
            for rpm, path in zip(rpms, paths, strict=True):
                ex.write_file(path, rpm.read_bytes(), 0o644, sudo=True)
            ex.run(["dnf", "install", "-y", *paths], sudo=True, timeout=_INSTALL_TIMEOUT, check=True)
            return
        ex.write_file(RANCHER_REPO, _rancher_repo(major), 0o644, sudo=True)
        ex.run(
            ["dnf", "install", "-y", "container-selinux", "k3s-selinux"],
            sudo=True,
            timeout=_INSTALL_TIMEOUT,
            check=True,
        )

    source = (
        f"the offline bundle ({', '.join(p.name for p in rpms)})" if rpms else f"Rancher's repository ({RANCHER_REPO})"
    )
    why = f"k3s.selinux enforcing: k3s needs the k3s-selinux policy package, from {source}"
    return HostStep("selinux", probe, apply, why)


def _module_loaded(ex: Executor, module: str) -> bool:
    loaded = (ex.read_file("/proc/modules") or b"").decode(errors="replace")
    if any(line.split(" ", 1)[0] == module for line in loaded.splitlines()):
        return True
    release = ex.probe(["uname", "-r"]).out
    builtin = (ex.read_file(f"/lib/modules/{release}/modules.builtin") or b"").decode(errors="replace")
    return any(line.endswith(f"/{module}.ko") for line in builtin.splitlines())


def _modules_step() -> HostStep:
    content = "".join(f"{module}\n" for module in MODULES).encode()

    def probe(ex: Executor) -> bool:
        return file_is(ex, MODULES_FILE, content) and all(_module_loaded(ex, m) for m in MODULES)

    def apply(ex: Executor) -> None:
        ex.write_file(MODULES_FILE, content, 0o644, sudo=True)
        for module in MODULES:
            if not _module_loaded(ex, module):
                ex.run(["modprobe", module], sudo=True, check=True)

    why = f"{' '.join(MODULES)} loaded now and at boot ({MODULES_FILE}): bridged pod traffic and overlayfs"
    return HostStep("kernel modules", probe, apply, why)


def _sysctl_step() -> HostStep:
    content = "".join(f"{key} = {value}\n" for key, value in SYSCTLS.items()).encode()

    def live(ex: Executor, key: str) -> str | None:
        raw = ex.read_file("/proc/sys/" + key.replace(".", "/"))
        return raw.decode().strip() if raw is not None else None

    def probe(ex: Executor) -> bool:
        return file_is(ex, SYSCTL_FILE, content) and all(live(ex, k) == v for k, v in SYSCTLS.items())

    def apply(ex: Executor) -> None:
        ex.write_file(SYSCTL_FILE, content, 0o644, sudo=True)
        ex.run(["sysctl", "--system"], sudo=True, check=True)

    why = f"{', '.join(f'{k}={v}' for k, v in SYSCTLS.items())} in {SYSCTL_FILE}: routing and bridged iptables"
    return HostStep("sysctl", probe, apply, why)


def host_steps(os_info: OsInfo, cfg: PlatformConfig, podman: bool = False) -> tuple[list[HostStep], list[str]]:
    """The steps for this OS family and config (``podman``: the platform image is built on the host), and notes
    on what is deliberately left alone."""
    steps = [_packages_step(os_info.family), _service_step("iscsid", "iSCSI daemon enabled and running")]
    if podman:
        steps.append(
            _packages_step(os_info.family, "podman", ["podman", "tar"], "builds the platform image on the host")
        )
    notes: list[str] = []
    if os_info.family == "rhel":
        steps.append(_firewalld_keep_step(cfg) if cfg.k3s.firewalld == "keep" else _firewalld_disable_step())
        if cfg.k3s.selinux == "keep":
            notes.append("SELinux left as it is (k3s.selinux keep)")
        else:
            enforcing = cfg.k3s.selinux == "enforcing"
            steps.append(_selinux_enforcing_step(cfg, os_info) if enforcing else _selinux_permissive_step())
    else:
        notes.append("ufw is left alone: if it is active, allow " + " ".join(FIREWALL_PORTS) + " yourself")
        notes.append("no SELinux or firewalld steps on the debian family")
    steps += [_modules_step(), _sysctl_step()]
    return steps, notes


def prepare_host(executor: Executor, cfg: PlatformConfig, podman: bool = False) -> StepReport:
    """Detect the OS (refusing an unknown one before any change), then run the preparation steps."""
    os_info = detect_os(executor, cfg.host.os_family)
    steps, notes = host_steps(os_info, cfg, podman)
    return StepReport(executor.describe(), run_steps(executor, steps), os_info, notes)
