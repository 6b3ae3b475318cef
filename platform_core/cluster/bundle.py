"""What the offline bundle must hold for a config, listed and checked by the same code.

Air-gap means the cluster fetches nothing from outside. K3s's release covers K3s's own images; every other image
a workload names (the rendered services, the in-cluster GitOps source, the training pods, and the pinned Argo CD
and MetalLB manifests, whose images ``infra/upstream.yaml`` lists) is a `docker save` archive under
``<bundle>/images/``, with its sha256 in ``images/SHA256SUMS`` (sha256sum's format, as K3s's release sum file),
imported into K3s's containerd before the first workload that needs it. K3s v1.31.4 imports the images
directory only when it starts (runtime import came in v1.31.5, docs.k3s.io/import-images), so the platform runs
``k3s ctr images import`` itself and reads the result back with ``crictl``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_core.cluster.gitops_source import render_gitops_source, repo_url
from platform_core.cluster.image import (
    BUNDLE_ARCHIVE,
    ArchiveImage,
    ImageError,
    Wanted,
    import_archive,
    live_image,
    normalized_ref,
    read_archive,
)
from platform_core.cluster.render import SERVICES, render_infra_tree
from platform_core.cluster.resource import ClusterResource
from platform_core.cluster.step_result import StepResult
from platform_core.cluster.upstream import UpstreamPins
from platform_core.config import PlatformConfig
from platform_core.host.executor import Executor
from platform_core.host.prepare import HostStep, run_steps
from platform_core.redact import redact_url

Obj = dict[str, Any]
SUMS = Path("images") / "SHA256SUMS"
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}


@dataclass(frozen=True)
class RequiredImage:
    ref: str
    archive: Path  # relative to the bundle
    used_by: tuple[str, ...]

    @property
    def platform(self) -> bool:
        """The platform image has an asset of its own (platform_image: bundle or host build)."""
        return self.archive == BUNDLE_ARCHIVE


def archive_path(ref: str) -> Path:
    """``images/<ref with every character outside [A-Za-z0-9._-] as _>.tar``."""
    return Path("images") / (re.sub(r"[^A-Za-z0-9._-]", "_", normalized_ref(ref)) + ".tar")


def _containers(o: Obj) -> list[Obj]:
    """A workload's init and main containers; none for any other kind."""
    if o.get("kind") not in _WORKLOADS:
        return []
    spec = o.get("spec") or {}
    pod = spec if o["kind"] == "Pod" else (spec.get("template") or {}).get("spec") or {}
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def workload_images(objs: Iterable[Obj], owner: str) -> dict[str, list[str]]:
    """image -> the workloads naming it, as ``owner: Kind name``."""
    out: dict[str, list[str]] = {}
    for o in objs:
        for c in _containers(o):
            out.setdefault(c["image"], []).append(f"{owner}: {o['kind']} {o['metadata']['name']}")
    return out


def required_images(cfg: PlatformConfig, pins: UpstreamPins | None = None) -> list[RequiredImage]:
    """Every image this config's cluster runs besides K3s's own, by normalized reference."""
    pins = pins or UpstreamPins.load()
    named: dict[str, list[str]] = {}

    def add(found: dict[str, list[str]]) -> None:
        for ref, users in found.items():
            named.setdefault(normalized_ref(ref), []).extend(users)

    for svc, render in SERVICES.items():
        add(workload_images(render(cfg), svc))
    if cfg.k3s.gitops.in_cluster:
        add(workload_images(render_gitops_source(cfg, render_infra_tree(cfg)), "gitops"))
    add({cfg.k3s.training.image or cfg.versions.platform_image: ["training and batch pods (k3s.training.image)"]})
    for component, version in (("metallb", cfg.versions.metallb), ("argocd", cfg.versions.argocd)):
        pin = pins.pin(component, version)
        add({ref: [f"{component} {version} (infra/upstream.yaml)"] for ref in pin.images})
    platform = normalized_ref(cfg.versions.platform_image)
    return [
        RequiredImage(ref, BUNDLE_ARCHIVE if ref == platform else archive_path(ref), tuple(dict.fromkeys(users)))
        for ref, users in sorted(named.items())
    ]


# --- the bundle's images --------------------------------------------------------------------------------------
class BundleError(ImageError):
    """The offline bundle lacks or mangles an image (one line naming each file, before any change)."""


_DIGESTS: dict[tuple[Path, int, int], str] = {}  # (path, size, mtime): archives are gigabytes; hash each once


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def read_sums(bundle: Path) -> dict[str, str]:
    """``images/SHA256SUMS``: file name -> sha256 (``<hex>  <name>`` lines; ``*`` binary marks allowed)."""
    path = bundle / SUMS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise BundleError(f"offline bundle: {path} unreadable ({err.strerror}); see `platformctl bundle`") from None
    sums = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](\S+)", line.strip())
        if match is None:
            raise BundleError(f"{path}:{number}: not a '<sha256>  <file>' line")
        sums[match.group(2)] = match.group(1)
    return sums


