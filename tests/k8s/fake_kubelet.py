"""The kubelet's image decision for the fake: run from containerd's store, pull from a registry, or back off.

Where the behaviour comes from:
- imagePullPolicy defaults to Always for ``:latest`` or no tag, else IfNotPresent; Always asks the registry at
  every container start even when the image is present, IfNotPresent uses a present image without asking
  (kubernetes.io/docs/concepts/containers/images/#image-pull-policy, #imagepullpolicy-defaulting).
- Without a route to the registry the pull fails as containerd reports it: "failed to pull and unpack image ...
  failed to resolve reference ... dial tcp: lookup <registry>: no such host" (ErrImagePull, then ImagePullBackOff).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from platform_core.cluster.image import normalized_ref

if TYPE_CHECKING:
    from tests.k8s.fake_apiserver import FakeApiServer

Obj = dict[str, Any]


def pull_policy(container: Obj) -> str:
    if container.get("imagePullPolicy"):
        return str(container["imagePullPolicy"])
    image = container.get("image", "")
    tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _registry(ref: str) -> str:
    return normalized_ref(ref).split("/", 1)[0].replace("docker.io", "registry-1.docker.io")


def container_state(fake: FakeApiServer, container: Obj, started: str) -> Obj:
    """``running``, or ``waiting`` ImagePullBackOff with the pull's error; records each registry pull."""
    image = container.get("image", "")
    ref = normalized_ref(image)
    present = ref in fake.pulled or (fake.node_images is not None and ref in fake.node_images())
    if present and pull_policy(container) != "Always":
        return {"running": {"startedAt": started}}
    if not fake.egress:
        why = f'failed to resolve reference "{ref}": dial tcp: lookup {_registry(ref)}: no such host'
    elif image in fake.unpullable_images:
        why = "not found"
    else:
        fake.pulled.add(ref)  # once pulled, containerd holds it
        fake.pulls.append(ref)
        return {"running": {"startedAt": started}}
    msg = f'Back-off pulling image "{image}": ErrImagePull: failed to pull and unpack image "{ref}": {why}'
    return {"waiting": {"reason": "ImagePullBackOff", "message": msg}}
