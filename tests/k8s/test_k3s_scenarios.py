"""Scenarios of the k3s target end to end through the Dagster graph: a scripted Rocky 9 VM installing K3s from an
air-gap bundle in tmp, and the Kubernetes API fake syncing the committed infra/ as Argo CD would. What is left
out of the graph (the storage function checks, host_ip_on_host) and why: see scenario_k3s.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from kubernetes import client, config

from platform_assets.definitions import build_definitions
from platform_assets.defs.host.assets import host_ip_on_host
from platform_core.cluster.steps import STEPS
from platform_core.config import ConfigError, load_config
from platform_core.state import planning
from tests import containerd
from tests.hosts import K3S_CONFIG, PLATFORM_IMAGE, k3s_vm
from tests.k8s.scenario_k3s import (
    CLUSTER_ASSETS,
    K3S_VERSION,
    Platform,
    changes,
    checks,
    make_platform,
    metadata,
    step_failures,
)

MINIO = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Application",
    "metadata": {"name": "minio", "namespace": "argocd"},
    "spec": {
        "project": "default",
        "source": {"repoURL": "https://github.com/example/old.git", "path": "minio", "targetRevision": "main"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "mlops"},
    },
}


def test_fresh_install_then_no_change(platform: Platform) -> None:
    first = platform.run()
    assert sorted(changes(first)) == sorted(CLUSTER_ASSETS)
    assert all(change != "no change" for change in changes(first).values())
    results = checks(first)
    assert {name for name, (passed, _) in results.items() if not passed} == set()
    assert results["service_cidr_in_use"][1] == "kubernetes Service ClusterIP 10.45.0.1, want 10.45.0.1"
    assert results["cluster_dns_serves"][1].startswith("kube-dns ClusterIP 10.45.0.10 (want 10.45.0.10)")
    assert "(pool 127.0.0.200-127.0.0.220)" in results["load_balancer_gets_pool_ip"][1]
    assert set(results) == {
        "node_ready",
        "service_cidr_in_use",
        "cluster_dns_serves",
        "load_balancer_gets_pool_ip",
        "cluster_images_present",
        "argocd_available",
        "platform_image_present",
        "applications_synced_healthy",
        "infra_matches_config",
        "images_pull",
        "no_orphan_applications",
        "only_declared_on_lan",
    }
    # k3s.exposure's defaults: the inference API and S3 at pool addresses, MetalLB's speaker on the host network
    lan = re.sub(r"127\.0\.0\.2\d\d", "POOL", results["only_declared_on_lan"][1])
    services = "Service mlops/inference at POOL:8000; Service mlops/seaweedfs at POOL:8333"
    assert lan == f"On the LAN: {services}; pods of DaemonSet metallb-system/speaker at host network"
    kubeconfig = platform.state_dir / "kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    assert f"server: {platform.fake.url}" in kubeconfig.read_text()
    assert metadata(first, "k3s_cluster")["install_mode"] == "airgap"
    assert platform.host.files[K3S_CONFIG].count(b"service-cidr: 10.45.0.0/16") == 1

    mlb = metadata(first, "metallb")
    assert (mlb["metallb_version"], mlb["mode"]) == ("v0.12.1", "configmap")
    psp = "PodSecurityPolicy/{}: not served by this cluster"
    assert mlb["dropped_kinds"] == f"{psp.format('controller')}; {psp.format('speaker')}"
    assert "/bundle/metallb/v0.12.1/metallb.yaml" in mlb["metallb_source"]
    assert not platform.fake.registry.by_kind("policy/v1beta1", "PodSecurityPolicy")

    image = metadata(first, "platform_image")
    assert (image["image"], image["source"]) == (PLATFORM_IMAGE, "bundle")
    assert image["source_why"].startswith("auto: found ") and image["source_why"].endswith("/platform-image.tar")
    imported = "/usr/local/bin/k3s ctr -n k8s.io images import /var/tmp/mlops-platform-image/platform-image.tar"
    assert imported in platform.host.mutations and "podman" not in " ".join(platform.host.mutations)
    assert results["platform_image_present"] == (True, f"bundle {PLATFORM_IMAGE}: has id {image['digest'][:19]}")

    # Air-gap: nothing pulled from a registry, nothing cloned from outside the cluster.
    assert platform.fake.pulls == []
    assert set(platform.fake.clones) == {"git://gitops-source.argocd.svc.cluster.local:9418/infra.git"}
    assert results["cluster_images_present"] == (True, "7 of 7 in containerd")
    assert metadata(first, "cluster_images")["source"] == "airgap: imported from the offline bundle"

    platform.host.mutations.clear()
    second = platform.run()
    assert changes(second) == dict.fromkeys(CLUSTER_ASSETS, "no change")
    assert all(passed for passed, _ in checks(second).values())
    assert platform.host.mutations == []
    assert platform.sense()[0] == "no drift"


def test_metallb_crd_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plat = make_platform(tmp_path, monkeypatch, metallb="v0.15.3")
    try:
        result = plat.run(["host", "k3s_cluster", "cluster_images", "metallb"])
        mlb = metadata(result, "metallb")
        assert (mlb["metallb_version"], mlb["mode"], mlb["dropped_kinds"]) == ("v0.15.3", "crd", "none")
        assert "created IPAddressPool metallb-system/" in mlb["change"]
        assert "created L2Advertisement metallb-system/" in mlb["change"]
        assert checks(result)["load_balancer_gets_pool_ip"][0]
        assert changes(plat.run(["metallb"])) == {"metallb": "no change"}
    finally:
        plat.fake.stop()


def test_seed_cidr_conflict_refused_before_any_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plat = make_platform(tmp_path, monkeypatch)
    try:
        seed = {"host_ip": "10.43.100.94", "host_subnet": "10.43.100.0/24"}
        seed["metallb_pool"] = "10.43.100.200-10.43.100.220"
        for key in ("pod_cidr", "service_cidr", "cluster_dns"):
            del plat.doc["network"][key]  # k3s's defaults: services in 10.43.0.0/16
        plat.write_config(seed)
        with pytest.raises(ConfigError) as err:
            load_config(plat.config)
        message = str(err.value)
        assert "\n" not in message and "network.service_cidr" in message
        assert "host_ip 10.43.100.94 is inside service_cidr 10.43.0.0/16" in message
        assert "use a free /16 such as 10.44.0.0/16" in message
        with pytest.raises(ConfigError):
            build_definitions(plat.config)
        assert plat.host.probed == [] and plat.host.mutations == []
    finally:
        plat.fake.stop()


def test_image_pull_failure_names_image_node_and_degraded_app(installed: Platform) -> None:
    """postgres:13-alpine leaves containerd (the kubelet's image GC, or `crictl rmi`) and its pod restarts: with
    no egress the kubelet cannot pull it, as the seed's Bitnami images could not be; cluster_images heals it."""
    platform = installed
    containerd.absent(platform.host, "postgres:13-alpine")
    pods = platform.fake.rtype("v1", "Pod")
    for pod in platform.fake.store.list(pods, "mlops", "app.kubernetes.io/name=postgres"):
        platform.fake.store.delete(pods, "mlops", pod["metadata"]["name"])
    platform.fake.sync_applications()
    result = platform.run(["gitops", "postgres"], raise_on_error=False)
    pulls = checks(result)["images_pull"]
    assert not pulls[0]
    assert "postgres:13-alpine on node k3s-server" in pulls[1] and "ImagePullBackOff" in pulls[1]
    apps = checks(result)["applications_synced_healthy"]
    assert not apps[0] and "postgres Synced/Progressing" in apps[1]
    failed = step_failures(result)
    assert set(failed) == {"postgres"}
    assert "Application postgres is Synced/Progressing" in failed["postgres"]
    assert "cannot pull postgres:13-alpine on k3s-server" in failed["postgres"]
    assert "lookup registry-1.docker.io: no such host" in pulls[1]
    assert platform.fake.pulls == []
    healed = platform.run(["cluster_images", "gitops", "postgres"])
    assert "image docker.io/library/postgres:13-alpine: changed" in changes(healed)["cluster_images"]
    assert checks(healed)["images_pull"] == (True, "every image pulled")


def test_orphan_application_is_reported_alerted_once_and_pruned_on_request(installed: Platform) -> None:
    p = installed
    p.cluster().kube().apply([MINIO], field_manager="kubectl-client-side-apply")
    result = p.run(["gitops"])
    assert checks(result)["no_orphan_applications"] == (
        False,
        "orphans: minio; prune with k3s.prune_orphans: true",
    )
    assert metadata(result, "gitops")["orphans"] == "minio"
    message, cursor = p.sense()
    assert "orphan Application minio" in message
    assert [a["title"] for a in p.alerts() if a["status"] != "resolved"] == ["orphan Application minio"]
    p.sense(cursor)
    assert len(p.alerts()) == 1  # the same finding again: no second alert

    p.write_config(prune_orphans=True)
    pruned = p.run(["gitops"])
    assert changes(pruned)["gitops"] == "pruned orphan Applications minio"
    assert checks(pruned)["no_orphan_applications"] == (True, "orphans: none")
    assert p.cluster().kube().get(MINIO) is None


def test_a_labelled_object_nothing_desires_is_an_orphan_too(installed: Platform) -> None:
    p = installed
    stray = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "minio-config",
            "namespace": "mlops",
            "labels": {"app.kubernetes.io/managed-by": "mlops-platform"},
        },
        "data": {"MINIO_ROOT_USER": "left-behind"},
    }
    p.cluster().kube().apply([stray], field_manager="kubectl-client-side-apply")
    message, _ = p.sense()
    assert "orphan ConfigMap mlops/minio-config" in message and "Pod" not in message  # owned objects are not
    p.write_config(prune_orphans=True)
    assert "pruned orphan objects ConfigMap mlops/minio-config" in changes(p.run(["gitops"]))["gitops"]
    assert p.cluster().kube().get(stray) is None


