"""Pinned upstream manifests (Argo CD, MetalLB): obtained online or from an offline bundle, always sha256-verified.

The seed deployment vendored Argo CD's install.yaml because its VM could not reach GitHub; here the pins live in
``infra/upstream.yaml`` and the bytes come from the official URL or from ``<bundle>/<component>/<version>/<file>``,
are refused unless their digest matches, and are cached under ``<state_dir>/manifests/`` for later runs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import requests
import yaml

from platform_core.config.pins import DEFAULT_PINS

Mode = Literal["online", "airgap"]
Fetch = Callable[[str], bytes]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: install.yaml is ~2 MB


class UpstreamError(ValueError):
    """A problem with a pinned upstream artifact, as one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


@dataclass(frozen=True)
class PinnedFile:
    name: str
    url: str
    sha256: str


@dataclass(frozen=True)
class ManifestPin:
    component: str
    version: str
    tag: str
    commit: str
    files: tuple[PinnedFile, ...]
    images: tuple[str, ...] = ()  # what the manifest's workloads run: the air-gap bundle must hold them


@dataclass(frozen=True)
class ManifestFile:
    name: str
    sha256: str
    source: str  # the URL, bundle path or cache path it was read from


@dataclass(frozen=True)
class Manifest:
    """What to apply: the pinned files' text in order. ``sha256`` is that of the one file, or of the joined text."""

    text: str
    sha256: str
    source: str
    files: tuple[ManifestFile, ...]


@dataclass(frozen=True)
class K3sPins:
    version: str
    install_script: str
    assets: dict[str, str]  # asset -> URL pattern with {version}

    def asset_url(self, asset: str, version: str | None = None) -> str:
        """The release URL of ``asset`` (binary, airgap_images, checksums) for ``version`` (default: the pin)."""
        if asset not in self.assets:
            raise UpstreamError(f"unknown k3s asset {asset!r} (known: {', '.join(sorted(self.assets))})")
        return self.assets[asset].format(version=quote(version or self.version, safe=""))


def _require(data: Any, key: str, where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise UpstreamError(f"{where}: missing key {key!r}")
    return data[key]


@dataclass(frozen=True)
class UpstreamPins:
    source: str
    k3s: K3sPins
    manifests: dict[str, dict[str, ManifestPin]]

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PINS) -> UpstreamPins:
        """Read the pins file; a malformed one is a one-line ``UpstreamError`` naming the file and key."""
        where = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise UpstreamError(f"{where}: cannot read pins: {exc}") from None
        k3s = _require(data, "k3s", where)
        k3s_pins = K3sPins(
            version=str(_require(k3s, "version", f"{where}: k3s")),
            install_script=str(_require(k3s, "install_script", f"{where}: k3s")),
            assets={str(k): str(v) for k, v in _require(k3s, "assets", f"{where}: k3s").items()},
        )
        manifests: dict[str, dict[str, ManifestPin]] = {}
        for component, versions in _require(data, "manifests", where).items():
            manifests[component] = {
                version: cls._pin(component, version, entry, f"{where}: manifests.{component}.{version}")
                for version, entry in versions.items()
            }
        return cls(where, k3s_pins, manifests)

    @staticmethod
    def _pin(component: str, version: str, entry: Any, where: str) -> ManifestPin:
        files = tuple(
            PinnedFile(
                str(_require(f, "name", where)), str(_require(f, "url", where)), str(_require(f, "sha256", where))
            )
            for f in _require(entry, "files", where)
        )
        if not files:
            raise UpstreamError(f"{where}: no files pinned")
        images = tuple(map(str, entry.get("images") or ()))
        tag, commit = str(entry.get("tag", version)), str(entry.get("commit", ""))
        return ManifestPin(component, version, tag, commit, files, images)

    def versions(self, component: str) -> list[str]:
        return list(self.manifests.get(component, {}))

    def pin(self, component: str, version: str) -> ManifestPin:
        """The pin of ``component`` at ``version``; unknown ones name what is pinned."""
        if component not in self.manifests:
            known = ", ".join(self.manifests)
            raise UpstreamError(f"{self.source}: no pins for component {component!r} (pinned: {known})")
        versions = self.manifests[component]
        if version not in versions:
            known = ", ".join(versions)
            raise UpstreamError(f"{component} {version} is not pinned in {self.source} (pinned versions: {known})")
        return versions[version]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(data: bytes, expected: str, what: str) -> None:
    """Refuse bytes whose digest is not the pinned one, naming the file or URL and both digests."""
    actual = sha256_hex(data)
    if actual != expected:
        raise UpstreamError(f"sha256 mismatch for {what}: expected {expected}, got {actual}")