def bundle_images(bundle: Path, images: list[RequiredImage]) -> dict[str, ArchiveImage]:
    """Reference -> the archive of each image (the platform image's excepted: platform_image has it),
    sha256-checked against ``images/SHA256SUMS`` and holding its reference; every problem at once in one line."""
    wanted = [i for i in images if not i.platform]
    sums = read_sums(bundle) if wanted else {}
    found: dict[str, ArchiveImage] = {}
    problems = []
    for image in wanted:
        path, name = bundle / image.archive, image.archive.name
        if not path.is_file():
            problems.append(f"{image.archive} missing (docker save -o {image.archive} {image.ref})")
        elif name not in sums:
            problems.append(f"{image.archive} has no line in {SUMS}")
        elif (actual := file_sha256(path)) != sums[name]:
            problems.append(f"{image.archive} sha256 {actual[:12]}, {SUMS} says {sums[name][:12]}")
        else:
            try:
                found[image.ref] = read_archive(path, image.ref)
            except ImageError as err:
                problems.append(str(err))
    if problems:
        raise BundleError(f"offline bundle {bundle}: {'; '.join(problems)}")
    return found


# --- what to put in it ------------------------------------------------------------------------------------------
def bundle_listing(cfg: PlatformConfig, pins: UpstreamPins | None = None) -> list[str]:
    """What ``k3s.offline_bundle_dir`` must hold for this config, one line per file (README, `platformctl bundle`)."""
    pins = pins or UpstreamPins.load()
    version = cfg.versions.k3s
    lines = [
        f"k3s/{version}/{name}: {what}"
        for name, what in (
            ("k3s", pins.k3s.asset_url("binary", version)),
            ("k3s-airgap-images-amd64.tar.zst", pins.k3s.asset_url("airgap_images", version)),
            ("sha256sum-amd64.txt", pins.k3s.asset_url("checksums", version)),
            ("install.sh", pins.k3s.install_script),
        )
    ]
    for component, pinned in (("metallb", cfg.versions.metallb), ("argocd", cfg.versions.argocd)):
        for file in pins.pin(component, pinned).files:
            lines.append(f"{component}/{pinned}/{file.name}: {file.url} (sha256 {file.sha256[:12]})")
    if cfg.k3s.selinux == "enforcing":
        lines.append("selinux/k3s-selinux-*.el9.noarch.rpm: https://rpm.rancher.io/k3s/stable/common/centos/9/noarch")
    lines.append(f"{SUMS}: `sha256sum *.tar` in images/, a line for each archive below but platform-image.tar")
    for image in required_images(cfg, pins):
        how = f"docker pull --platform linux/amd64 {image.ref} && docker save -o {image.archive} {image.ref}"
        if image.platform:
            build = f"docker build --platform linux/amd64 -t {image.ref} -f infra/image/Dockerfile ."
            how = f"{build} && docker save -o {image.archive} {image.ref}; optional when the host builds it"
        lines.append(f"{image.archive}: {how}")
    return lines


# --- into containerd ---------------------------------------------------------------------------------------------
def wanted(archive: ArchiveImage) -> Wanted:
    """What containerd must hold for an archive: its image id, pinned (as for the platform image's bundle)."""
    return Wanted("bundle", archive.image_id, archive)


def import_steps(archives: dict[str, ArchiveImage]) -> list[HostStep]:
    """Each image present in K3s's containerd as its archive has it, else imported from the archive."""

    def present(ref: str, want: Wanted) -> Callable[[Executor], bool]:
        return lambda ex: want.met_by(live_image(ex, ref))

    return [
        HostStep(f"image {ref}", present(ref, wanted(a)), import_archive(a), f"{ref} from {a.path} ({a.image_id[:19]})")
        for ref, a in sorted(archives.items())
    ]


def cluster_images_step(c: ClusterResource) -> StepResult:
    """In air-gap, every image the cluster runs (the platform image's excepted) is imported from the bundle, which
    is checked first as a whole; online, the kubelet pulls them, and the metadata lists them either way."""
    cfg, (mode, _) = c.cfg, c.install_mode
    images = required_images(cfg)
    metadata = {
        "images": "\n".join(f"{i.ref}: {', '.join(i.used_by)}" for i in images),
        "gitops_source": redact_url(repo_url(cfg)),
        "source": f"{mode}: " + ("imported from the offline bundle" if mode == "airgap" else "pulled by the kubelet"),
    }
    if mode == "online":
        return StepResult([], metadata)
    if c.bundle_dir is None:
        raise BundleError("k3s.offline_bundle_dir: required in air-gap (the images the cluster runs)")
    outcomes = run_steps(c.executor, import_steps(bundle_images(c.bundle_dir, images)))
    return StepResult([o.line() for o in outcomes if o.status != "already"], metadata)


def pull_if_not_present(objs: list[Obj]) -> list[Obj]:
    """Upstream workloads with ``imagePullPolicy: Always`` (Argo CD's) as ``IfNotPresent``: with Always the kubelet
    asks the registry at every start even when containerd holds the image (kubernetes.io/docs/concepts/containers/
    images/#image-pull-policy), so an air-gapped pod never starts. The tags are pinned, so nothing is lost online."""
    for c in (c for o in objs for c in _containers(o)):
        if c.get("imagePullPolicy") == "Always":
            c["imagePullPolicy"] = "IfNotPresent"
    return objs