def test_a_config_yaml_edited_on_the_host_is_restored_and_k3s_restarted(installed: Platform) -> None:
    p = installed
    p.host.files[K3S_CONFIG] += b"disable-network-policy: true\n"  # someone edited it on the VM
    before = len(p.host.mutations)
    result = p.run(["k3s_cluster"])
    assert "restarted k3s to load the new config.yaml" in changes(result)["k3s_cluster"]
    assert "systemctl restart k3s" in p.host.mutations[before:]
    assert changes(p.run(["k3s_cluster"]))["k3s_cluster"] == "no change"


def test_a_rotated_credential_updates_its_secret_and_rolls_the_pods_reading_it(installed: Platform) -> None:
    p = installed
    creds_file = p.state_dir / "secrets" / "credentials.json"
    creds = json.loads(creds_file.read_text())
    creds["s3_secret_keys"]["ml"] = "rotated-" + creds["s3_secret_keys"]["ml"][8:]
    creds["mlflow_users"]["reader"] = "rotated-" + creds["mlflow_users"]["reader"][8:]
    creds_file.write_text(json.dumps(creds))
    result = changes(p.run(["cluster_secrets"]))["cluster_secrets"]
    assert "configured Secret mlops/inference-env" in result
    assert "restarted Deployment mlops/inference (Secrets changed)" in result
    # only the workloads reading a changed Secret (Postgres, the data API, the Dagster webserver and daemon read
    # none of them), one at a time: storage and MLflow (whose init container sets rotated passwords) first
    rolled = [line.split()[2] for line in result.split("; ") if line.startswith("restarted")]
    code_servers = ["mlops/dagster-code-platform", "mlops/dagster-code-ml"]  # credentials.json
    assert rolled == ["mlops/seaweedfs", "mlops/mlflow", "mlops/inference", *code_servers]
    live = (
        p.cluster()
        .kube()
        .get({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "inference", "namespace": "mlops"}})
    )
    assert "mlops-platform/secrets-digest" in live["spec"]["template"]["metadata"]["annotations"]
    assert "rotated-" not in result  # values never reach metadata
    assert changes(p.run(["cluster_secrets"]))["cluster_secrets"] == "no change"


