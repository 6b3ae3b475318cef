"""Installing K3s on the host: its config.yaml, online or air-gap install steps, and the kubeconfig.

The seed's host (10.43.100.94) sat inside K3s's default service CIDR and had no egress, so the CIDRs always
come from platform.yaml, an air-gap bundle is a first-class path, and a CIDR change after install is
refused as needing a rebuild (K3s cannot move them in place) rather than "healed" into a broken cluster.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from platform_core.config.models import PlatformConfig
from platform_core.host.executor import Executor, HostError, PlanExecutor
from platform_core.host.facts import K3S_BIN, installed_k3s_version, probe_egress
from platform_core.host.prepare import HostStep, unit_state

Mode = Literal["online", "airgap"]
CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
KUBECONFIG_PATH = "/etc/rancher/k3s/k3s.yaml"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
SERVER_DATA_DIR = "/var/lib/rancher/k3s/server"
INSTALL_SCRIPT = "/usr/local/share/k3s/install.sh"  # the air-gap copy of get.k3s.io
INSTALL_URL = "https://get.k3s.io"
K3S_DEFAULTS = {"cluster-cidr": "10.42.0.0/16", "service-cidr": "10.43.0.0/16", "cluster-dns": "10.43.0.10"}
_BINARY_NAMES = {"amd64": "k3s", "arm64": "k3s-arm64", "arm": "k3s-armhf"}
_IMAGE_SUFFIXES = (".tar.zst", ".tar.gz", ".tar")
# A constant script: the URL and version arrive as $1 and $2, never pasted into shell text.
_ONLINE_SCRIPT = (
    'set -e; f=$(mktemp); trap \'rm -f "$f"\' EXIT; curl -sfL "$1" -o "$f"; INSTALL_K3S_VERSION="$2" sh "$f"'
)
_INSTALL_TIMEOUT = 900.0


class K3sInstallError(HostError):
    """The K3s install cannot go on (bad bundle, no mode, needs a rebuild), as one line."""


class NeedsRebuildError(K3sInstallError):
    """A cluster CIDR or DNS address changed after install: K3s cannot change it in place."""


def _desired_cidrs(cfg: PlatformConfig) -> dict[str, str]:
    net = cfg.network
    if net is None:
        raise K3sInstallError("network: required when target is k3s (host_ip and the cluster CIDRs)")
    return {
        "cluster-cidr": str(net.pod_cidr),
        "service-cidr": str(net.service_cidr),
        "cluster-dns": str(net.cluster_dns),
    }


def render_k3s_config(cfg: PlatformConfig) -> str:
    """/etc/rancher/k3s/config.yaml for this config; the same input always gives the same bytes."""
    cidrs = _desired_cidrs(cfg)
    host_ip = str(cfg.cluster_network.host_ip)
    doc = {
        "node-ip": host_ip,
        **cidrs,
        "disable": ["servicelb", "traefik"],  # MetalLB and our own ingress take their place
        "write-kubeconfig-mode": "0600",
        "tls-san": [host_ip],
    }
    header = "# Written by mlops-platform from platform.yaml; the CIDRs and cluster-dns cannot change in place.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def installed_cidrs(executor: Executor) -> dict[str, str] | None:
    """The CIDRs the installed cluster uses, or None when there is no cluster yet.

    Keys absent from config.yaml are K3s's defaults; an existing cluster without config.yaml uses all defaults.
    """
    raw = executor.read_file(CONFIG_PATH, sudo=True)
    has_cluster = executor.probe(["test", "-d", SERVER_DATA_DIR], sudo=True).ok
    if not has_cluster:
        return None  # a config.yaml from a failed first install is not a cluster: it may still be corrected
    if raw is None:
        return dict(K3S_DEFAULTS)
    doc = yaml.safe_load(raw) or {}
    if not isinstance(doc, dict):
        raise K3sInstallError(f"{CONFIG_PATH} on {executor.describe()} is not a YAML mapping")
    live = {key: str(doc.get(key, default)) for key, default in K3S_DEFAULTS.items()}
    if "cluster-dns" not in doc:  # K3s takes the .10 of its service CIDR
        live["cluster-dns"] = str(ipaddress.ip_network(live["service-cidr"], strict=False)[10])
    return live


def _same(key: str, a: str, b: str) -> bool:
    parse = ipaddress.ip_address if key == "cluster-dns" else ipaddress.ip_network
    try:
        return parse(a) == parse(b)
    except ValueError:
        return a == b


def cidr_change(cfg: PlatformConfig, live: dict[str, str] | None) -> list[str]:
    """Each CIDR/DNS difference between the installed cluster and the config, as 'key old -> new'."""
    if live is None:
        return []
    desired = _desired_cidrs(cfg)
    return [f"{key} {live[key]} -> {want}" for key, want in desired.items() if not _same(key, live[key], want)]


def resolve_install_mode(cfg: PlatformConfig, executor: Executor) -> tuple[Mode, list[str]]:
    """k3s.install, or for auto an egress probe from the host; air-gap without a bundle is refused."""
    if cfg.k3s.install != "auto":
        mode: Mode = cfg.k3s.install
        reasons = [f"k3s.install is {mode}"]
    else:
        version = cfg.versions.k3s.replace("+", "%2B")
        urls = [INSTALL_URL, f"https://github.com/k3s-io/k3s/releases/download/{version}/sha256sum-amd64.txt"]
        report = probe_egress(executor, urls)
        mode, reasons = report.mode, report.reasons
    if mode == "airgap" and not cfg.k3s.offline_bundle_dir:
        raise K3sInstallError(f"k3s.offline_bundle_dir: required for an air-gap install ({'; '.join(reasons)})")
    return mode, reasons


@dataclass(frozen=True)
class BundleFile:
    local: Path
    remote: str
    mode: int
    sha256: str


def k3s_bundle_dir(bundle_root: Path, version: str) -> Path:
    """Where the k3s files of ``version`` sit in the offline bundle (the layout of infra/upstream.yaml)."""
    return bundle_root / "k3s" / version


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _published_sums(directory: Path, arch: str) -> dict[str, str]:
    path = directory / f"sha256sum-{arch}.txt"
    if not path.is_file():
        raise K3sInstallError(f"offline bundle: missing sha256sum-{arch}.txt (expected at {path})")
    sums = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.strip().partition(" ")
        if digest and name:
            sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def verify_bundle(bundle_root: Path, version: str, arch: str) -> list[BundleFile]:
    """The bundle's binary, images and install.sh, refused unless the first two match the release's sha256 file."""
    directory = k3s_bundle_dir(bundle_root, version)
    if arch not in _BINARY_NAMES:
        raise K3sInstallError(f"no k3s air-gap build for architecture {arch!r} (known: {', '.join(_BINARY_NAMES)})")
    sums = _published_sums(directory, arch)
    images = [directory / f"k3s-airgap-images-{arch}{suffix}" for suffix in _IMAGE_SUFFIXES]
    image = next((path for path in images if path.is_file()), images[0])
    files = [
        (directory / _BINARY_NAMES[arch], K3S_BIN, 0o755),
        (image, f"{IMAGES_DIR}/{image.name}", 0o644),
    ]
    out = []
    for local, remote, mode in files:
        if not local.is_file():
            raise K3sInstallError(f"offline bundle: missing {local.name} (expected at {local})")
        if local.name not in sums:
            raise K3sInstallError(f"offline bundle: {local.name} is not listed in {directory}/sha256sum-{arch}.txt")
        actual = _sha256(local)
        if actual != sums[local.name]:
            raise K3sInstallError(
                f"offline bundle: {local} has sha256 {actual}, but sha256sum-{arch}.txt says {sums[local.name]}"
            )
        out.append(BundleFile(local, remote, mode, actual))
    script = directory / "install.sh"
    if not script.is_file():
        raise K3sInstallError(f"offline bundle: missing install.sh (expected at {script})")
    # install.sh is not a release asset, so no published digest covers it.
    return [*out, BundleFile(script, INSTALL_SCRIPT, 0o755, _sha256(script))]


def _has_file(ex: Executor, path: str, sha256: str, mode: int) -> bool:
    state = ex.file_state(path, sudo=True)
    return state is not None and (state.sha256, state.mode) == (sha256, mode)


def k3s_installed(executor: Executor, cfg: PlatformConfig) -> bool:
    """The pinned version runs with exactly our config.yaml."""
    rendered = render_k3s_config(cfg).encode()
    return (
        installed_k3s_version(executor) == cfg.versions.k3s
        and executor.read_file(CONFIG_PATH, sudo=True) == rendered
        and unit_state(executor, "k3s").get("ActiveState") == "active"
    )


def _config_step(cfg: PlatformConfig) -> HostStep:
    rendered = render_k3s_config(cfg).encode()

    def probe(ex: Executor) -> bool:
        return _has_file(ex, CONFIG_PATH, hashlib.sha256(rendered).hexdigest(), 0o600)

    def apply(ex: Executor) -> None:
        if changes := cidr_change(cfg, installed_cidrs(ex)):
            raise NeedsRebuildError(
                f"needs rebuild: {'; '.join(changes)} (K3s cannot change cluster-cidr, service-cidr or "
                f"cluster-dns in place: uninstall k3s on {ex.describe()} and install again, or restore network.*)"
            )
        ex.write_file(CONFIG_PATH, rendered, 0o600, sudo=True)

    why = f"{CONFIG_PATH}: node-ip, cluster CIDRs and DNS from network.*, servicelb and traefik disabled"
    return HostStep("k3s config", probe, apply, why)


def _copy_step(name: str, bundle_file: BundleFile, why: str) -> HostStep:
    def probe(ex: Executor) -> bool:
        return _has_file(ex, bundle_file.remote, bundle_file.sha256, bundle_file.mode)

    def apply(ex: Executor) -> None:
        ex.write_file(bundle_file.remote, bundle_file.local.read_bytes(), bundle_file.mode, sudo=True)

    return HostStep(name, probe, apply, why)


def _service_step(cfg: PlatformConfig, mode: Mode) -> HostStep:
    version = cfg.versions.k3s
    if mode == "online":
        argv = ["sh", "-c", _ONLINE_SCRIPT, "sh", INSTALL_URL, version]
        why = f"k3s {version} installed by {INSTALL_URL} and running"
    else:
        skip = ["env", "INSTALL_K3S_SKIP_DOWNLOAD=true", f"INSTALL_K3S_VERSION={version}"]
        argv = [*skip, "sh", INSTALL_SCRIPT]
        why = f"k3s {version} installed from the offline bundle and running"

    def apply(ex: Executor) -> None:
        ex.run(argv, sudo=True, timeout=_INSTALL_TIMEOUT, check=True)

    return HostStep("k3s service", lambda ex: k3s_installed(ex, cfg), apply, why)


def install_steps(cfg: PlatformConfig, mode: Mode, bundle_dir: Path | None, arch: str = "amd64") -> list[HostStep]:
    """config.yaml first (refusing a CIDR change), then the air-gap copies if any, then the install itself.

    An air-gap bundle is verified here, before any step runs, so a bad bundle changes nothing.
    """
    steps = [_config_step(cfg)]
    if mode == "airgap":
        if bundle_dir is None:
            raise K3sInstallError("k3s.offline_bundle_dir: required for an air-gap install")
        binary, images, script = verify_bundle(Path(bundle_dir), cfg.versions.k3s, arch)
        steps += [
            _copy_step("k3s binary", binary, f"{K3S_BIN} from the bundle, sha256 verified"),
            _copy_step("k3s images", images, f"{images.local.name} into {IMAGES_DIR}, sha256 verified"),
            _copy_step("k3s install script", script, f"{INSTALL_SCRIPT} (install.sh from the bundle)"),
        ]
    steps.append(_service_step(cfg, mode))
    return steps


def _rewrite_server(kubeconfig: bytes, host_ip: str) -> bytes:
    doc: dict[str, Any] = yaml.safe_load(kubeconfig) or {}
    for entry in doc.get("clusters") or []:
        cluster = entry.get("cluster") or {}
        server = urlsplit(cluster.get("server", ""))
        if server.hostname in ("127.0.0.1", "localhost", "::1"):
            cluster["server"] = f"{server.scheme}://{host_ip}:{server.port or 6443}"
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode()


def fetch_kubeconfig(executor: Executor, cfg: PlatformConfig, dest: Path) -> bool:
    """Copy K3s's admin kubeconfig to ``dest`` (0600) with the server at host_ip; False when already equal."""
    raw = executor.read_file(KUBECONFIG_PATH, sudo=True)
    if raw is None:
        raise K3sInstallError(f"{KUBECONFIG_PATH} not found on {executor.describe()}: is k3s installed and running?")
    _desired_cidrs(cfg)  # network is required
    data = _rewrite_server(raw, str(cfg.cluster_network.host_ip))
    if dest.exists() and dest.read_bytes() == data and dest.stat().st_mode & 0o777 == 0o600:
        return False
    if isinstance(executor, PlanExecutor):
        executor.planned.append(f"write (local): {dest} ({len(data)} bytes, mode 600)")
        return True
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # credentials: never readable by others
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, dest)
    return True
