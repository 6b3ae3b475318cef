"""K3s's containerd and podman on a scripted host, as far as the platform image needs them: docker-archives in the
real `docker save` layout, `k3s ctr images import` reading them, `k3s crictl inspecti -o json` answering in
crictl's real shape ({"info": {"chainID", "imageSpec"}, "status": {...}}), and `podman build`/`save`."""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import tarfile
from typing import TYPE_CHECKING, Any

from platform_core.cluster.image import WORK_DIR, normalized_ref
from platform_core.host.facts import K3S_BIN

if TYPE_CHECKING:
    from tests.hosts import ScriptedHost

NO_SUCH_IMAGE = 'time="2025-01-01T00:00:00Z" level=fatal msg="no such image \\"{ref}\\" present"'


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def docker_archive(tags: list[str], labels: dict[str, str], layer: bytes = b"stand-in layer") -> bytes:
    """A `docker save` archive (Docker >= 25 layout: blobs/sha256/..., manifest.json with RepoTags)."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as inner:
        _add(inner, "app/layer.txt", layer)
    layer_bytes = layer_tar.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": "10001:10001", "WorkingDir": "/home/platform", "Labels": labels or None},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    manifest = [{"Config": f"blobs/sha256/{config_hex}", "RepoTags": tags, "Layers": [f"blobs/sha256/{diff_id}"]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add(tar, f"blobs/sha256/{config_hex}", config_bytes)
        _add(tar, f"blobs/sha256/{diff_id}", layer_bytes)
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return out.getvalue()


def archive_image_id(archive: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    return "sha256:" + manifest[0]["Config"].rsplit("/", 1)[-1]


def crictl_key(ref: str) -> str:
    return shlex.join([K3S_BIN, "crictl", "inspecti", "-o", "json", normalized_ref(ref)])


def crictl_answer(ref: str, image_id: str, config: dict[str, Any], size: int) -> tuple[int, str]:
    """`crictl inspecti -o json` of one image: the CRI status (protojson, defaults emitted) and the verbose info."""
    status = {
        "id": image_id,
        "repoTags": [normalized_ref(ref)],
        "repoDigests": [],
        "size": str(size),
        "uid": {"value": "10001"},
        "username": "",
        "spec": None,
        "pinned": False,
    }
    info = {"chainID": config["rootfs"]["diff_ids"][0], "imageSpec": config}
    return 0, json.dumps({"info": info, "status": status}, indent=2)


def absent(host: ScriptedHost, ref: str) -> None:
    """`crictl rmi`: the image is gone from containerd."""
    host.answers[crictl_key(ref)] = (1, "", NO_SUCH_IMAGE.format(ref=normalized_ref(ref)))


def ctr_import(host: ScriptedHost, argv: list[str]) -> None:
    """`k3s ctr -n k8s.io images import <tar>`: every RepoTag of the archive now names its image."""
    data = host.files[argv[-1]]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for entry in json.loads(tar.extractfile("manifest.json").read()):  # type: ignore[union-attr]
            config = json.loads(tar.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
            image_id = "sha256:" + entry["Config"].rsplit("/", 1)[-1]
            for tag in entry["RepoTags"]:
                host.answers[crictl_key(tag)] = crictl_answer(tag, image_id, config, len(data))


def present(host: ScriptedHost) -> set[str]:
    """What K3s's containerd holds: the references `crictl inspecti` finds."""
    prefix = shlex.join([K3S_BIN, "crictl", "inspecti", "-o", "json"]) + " "
    return {key[len(prefix) :] for key, answer in host.answers.items() if key.startswith(prefix) and answer[0] == 0}


def ctr_label(host: ScriptedHost, argv: list[str]) -> None:
    """`k3s ctr -n k8s.io images label <ref> io.cri-containerd.pinned=pinned`: crictl then reports it pinned."""
    ref, label = argv[-2], argv[-1]
    rc, out = host.answers[crictl_key(ref)][:2]
    if rc != 0:
        return  # ctr: image not found (the scripted host cannot fail a command; the probe after it does)
    doc = json.loads(out)
    doc["status"]["pinned"] = label == "io.cri-containerd.pinned=pinned" or doc["status"]["pinned"]
    host.answers[crictl_key(ref)] = (0, json.dumps(doc, indent=2))


def install(host: ScriptedHost, refs: list[str]) -> None:
    """Give ``host`` containerd (``refs`` absent at first) and podman, with the effects of their commands."""
    built: dict[str, tuple[bytes, dict[str, str]]] = {}  # podman's local images: ref -> (layer, labels)

    def podman_build(h: ScriptedHost, argv: list[str]) -> None:
        key, _, value = argv[argv.index("--label") + 1].partition("=")
        # the layer stands for what was built: the uploaded context, which must be in place
        built[argv[argv.index("-t") + 1]] = (h.files[f"{WORK_DIR}/context.tar"], {key: value})

    def podman_save(h: ScriptedHost, argv: list[str]) -> None:
        ref, path = argv[-1], argv[argv.index("-o") + 1]
        layer, labels = built[ref]
        h.files[path] = docker_archive([ref], labels, layer)

    def rm_rf(h: ScriptedHost, argv: list[str]) -> None:
        for path in [p for p in h.files if p == argv[-1] or p.startswith(argv[-1].rstrip("/") + "/")]:
            del h.files[path]

    for ref in refs:
        absent(host, ref)
    host.prefix_effects |= {
        shlex.join([K3S_BIN, "ctr", "-n", "k8s.io", "images", "import"]): ctr_import,
        shlex.join([K3S_BIN, "ctr", "-n", "k8s.io", "images", "label"]): ctr_label,
        "podman build": podman_build,
        "podman save": podman_save,
        "rm -rf --": rm_rf,
    }