def requests_fetch(url: str, timeout: float = 60.0) -> bytes:
    """Download ``url``; any failure is one line naming it."""
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise UpstreamError(f"cannot download {url}: {exc}") from None
    return response.content


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _from_cache(path: Path, expected: str) -> bytes | None:
    """A cached copy only counts if it still matches the pin (a truncated or edited file is re-obtained)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if sha256_hex(data) == expected else None


def _obtain_file(
    pin: ManifestPin, file: PinnedFile, mode: Mode, bundle_dir: Path | None, fetch: Fetch, cache: Path | None
) -> tuple[bytes, str]:
    cached = cache / file.name if cache else None
    if cached and (data := _from_cache(cached, file.sha256)) is not None:
        return data, str(cached)
    if mode == "online":
        source = file.url
        data = fetch(file.url)
    else:
        if bundle_dir is None:
            raise UpstreamError(f"{pin.component} {pin.version}: airgap mode needs k3s.offline_bundle_dir")
        path = Path(bundle_dir) / pin.component / pin.version / file.name
        source = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UpstreamError(f"offline bundle file missing: {path} (expected {file.url})") from None
        except OSError as exc:
            raise UpstreamError(f"cannot read offline bundle file {path}: {exc.strerror}") from None
    verify(data, file.sha256, source)
    if cached:
        _write_atomic(cached, data)
    return data, source


def obtain_manifest(
    component: str,
    version: str,
    *,
    bundle_dir: Path | None,
    mode: Mode,
    fetch: Fetch = requests_fetch,
    state_dir: Path | None = None,
    pins: UpstreamPins | None = None,
) -> Manifest:
    """The verified manifest of ``component`` at ``version``; multi-file pins are joined in their pinned order.

    A verified copy under ``<state_dir>/manifests/<component>/<version>/`` is used first, so a later run needs
    neither network nor bundle.
    """
    if mode not in ("online", "airgap"):
        raise UpstreamError(f"install mode must be 'online' or 'airgap' here, not {mode!r}")
    pin = (pins or UpstreamPins.load()).pin(component, version)
    cache = Path(state_dir) / "manifests" / component / version if state_dir is not None else None
    parts = [(file, *_obtain_file(pin, file, mode, bundle_dir, fetch, cache)) for file in pin.files]
    files = tuple(ManifestFile(file.name, file.sha256, source) for file, _, source in parts)
    texts = [data.decode("utf-8") for _, data, _ in parts]
    if len(files) == 1:
        return Manifest(texts[0], files[0].sha256, files[0].source, files)
    text = "\n---\n".join(t.rstrip("\n") for t in texts) + "\n"
    return Manifest(text, sha256_hex(text.encode()), " + ".join(f.source for f in files), files)


def parse_manifest(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML manifest: empty documents skipped, ``*List`` kinds flattened."""
    try:
        docs = list(yaml.load_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        raise UpstreamError(f"manifest is not valid YAML: {exc}") from None
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not doc:
            continue
        if not isinstance(doc, dict) or "kind" not in doc:
            raise UpstreamError(f"manifest document is not a Kubernetes object: {str(doc)[:80]!r}")
        if doc["kind"].endswith("List") and isinstance(doc.get("items"), list):
            out.extend(item for item in doc["items"] if item)
        else:
            out.append(doc)
    return out


def drop_kinds(objs: Iterable[dict[str, Any]], served: set[tuple[str, str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Split off objects whose (apiVersion, kind) the cluster does not serve, e.g. PodSecurityPolicy on >= 1.25.

    Returns the objects to apply and one human line per dropped object, for the asset's metadata.
    """
    kept: list[dict[str, Any]] = []
    dropped: list[str] = []
    for obj in objs:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        if (api_version, kind) in served:
            kept.append(obj)
        else:
            name = obj.get("metadata", {}).get("name", "?")
            dropped.append(f"{kind}/{name} ({api_version}): not served by this cluster")
    return kept, dropped