def test_hand_edit_is_found_and_healed_by_an_argo_cd_sync(installed: Platform) -> None:
    p = installed
    api = config.new_client_from_config(config_file=str(p.state_dir / "kubeconfig"))  # as a user's kubectl would
    client.AppsV1Api(api).patch_namespaced_deployment(
        "postgres", "mlops", {"spec": {"replicas": 3}}, field_manager="kubectl-edit"
    )
    message, _ = p.sense()
    assert "postgres edited out of band" in message and "Deployment/postgres spec.replicas" in message
    healed = p.run(["postgres"])
    assert changes(healed)["postgres"].startswith(
        "requested an Argo CD sync to undo: Deployment/postgres spec.replicas"
    )
    live = (
        p.cluster()
        .kube()
        .get({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "postgres", "namespace": "mlops"}})
    )
    assert live is not None and live["spec"]["replicas"] == 1
    assert changes(p.run(["postgres"])) == {"postgres": "no change"}
    assert p.sense()[0] == "no drift"


def test_cidr_change_after_install_needs_rebuild_and_changes_nothing(installed: Platform) -> None:
    p = installed
    before = dict(p.host.files)
    p.write_config({"service_cidr": "10.46.0.0/16", "cluster_dns": "10.46.0.10"})
    message, _ = p.sense()
    assert "k3s cluster needs a rebuild" in message
    assert "service-cidr 10.45.0.0/16 -> 10.46.0.0/16" in message
    result = p.run(["k3s_cluster"], raise_on_error=False)
    failure = step_failures(result)["k3s_cluster"]
    assert "needs rebuild: service-cidr 10.45.0.0/16 -> 10.46.0.0/16; cluster-dns 10.45.0.10 -> 10.46.0.10" in failure
    assert "uninstall k3s on scripted and install again, or restore network.*" in failure
    assert p.host.mutations == [] and p.host.files == before


