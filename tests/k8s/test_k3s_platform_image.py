"""The platform image through the graph on the Kubernetes API fake: imported from the bundle on a fresh install
(see test_k3s_scenarios.py), healed when containerd loses it, built on the host when asked (rolling the pods that
run it), refused before any command when nothing can provide it, and checked for pull failures in registry mode."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from platform_assets.defs.cluster.assets import platform_image_present
from tests import containerd
from tests.hosts import PLATFORM_IMAGE
from tests.k8s.scenario_k3s import Platform, changes, checks, metadata, step_failures


def _check_only(p: Platform, check: dg.AssetChecksDefinition) -> tuple[bool, str]:
    """Run one check without materializing its asset first (which would heal what the check should find)."""
    job = dg.define_asset_job("check_only", dg.AssetSelection.checks(*check.check_keys))
    defs = dg.Definitions.merge(p.defs(), dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("check_only").execute_in_process(instance=p.instance, raise_on_error=False)
    (name,) = {c.name for c in check.check_keys}
    return checks(result)[name]


def test_an_image_gone_from_containerd_fails_the_check_and_is_imported_again(installed: Platform) -> None:
    p = installed
    containerd.absent(p.host, PLATFORM_IMAGE)  # as `k3s crictl rmi` or the kubelet's image GC would
    passed, description = _check_only(p, platform_image_present)
    assert not passed and description.startswith(f"bundle {PLATFORM_IMAGE}: not in K3s's containerd (want id sha256:")
    healed = p.run(["platform_image"])
    assert changes(healed)["platform_image"].startswith("platform image: changed (")
    assert checks(healed)["platform_image_present"][0]
    assert changes(p.run(["platform_image"])) == {"platform_image": "no change"}


def test_switching_to_a_host_build_installs_podman_builds_and_rolls_the_pods(installed: Platform) -> None:
    p = installed
    p.write_config(image_source="host_build")
    result = p.run(["host", "platform_image"])
    assert "dnf install -y podman tar" in p.host.mutations
    assert metadata(result, "host")["image_source"] == "host_build (k3s.image_source is host_build)"
    change = changes(result)["platform_image"]
    assert change.startswith("platform image: changed (") and "built by podman on the host" in change
    for name in ("mlflow", "data-api", "inference"):
        assert f"restarted Deployment mlops/{name} (platform image changed)" in change
    assert "postgres" not in change and "seaweedfs" not in change  # they do not run the platform image
    live = (
        p.cluster()
        .kube()
        .get({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "inference", "namespace": "mlops"}})
    )
    digest = metadata(result, "platform_image")["digest"]
    assert live["spec"]["template"]["metadata"]["annotations"]["mlops-platform/image-digest"] == digest[:16]
    assert checks(result)["platform_image_present"] == (
        True,
        f"host_build {PLATFORM_IMAGE}: has label mlops-platform/source-digest={digest[:12]}",
    )
    p.host.mutations.clear()
    assert changes(p.run(["host", "platform_image"])) == {"host": "no change", "platform_image": "no change"}
    assert p.host.mutations == []


def test_no_bundled_image_and_no_egress_stops_before_any_command(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "bundle" / "images" / "platform-image.tar").unlink()
    platform.write_config(install="auto")  # the egress preflight runs (and finds none on this VM)
    failure = step_failures(platform.run(raise_on_error=False))["host"]
    assert "k3s.image_source auto: no " in failure and "the host has no egress to build" in failure
    assert platform.host.mutations == []


def test_registry_mode_fails_the_check_when_pods_cannot_pull_the_image(platform: Platform) -> None:
    # A registry on the LAN, and the tree pushed to a git server there (the in-cluster source would run the
    # platform image too, which is the one missing here).
    platform.write_config(image_source="registry", gitops={"path": "infra/apps", "source": "repo"})
    platform.push_tree()
    platform.fake.egress = True
    platform.fake.unpullable_images.add(PLATFORM_IMAGE)
    first = platform.run(raise_on_error=False)
    assert changes(first)["platform_image"] == "no change"  # the kubelet pulls; nothing on the host
    assert "platform-image.tar" not in " ".join(platform.host.mutations)
    passed, description = _check_only(platform, platform_image_present)
    assert not passed and description.startswith(f"registry {PLATFORM_IMAGE}: ")
    assert all(f" {name}-" in description or f": {name}-" in description for name in ("mlflow", "inference"))
    assert "ImagePullBackOff" in description or "ErrImagePull" in description
