"""Pinned upstream manifests: sha256 verification, offline bundle, real HTTP download, cache, parsing, dropping."""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_core.cluster.bundle import workload_images
from platform_core.cluster.upstream import (
    DEFAULT_PINS,
    UpstreamError,
    UpstreamPins,
    drop_kinds,
    obtain_manifest,
    parse_manifest,
    requests_fetch,
    verify,
)
from tests.k8s.schemas import served_kinds, vendor_file

METALLB_FILES = ("metallb/v0.12.1/namespace.yaml", "metallb/v0.12.1/metallb.yaml")


@pytest.fixture(scope="module")
def pins() -> UpstreamPins:
    return UpstreamPins.load()


def _no_network(url: str) -> bytes:
    raise AssertionError(f"unexpected download of {url}")


def _bundle(tmp_path: Path, *rels: str) -> Path:
    """An offline bundle dir holding copies of vendor files at <component>/<version>/<file>."""
    bundle = tmp_path / "bundle"
    for rel in rels:
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vendor_file(rel), bundle / rel)
    return bundle


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a tmp dir; yields (dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _pins_at(base_url: str, tmp_path: Path) -> UpstreamPins:
    """The real pins file with every manifest URL moved to the local server (same paths, same digests)."""
    text = DEFAULT_PINS.read_text(encoding="utf-8").replace("https://raw.githubusercontent.com", base_url)
    path = tmp_path / "upstream.yaml"
    path.write_text(text, encoding="utf-8")
    return UpstreamPins.load(path)


def _serve(root: Path, url_path: str, data: bytes) -> None:
    target = root / url_path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def test_pins_match_the_vendor_files(pins: UpstreamPins) -> None:
    for component, versions in pins.manifests.items():
        for version, pin in versions.items():
            assert pin.tag == version and len(pin.commit) == 40
            for file in pin.files:
                data = vendor_file(f"{component}/{version}/{file.name}").read_bytes()
                assert hashlib.sha256(data).hexdigest() == file.sha256, file.url
                assert file.url.endswith(
                    f"/{version}/{'config/' if 'native' in file.name else ''}manifests/{file.name}"
                )
    assert [f.name for f in pins.pin("metallb", "v0.12.1").files] == ["namespace.yaml", "metallb.yaml"]


def test_pinned_images_are_exactly_what_each_manifest_runs(pins: UpstreamPins) -> None:
    """The air-gap bundle is listed from the pins: they must name every image the pinned manifest's workloads run."""
    for component, versions in pins.manifests.items():
        for version, pin in versions.items():
            objs = [
                o for f in pin.files for o in parse_manifest(vendor_file(f"{component}/{version}/{f.name}").read_text())
            ]
            assert set(workload_images(objs, component)) == set(pin.images), f"{component} {version}"


def test_k3s_asset_urls(pins: UpstreamPins) -> None:
    assert pins.k3s.version == "v1.31.4+k3s1"
    base = "https://github.com/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1"
    assert pins.k3s.asset_url("binary") == f"{base}/k3s"
    assert pins.k3s.asset_url("airgap_images") == f"{base}/k3s-airgap-images-amd64.tar.zst"
    assert pins.k3s.asset_url("checksums") == f"{base}/sha256sum-amd64.txt"
    assert pins.k3s.install_script == "https://get.k3s.io"
    with pytest.raises(UpstreamError, match="unknown k3s asset 'k3s'"):
        pins.k3s.asset_url("k3s")


def test_verify_good_and_bad() -> None:
    data = b"kind: Namespace\n"
    verify(data, hashlib.sha256(data).hexdigest(), "x.yaml")
    with pytest.raises(UpstreamError) as err:
        verify(data + b" ", hashlib.sha256(data).hexdigest(), "/b/x.yaml")
    message = str(err.value)
    assert "/b/x.yaml" in message and hashlib.sha256(data).hexdigest() in message
    assert hashlib.sha256(data + b" ").hexdigest() in message and "\n" not in message


def test_airgap_reads_the_bundle_and_caches(tmp_path: Path, pins: UpstreamPins) -> None:
    bundle, state = _bundle(tmp_path, "argocd/v3.5.1/install.yaml"), tmp_path / "state"
    first = obtain_manifest(
        "argocd", "v3.5.1", bundle_dir=bundle, mode="airgap", fetch=_no_network, state_dir=state, pins=pins
    )
    assert first.sha256 == pins.pin("argocd", "v3.5.1").files[0].sha256
    assert first.source == str(bundle / "argocd/v3.5.1/install.yaml")
    assert first.text == vendor_file("argocd/v3.5.1/install.yaml").read_text(encoding="utf-8")
    cached = state / "manifests/argocd/v3.5.1/install.yaml"
    assert cached.read_bytes() == vendor_file("argocd/v3.5.1/install.yaml").read_bytes()
    shutil.rmtree(bundle)  # a later run needs neither bundle nor network
    again = obtain_manifest(
        "argocd", "v3.5.1", bundle_dir=None, mode="online", fetch=_no_network, state_dir=state, pins=pins
    )
    assert (again.text, again.sha256, again.source) == (first.text, first.sha256, str(cached))


def test_airgap_refuses_a_tampered_bundle_file(tmp_path: Path, pins: UpstreamPins) -> None:
    bundle = _bundle(tmp_path, "argocd/v3.2.0/install.yaml")
    path = bundle / "argocd/v3.2.0/install.yaml"
    path.write_bytes(path.read_bytes().replace(b"quay.io/argoproj/argocd", b"evil.example/argocd"))
    with pytest.raises(
        UpstreamError, match=rf"sha256 mismatch for {re.escape(str(path))}: expected 51299a0f\w+, got \w+"
    ) as err:
        obtain_manifest("argocd", "v3.2.0", bundle_dir=bundle, mode="airgap", state_dir=tmp_path / "state", pins=pins)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "state/manifests/argocd/v3.2.0/install.yaml").exists()  # nothing cached


