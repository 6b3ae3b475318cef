"""The platform image (``versions.platform_image``) in K3s's containerd, with no registry needed.

``bundle`` imports ``<offline_bundle_dir>/images/platform-image.tar`` (a ``docker save``/``podman save`` archive);
``host_build`` uploads a deterministic build context, builds it with podman on the host and imports the result;
``registry`` leaves the pull to the kubelet. Idempotent: a build carries the sha256 of its sources as an image
label, an archive is known by its config digest (containerd's image id), and both are read back with
``k3s crictl inspecti -o json`` before anything is done.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from platform_core.config import PlatformConfig
from platform_core.host.executor import Executor, HostCommandError, HostError
from platform_core.host.facts import K3S_BIN, installed_k3s_version, probe_egress
from platform_core.host.prepare import HostStep

Source = Literal["host_build", "bundle", "registry"]
SOURCE_LABEL = "mlops-platform/source-digest"
BUNDLE_ARCHIVE = Path("images") / "platform-image.tar"
DOCKERFILE = "infra/image/Dockerfile"
CONTEXT_PATHS = (
    DOCKERFILE,
    "pyproject.toml",
    "constraints.txt",
    "platform_core",
    "platform_assets",
    "ml_assets",
    "platformctl",
)
PINNED = "io.cri-containerd.pinned=pinned"
WORK_DIR = "/var/tmp/mlops-platform-image"  # emptied before and after each build or import
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
# What a build on the host downloads from: the base image (Docker Hub, whose token endpoint answers 200 without
# credentials) and the pinned Python packages (PyPI). K3s's own egress says nothing about these.
BUILD_EGRESS_URLS = ("https://pypi.org/simple/pip/", "https://auth.docker.io/token?service=registry.docker.io")
_BUILD_TIMEOUT = 3600.0  # pip installs the pinned stack from scratch when a source changes
_IMPORT_TIMEOUT = 1800.0


class ImageError(HostError):
    """The platform image cannot be provided as configured (one line, before any host command)."""


def normalized_ref(ref: str) -> str:
    """The fully qualified name containerd stores, as Docker normalizes it (``x:1`` -> ``docker.io/library/x:1``);
    podman would otherwise tag a short name as ``localhost/x:1``, which the kubelet never looks for."""
    first, slash, _ = ref.partition("/")
    if not slash:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


# --- where the image comes from ------------------------------------------------------------------------------
def bundle_archive(bundle_dir: Path | None) -> Path | None:
    return bundle_dir / BUNDLE_ARCHIVE if bundle_dir is not None else None


def build_egress(ex: Executor) -> tuple[str, list[str]]:
    """online when the host reaches what a build downloads, with a reason per URL."""
    report = probe_egress(ex, BUILD_EGRESS_URLS)
    return report.mode, report.reasons


def resolve_source(
    cfg: PlatformConfig,
    bundle_dir: Path | None,
    egress: Callable[[], tuple[str, list[str]]],
    built: Callable[[], bool] = lambda: False,
) -> tuple[Source, str]:
    """k3s.image_source, or for auto: the bundle's archive if present, else a host build — kept without any probe
    when ``built`` says containerd already holds the image of these sources, else if the host reaches Docker Hub
    and PyPI (``egress``: ``build_egress`` on the host). Both are called only when needed."""
    chosen, archive, ref = cfg.k3s.image_source, bundle_archive(bundle_dir), cfg.versions.platform_image
    if chosen == "registry":
        return "registry", f"k3s.image_source is registry: the kubelet pulls {ref}"
    if chosen == "host_build":
        return "host_build", "k3s.image_source is host_build"
    if archive is not None and archive.is_file():
        return "bundle", f"{'k3s.image_source is bundle' if chosen == 'bundle' else 'auto: found'} {archive}"
    if chosen == "bundle":
        raise ImageError(f"k3s.image_source bundle: {archive} is missing; make it with `docker save -o <it> {ref}`")
    if built():  # a host that built once and lost its egress since is still "no change"
        return "host_build", f"auto: containerd holds {ref} built from these sources"
    mode, reasons = egress()
    if mode == "online":
        return "host_build", f"auto: no {archive or 'k3s.offline_bundle_dir'}, and the host has egress to build"
    raise ImageError(
        f"k3s.image_source auto: no {archive or '<k3s.offline_bundle_dir>/' + str(BUNDLE_ARCHIVE)} and the host "
        f"has no egress to build {ref} ({'; '.join(reasons)}); put `docker save {ref}` there, "
        "or set k3s.image_source: registry with an image the host can pull"
    )


# --- the deterministic build context -------------------------------------------------------------------------
def _context_files(root: Path) -> list[Path]:
    files = []
    for rel in CONTEXT_PATHS:
        path = root / rel
        if not path.exists():
            raise ImageError(f"build context: {path} is missing (host_build needs this checkout's sources)")
        candidates = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        files += [
            p
            for p in candidates
            if not _SKIP_DIRS & set(p.relative_to(root).parts) and not p.name.endswith(_SKIP_SUFFIXES)
        ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def build_context(root: Path) -> bytes:
    """A tar of the image's sources: sorted entries, mtime 0, owner root, modes 644/755, so the same sources
    always give the same bytes (and sha256) on any machine and checkout."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _context_files(root):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0, 0, "", ""
            info.mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- an archive from the bundle ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveImage:
    path: Path
    image_id: str  # sha256:<config digest>, the id containerd gives the imported image
    tags: tuple[str, ...]