def test_plan_mode_lists_changes_and_changes_nothing(platform: Platform) -> None:
    p = platform
    objects, version = dict(p.fake.store.objects), p.fake.store.rv
    cluster = p.cluster()
    with planning():
        planned = {name: step(cluster).change(plan=True) for name, step in STEPS.items()}
    assert p.host.mutations == []
    assert p.fake.store.objects == objects and p.fake.store.rv == version  # no object written, not even dry
    assert not (p.state_dir / "kubeconfig").exists()
    assert not (p.state_dir / "manifests").exists()  # not even the verified-manifest cache
    assert "run (sudo): dnf install -y iscsi-initiator-utils nfs-utils bind-utils" in planned["host"]
    assert "run (sudo): systemctl disable --now firewalld" in planned["host"]
    assert "write (sudo): /etc/rancher/k3s/config.yaml" in planned["k3s_cluster"]
    assert (
        "run (sudo): env INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION=v1.31.4+k3s1 sh" in planned["k3s_cluster"]
    )
    assert planned["metallb"] == "would: apply 17 MetalLB objects and 2 pool objects"
    assert planned["argocd"] == "would: apply 59 Argo CD objects"
    assert planned["cluster_secrets"].startswith("would: create Secrets seaweedfs-s3-identities, postgres-admin")
    assert planned["platform_image"].startswith("would: platform image: would change (")
    assert "run (sudo): /usr/local/bin/k3s ctr -n k8s.io images import" in planned["platform_image"]
    assert planned["gitops"] == (
        "would: create Application mlops-platform (6 child Applications) "
        "from git://gitops-source.argocd.svc.cluster.local:9418/infra.git@main:infra/apps"
    )


def test_plan_mode_on_an_installed_cluster_dry_runs_the_changes(installed: Platform) -> None:
    p = installed
    p.write_config(namespace="platform")  # the Secrets would move to a new namespace
    objects, version = dict(p.fake.store.objects), p.fake.store.rv
    with planning():
        planned = STEPS["cluster_secrets"](p.cluster()).change(plan=True)
    assert planned.startswith("would: create Namespace platform; create Secret platform/seaweedfs-s3-identities")
    assert p.fake.store.objects == objects and p.fake.store.rv == version and p.host.mutations == []


@pytest.mark.parametrize(
    ("reported", "prefix", "passed"),
    [("10.43.100.94", 24, True), ("10.43.100.95", 24, False), ("10.43.100.94", 16, False)],  # /16: not host_subnet
)
def test_host_ip_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reported: str, prefix: int, passed: bool
) -> None:
    """host_ip_on_host, left out above (loopback host_ip): with a LAN host_ip only the host asset runs."""
    plat = make_platform(tmp_path, monkeypatch)
    try:
        lan = {
            "host_ip": "10.43.100.94",
            "host_subnet": "10.43.100.0/24",
            "metallb_pool": "10.43.100.200-10.43.100.220",
        }
        plat.write_config(lan)
        monkeypatch.setattr(
            "platform_core.cluster.resource.executor_for",
            lambda cfg, state_dir: k3s_vm(reported, b"", K3S_VERSION, prefix=prefix),
        )
        result = plat.run(["host"], raise_on_error=False, extra_checks=[host_ip_on_host])
        ok, description = checks(result)["host_ip_on_host"]
        assert ok is passed and f"addresses ['{reported}/{prefix}']" in description
        assert metadata(result, "host")["os"] == "Rocky Linux 9.4" and metadata(result, "host")["os_family"] == "rhel"
    finally:
        plat.fake.stop()


def test_an_unreachable_api_server_is_one_alert_not_a_crashed_tick(platform: Platform) -> None:
    platform.run()
    _, cursor = platform.sense()
    platform.fake.stop()
    summary, cursor = platform.sense(cursor)
    assert "Kubernetes API server unreachable" in summary
    fired = [a for a in platform.alerts() if a["status"] == "firing"]
    assert [a["key"] for a in fired] == ["unreachable:api_server"]
    again, _ = platform.sense(cursor)
    assert "Kubernetes API server unreachable" in again and len(platform.alerts()) == len(fired)  # no repeat