def test_airgap_missing_file_names_the_path(tmp_path: Path, pins: UpstreamPins) -> None:
    bundle = _bundle(tmp_path, "metallb/v0.12.1/namespace.yaml")  # metallb.yaml forgotten
    missing = bundle / "metallb/v0.12.1/metallb.yaml"
    with pytest.raises(UpstreamError, match=re.escape(f"offline bundle file missing: {missing} (expected https://")):
        obtain_manifest("metallb", "v0.12.1", bundle_dir=bundle, mode="airgap", pins=pins)
    with pytest.raises(UpstreamError, match=r"airgap mode needs k3s\.offline_bundle_dir"):
        obtain_manifest("metallb", "v0.12.1", bundle_dir=None, mode="airgap", pins=pins)


def test_unknown_version_lists_the_pins(pins: UpstreamPins, tmp_path: Path) -> None:
    with pytest.raises(
        UpstreamError, match=r"argocd v9\.9\.9 is not pinned in .*upstream.yaml \(pinned versions: v3\.5\.1, v3\.2\.0\)"
    ):
        obtain_manifest("argocd", "v9.9.9", bundle_dir=tmp_path, mode="airgap", pins=pins)
    with pytest.raises(UpstreamError, match=r"no pins for component 'cilium' \(pinned: argocd, metallb\)"):
        obtain_manifest("cilium", "v1.0.0", bundle_dir=tmp_path, mode="airgap", pins=pins)
    with pytest.raises(UpstreamError, match="'online' or 'airgap' here, not 'auto'"):
        obtain_manifest("argocd", "v3.5.1", bundle_dir=tmp_path, mode="auto", pins=pins)  # type: ignore[arg-type]