def read_archive(path: Path, ref: str, arch: str = "amd64") -> ArchiveImage:
    """The image ``ref`` in a docker-archive (``manifest.json`` with ``RepoTags``), refused when absent or built
    for another architecture than the node's (K3s's pinned release assets are amd64)."""
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.loads(member.read()) if member else None
            entry = _entry(manifest, ref)
            config = tar.extractfile(str(entry.get("Config", ""))) if entry else None
            architecture = json.loads(config.read()).get("architecture") if config else None
    except (OSError, tarfile.TarError, KeyError, ValueError) as err:
        raise ImageError(
            f"{path}: not a docker-archive with manifest.json ({err}); save it with `docker save` "
            "or `podman save --format docker-archive`"
        ) from None
    if entry is None:
        entries = manifest if isinstance(manifest, list) else []
        found = sorted(t for e in entries for t in e.get("RepoTags") or [])
        raise ImageError(f"{path} holds {', '.join(found) or 'no tagged image'}, not {ref}")
    digest = Path(str(entry.get("Config", ""))).name.removesuffix(".json")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ImageError(f"{path}: manifest.json names no config digest for {ref}")
    if architecture != arch:
        raise ImageError(f"{path}: {ref} is built for {architecture}, the node runs {arch} (docker pull --platform)")
    return ArchiveImage(path, f"sha256:{digest}", tuple(entry.get("RepoTags") or ()))


def _entry(manifest: Any, ref: str) -> dict[str, Any] | None:
    want = normalized_ref(ref)
    for entry in manifest if isinstance(manifest, list) else []:
        if want in map(normalized_ref, entry.get("RepoTags") or ()):
            return dict(entry)
    return None


# --- what containerd has ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveImage:
    image_id: str
    labels: dict[str, str]
    pinned: bool = False  # safe from the kubelet's image garbage collection


def live_image(ex: Executor, ref: str) -> LiveImage | None:
    """The image as K3s's CRI reports it (`crictl inspecti -o json`), None when absent or K3s is not installed."""
    if installed_k3s_version(ex) is None:
        return None  # plan mode on a fresh host
    result = ex.probe([K3S_BIN, "crictl", "inspecti", "-o", "json", normalized_ref(ref)], sudo=True)
    if not result.ok:
        if b"no such image" in result.stderr:
            return None
        raise HostCommandError(result, ex.describe())
    doc = json.loads(result.out)
    spec = (doc.get("info") or {}).get("imageSpec") or {}
    labels = dict((spec.get("config") or {}).get("Labels") or {})
    return LiveImage(doc["status"]["id"], labels, bool(doc["status"].get("pinned")))


@dataclass(frozen=True)
class Wanted:
    """What containerd must hold: an image with this label value (host_build) or this id (bundle)."""

    source: Source
    value: str
    archive: ArchiveImage | None = None  # bundle
    context: bytes = b""  # host_build: the build context whose sha256 is ``value``

    def met_by(self, live: LiveImage | None) -> bool:
        if live is None or not live.pinned:
            return False
        return (live.labels.get(SOURCE_LABEL) if self.source == "host_build" else live.image_id) == self.value

    def describe(self, live: LiveImage | None) -> str:
        what = f"label {SOURCE_LABEL}={self.value[:12]}" if self.source == "host_build" else f"id {self.value[:19]}"
        if live is None:
            return f"not in K3s's containerd (want {what})"
        have = live.labels.get(SOURCE_LABEL, "none")[:12] if self.source == "host_build" else live.image_id[:19]
        if self.met_by(live):
            return f"has {what}"
        if self.met_by(LiveImage(live.image_id, live.labels, pinned=True)):
            return f"has {what}, not pinned (the kubelet's image garbage collection may remove it)"
        return f"stale: has {have}, want {what}"