def test_online_download_from_a_real_http_server(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, base = http_root
    pins = _pins_at(base, tmp_path)
    for rel in METALLB_FILES:
        _serve(root, f"/metallb/metallb/v0.12.1/manifests/{Path(rel).name}", vendor_file(rel).read_bytes())
    state = tmp_path / "state"
    manifest = obtain_manifest("metallb", "v0.12.1", bundle_dir=None, mode="online", state_dir=state, pins=pins)
    assert [f.source for f in manifest.files] == [f.url for f in pins.pin("metallb", "v0.12.1").files]
    assert manifest.source.startswith(f"{base}/metallb/metallb/v0.12.1/manifests/namespace.yaml + ")
    kinds = [o["kind"] for o in parse_manifest(manifest.text)]
    assert kinds[0] == "Namespace" and len(kinds) == 17  # namespace.yaml first, then metallb.yaml's 16
    assert hashlib.sha256(manifest.text.encode()).hexdigest() == manifest.sha256
    # The server goes away: the verified cache answers.
    shutil.rmtree(root / "metallb")
    again = obtain_manifest("metallb", "v0.12.1", bundle_dir=None, mode="online", state_dir=state, pins=pins)
    assert again.text == manifest.text and all(f.source.startswith(str(state)) for f in again.files)


def test_online_refuses_a_tampered_download(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, base = http_root
    pins = _pins_at(base, tmp_path)
    url_path = "/metallb/metallb/v0.15.3/config/manifests/metallb-native.yaml"
    _serve(root, url_path, vendor_file("metallb/v0.15.3/metallb-native.yaml").read_bytes() + b"# extra\n")
    with pytest.raises(UpstreamError, match=rf"sha256 mismatch for {base}{url_path}: expected 84b4e102"):
        obtain_manifest("metallb", "v0.15.3", bundle_dir=None, mode="online", state_dir=tmp_path / "s", pins=pins)
    assert not (tmp_path / "s/manifests/metallb/v0.15.3/metallb-native.yaml").exists()
    with pytest.raises(UpstreamError, match=rf"cannot download {base}/nothing.yaml: 404"):
        requests_fetch(f"{base}/nothing.yaml")


def test_a_corrupted_cache_is_obtained_again(tmp_path: Path, pins: UpstreamPins) -> None:
    bundle, state = _bundle(tmp_path, "metallb/v0.15.3/metallb-native.yaml"), tmp_path / "state"
    cached = state / "manifests/metallb/v0.15.3/metallb-native.yaml"
    cached.parent.mkdir(parents=True)
    cached.write_text("truncated", encoding="utf-8")
    manifest = obtain_manifest("metallb", "v0.15.3", bundle_dir=bundle, mode="airgap", state_dir=state, pins=pins)
    assert manifest.source == str(bundle / "metallb/v0.15.3/metallb-native.yaml")
    assert cached.read_bytes() == vendor_file("metallb/v0.15.3/metallb-native.yaml").read_bytes()


def _kinds(rel: str) -> Counter[str]:
    return Counter(o["kind"] for o in parse_manifest(vendor_file(rel).read_text(encoding="utf-8")))


def test_parse_manifest_on_the_vendor_files() -> None:
    argocd = _kinds("argocd/v3.5.1/install.yaml")
    assert argocd["CustomResourceDefinition"] == 3 and argocd["Deployment"] == 6 and argocd["StatefulSet"] == 1
    assert sum(argocd.values()) == 59
    assert sum(_kinds("argocd/v3.2.0/install.yaml").values()) == 59
    assert _kinds("metallb/v0.12.1/metallb.yaml") == Counter(
        {
            "Role": 3,
            "ClusterRole": 2,
            "RoleBinding": 3,
            "ClusterRoleBinding": 2,
            "PodSecurityPolicy": 2,
            "ServiceAccount": 2,
            "DaemonSet": 1,
            "Deployment": 1,
        }
    )
    native = _kinds("metallb/v0.15.3/metallb-native.yaml")
    assert native["CustomResourceDefinition"] == 9 and native["PodSecurityPolicy"] == 0


def test_parse_manifest_skips_empty_docs_and_flattens_lists() -> None:
    text = "---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n"
    text += "---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"
    assert [(o["kind"], o["metadata"]["name"]) for o in parse_manifest(text)] == [
        ("Namespace", "a"),
        ("ConfigMap", "b"),
    ]
    with pytest.raises(UpstreamError, match="not a Kubernetes object"):
        parse_manifest("just a string\n")
    with pytest.raises(UpstreamError, match="not valid YAML"):
        parse_manifest("a: [b\n")


def test_drop_kinds_drops_exactly_metallbs_pod_security_policies() -> None:
    objs = parse_manifest(vendor_file("metallb/v0.12.1/metallb.yaml").read_text(encoding="utf-8"))
    kept, dropped = drop_kinds(objs, served_kinds(objs))
    assert dropped == [
        "PodSecurityPolicy/controller (policy/v1beta1): not served by this cluster",
        "PodSecurityPolicy/speaker (policy/v1beta1): not served by this cluster",
    ]
    assert kept == [o for o in objs if o["kind"] != "PodSecurityPolicy"] and len(kept) == 14
    argocd = parse_manifest(vendor_file("argocd/v3.5.1/install.yaml").read_text(encoding="utf-8"))
    assert drop_kinds(argocd, served_kinds(argocd)) == (argocd, [])