def desired_image(source: Source, archive: Path | None, ref: str, root: Path) -> Wanted:
    """Reads the archive or hashes the sources; raises ImageError (before any host command) when it cannot."""
    if source == "bundle":
        found = read_archive(archive, ref)  # type: ignore[arg-type]  # resolve_source checked it exists
        return Wanted("bundle", found.image_id, found)
    context = build_context(root)
    return Wanted("host_build", hashlib.sha256(context).hexdigest(), context=context)


# --- the host steps ----------------------------------------------------------------------------------------------
def _import(ex: Executor, tarball: str, refs: tuple[str, ...]) -> None:
    """Import into the CRI's namespace (k8s.io), then pin each reference: the kubelet's image garbage collection
    removes unpinned images no running container uses, and in air-gap nothing could pull them back (containerd's
    CRI label io.cri-containerd.pinned=pinned, as K3s gives its own air-gap images)."""
    ex.run(
        [K3S_BIN, "ctr", "-n", "k8s.io", "images", "import", tarball], sudo=True, timeout=_IMPORT_TIMEOUT, check=True
    )
    for ref in refs:
        ex.run([K3S_BIN, "ctr", "-n", "k8s.io", "images", "label", normalized_ref(ref), PINNED], sudo=True, check=True)


def _build_apply(ref: str, digest: str, context: bytes) -> Callable[[Executor], None]:
    ctx, image = f"{WORK_DIR}/context", f"{WORK_DIR}/image.tar"

    def apply(ex: Executor) -> None:
        ex.run(["rm", "-rf", "--", WORK_DIR], sudo=True, check=True)  # leftovers of a failed run
        ex.write_file(f"{WORK_DIR}/context.tar", context, 0o600, sudo=True)
        ex.run(["mkdir", "-p", ctx], sudo=True, check=True)
        ex.run(["tar", "-xf", f"{WORK_DIR}/context.tar", "-C", ctx], sudo=True, check=True)
        build = ["podman", "build", "--label", f"{SOURCE_LABEL}={digest}", "-t", ref, "-f", f"{ctx}/{DOCKERFILE}", ctx]
        ex.run(build, sudo=True, timeout=_BUILD_TIMEOUT, check=True)
        save = ["podman", "save", "--format", "docker-archive", "-o", image, ref]
        ex.run(save, sudo=True, timeout=_IMPORT_TIMEOUT, check=True)  # gigabytes on a small VM disk
        _import(ex, image, (ref,))
        ex.run(["rm", "-rf", "--", WORK_DIR], sudo=True, check=True)
        # the previous build's layers, untagged by this one; the current image stays as the next build's cache
        ex.run(["podman", "image", "prune", "-f"], sudo=True, check=True)

    return apply


def import_archive(archive: ArchiveImage) -> Callable[[Executor], None]:
    """Upload a docker-archive to the host and import it into K3s's containerd (the CRI's namespace)."""
    remote = f"{WORK_DIR}/{archive.path.name}"

    def apply(ex: Executor) -> None:
        ex.run(["rm", "-rf", "--", WORK_DIR], sudo=True, check=True)
        ex.write_file(remote, archive.path.read_bytes(), 0o600, sudo=True)
        _import(ex, remote, archive.tags)
        ex.run(["rm", "-rf", "--", WORK_DIR], sudo=True, check=True)

    return apply


def image_step(cfg: PlatformConfig, want: Wanted) -> HostStep:
    """Present with the wanted label or id, else build or import it."""
    ref = normalized_ref(cfg.versions.platform_image)
    if want.source == "host_build":
        apply = _build_apply(ref, want.value, want.context)
        why = f"{ref} built by podman on the host from sources {want.value[:12]} and imported into K3s"
    elif want.archive is not None:
        apply = import_archive(want.archive)
        why = f"{ref} imported into K3s from {want.archive.path} ({want.value[:19]})"
    else:
        raise ValueError(f"{ref}: a bundle image without its archive")
    return HostStep("platform image", lambda ex: want.met_by(live_image(ex, ref)), apply, why)
