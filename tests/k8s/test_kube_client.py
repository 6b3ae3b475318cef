"""KubeClient, the platform's Kubernetes layer, against the API fake: apply, drift, orphans, workload health."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from platform_core.cluster.kube import KubeClient, KubeError
from tests.k8s import fake_objects
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.fake_objects import crd
from tests.vendor import vendor_file

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.fixture
def kube(kubeconfig: Path) -> KubeClient:
    return KubeClient.from_kubeconfig(kubeconfig)


def upstream(rel: str) -> list[dict[str, Any]]:
    path = vendor_file(rel)  # pristine upstream manifests, for tests only
    return [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d]


def deployment(name: str, image: str = "nginx:1.27", replicas: int = 1, ns: str = "default") -> dict[str, Any]:
    return fake_objects.deployment(name, image, replicas, ns, labels={"app.kubernetes.io/managed-by": "mlops-platform"})


def _actions(results: list[Any]) -> list[str]:
    return [r.action for r in results]


def test_apply_is_idempotent_and_reports_changes(kube: KubeClient) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mlops"}}
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "mlops"},
        "data": {"a": "1"},
    }
    first = kube.apply([cm, deployment("web", ns="mlops"), ns])  # the Namespace goes first whatever the order
    assert [(r.kind, r.action) for r in first] == [
        ("Namespace", "created"),
        ("ConfigMap", "created"),
        ("Deployment", "created"),
    ]
    assert _actions(kube.apply([ns, cm, deployment("web", ns="mlops")])) == ["unchanged"] * 3
    changed = {**cm, "data": {"a": "2"}}
    assert _actions(kube.apply([changed], dry_run=True)) == ["configured"]
    assert _actions(kube.apply([cm], dry_run=True)) == ["unchanged"]  # the dry run wrote nothing
    assert _actions(kube.apply([changed])) == ["configured"]
    assert _actions(kube.apply([changed])) == ["unchanged"]
    live = kube.get(changed)
    assert live is not None and live["data"] == {"a": "2"}


def test_diff_finds_hand_edits_and_nothing_on_a_clean_object(kube: KubeClient, api_client: Any) -> None:
    web = deployment("web", replicas=2)
    assert kube.diff(web)[0].path == ""  # absent: the whole object would be created
    kube.apply([web])
    assert kube.diff(web) == []  # status, uid, clusterIP-like defaults are not drift
    apps = client.AppsV1Api(api_client)
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 5}}, field_manager="kubectl-edit")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:evil"}]}}}}
    apps.patch_namespaced_deployment("web", "default", patch, field_manager="kubectl-edit")
    found = {c.path: (c.live, c.desired) for c in kube.diff(web)}
    assert found == {"spec.replicas": (5, 2), "spec.template.spec.containers[main].image": ("nginx:evil", "nginx:1.27")}
    live = kube.get(web)
    assert live is not None and live["spec"]["replicas"] == 5  # diff is a dry run: it changed nothing
    assert _actions(kube.apply([web])) == ["configured"]
    assert kube.diff(web) == []


def test_split_unserved_and_bad_input(kube: KubeClient) -> None:
    psp = {"apiVersion": "policy/v1beta1", "kind": "PodSecurityPolicy", "metadata": {"name": "controller"}}
    served, unserved = kube.split_unserved([deployment("web"), psp])
    assert [o["kind"] for o in served] == ["Deployment"] and unserved == [psp]
    assert ("apps/v1", "Deployment") in kube.served_kinds()
    with pytest.raises(KubeError, match="does not serve policy/v1beta1 PodSecurityPolicy"):
        kube.apply([deployment("web"), psp])
    with pytest.raises(KubeError, match=r"object #1 \(ConfigMap\): metadata.name is required"):
        kube.apply([deployment("web"), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}])
    assert kube.get(deployment("web")) is None  # bad input: nothing was applied
    missing_ns = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "nope"}}
    with pytest.raises(KubeError, match=r'^ConfigMap nope/c: namespaces "nope" not found$'):
        kube.apply([missing_ns])
    with pytest.raises(KubeError, match="no such file"):
        KubeClient.from_kubeconfig(Path("/nonexistent/kubeconfig"))


def test_upstream_argocd_install_applies_and_reapplies_unchanged(kube: KubeClient) -> None:
    objs = upstream("argocd/v3.5.1/install.yaml")
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}])
    first = kube.apply(objs, namespace="argocd")  # CRDs first, so a manifest of CRDs and CRs is one call
    assert len(first) == len(objs) and set(_actions(first)) == {"created"}
    assert ("argoproj.io/v1alpha1", "Application") in kube.served_kinds()
    assert set(_actions(kube.apply(objs, namespace="argocd"))) == {"unchanged"}
    assert set(_actions(kube.apply(objs, namespace="argocd", dry_run=True))) == {"unchanged"}
    assert kube.deployments_available("argocd", ["argocd-server", "argocd-repo-server"]) == {
        "argocd-server": True,
        "argocd-repo-server": True,
    }


def test_upstream_metallb_native_applies_crds_and_crs_in_one_call(kube: KubeClient, fake_api: FakeApiServer) -> None:
    # the webhook's late certificate is the metallb step's to wait for (test_k3s_real_cluster): here it serves
    fake_api.metallb_webhook_refusals = 0
    objs = upstream("metallb/v0.15.3/metallb-native.yaml")
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "platform", "namespace": "metallb-system"},
        "spec": {"addresses": ["192.168.56.240-192.168.56.250"]},
    }
    l2 = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": "platform", "namespace": "metallb-system"},
    }
    assert kube.split_unserved([*objs, pool, l2])[1] == []  # the CRDs in the batch make the CRs servable
    assert set(_actions(kube.apply([*objs, pool, l2]))) == {"created"}
    assert set(_actions(kube.apply([*objs, pool, l2]))) == {"unchanged"}
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "probe", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }
    kube.apply([svc])
    live = kube.get(svc)
    assert live is not None and live["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.168.56.240"


def test_a_crd_and_its_objects_in_one_call_wait_for_discovery(kube: KubeClient, fake_api: FakeApiServer) -> None:
    """Discovery lists a CRD's types a moment after it is Established (the fake's lag, fake_types.Registry): a
    client that re-reads discovery once at that point finds no such kind; apply waits until it lists them."""
    fake_api.registry.discovery_lag = 1.0
    gadgets = crd("example.io", "Gadget", "gadgets")
    client.ApiextensionsV1Api(kube.api).create_custom_resource_definition(gadgets)
    established = fake_api.store.find(
        fake_api.rtype("apiextensions.k8s.io/v1", "CustomResourceDefinition"), None, "gadgets.example.io"
    )
    assert established is not None and "Established" in str(established["status"]["conditions"])
    assert ("example.io/v1beta1", "Gadget") not in kube.served_kinds(refresh=True)
    widget = {"apiVersion": "example.io/v1beta1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}}
    assert set(_actions(kube.apply([crd("example.io", "Widget", "widgets"), widget]))) == {"created"}
    assert kube.get(widget) is not None


def test_upstream_metallb_v012_applies_without_its_podsecuritypolicies(kube: KubeClient) -> None:
    objs = upstream("metallb/v0.12.1/namespace.yaml") + upstream("metallb/v0.12.1/metallb.yaml")
    served, dropped = kube.split_unserved(objs)
    assert {(o["kind"], o["metadata"]["name"]) for o in dropped} == {
        ("PodSecurityPolicy", "controller"),
        ("PodSecurityPolicy", "speaker"),
    }
    assert set(_actions(kube.apply(served))) == {"created"}
    assert set(_actions(kube.apply(served))) == {"unchanged"}
    assert kube.deployments_available("metallb-system", ["controller"]) == {"controller": False}  # rolling out
    kube.wait_available("metallb-system", ["controller"], timeout=5)


def test_image_pull_failures_and_waiting(kube: KubeClient, fake_api: FakeApiServer) -> None:
    fake_api.unpullable_images.add("ghcr.io/example/missing:0.1")
    kube.apply([deployment("good"), deployment("bad", image="ghcr.io/example/missing:0.1")])
    (failure,) = kube.image_pull_failures("default")
    assert (failure.namespace, failure.node, failure.image, failure.reason) == (
        "default",
        "k3s-server",
        "ghcr.io/example/missing:0.1",
        "ImagePullBackOff",
    )
    assert failure.pod.startswith("bad-") and "ghcr.io/example/missing:0.1" in failure.message
    assert kube.image_pull_failures(None) == [failure] and kube.image_pull_failures("kube-system") == []
    assert kube.deployment_states("default", ["good"]) == {"good": "0 of 1 updated replicas available"}  # rolling
    kube.wait_available("default", ["good"], timeout=5)
    assert kube.deployments_available("default", ["good", "bad", "absent"]) == {
        "good": True,
        "bad": False,
        "absent": False,
    }
    with pytest.raises(KubeError, match=r"not available after 0\.2s: bad \(0 of 1 updated replicas available\)$"):
        kube.wait_available("default", ["good", "bad"], timeout=0.2, interval=0.05)


def test_a_new_generation_is_pending_while_updated_replicas_lag(kube: KubeClient) -> None:
    """The old replicas keep the Deployment Available while the new ones roll: Available alone says nothing."""
    kube.apply([deployment("web")])
    kube.wait_available("default", ["web"], timeout=5)
    kube.apply([deployment("web", image="nginx:1.28")])
    live = kube.get(deployment("web")) or {}
    assert {c["type"]: c["status"] for c in live["status"]["conditions"]}["Available"] == "True"
    assert kube.deployment_states("default", ["web"]) == {"web": "0 of 1 new replicas updated"}
    kube.wait_available("default", ["web"], timeout=5)
    assert kube.deployment_states("default", ["web"]) == {"web": None}


def test_list_managed_and_delete(kube: KubeClient) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mlops"}}
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "mlops", "labels": {"app.kubernetes.io/managed-by": "mlops-platform"}},
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "reader", "labels": {"app.kubernetes.io/managed-by": "mlops-platform"}},
        "rules": [],
    }
    kube.apply([ns, cm, role, deployment("web", ns="mlops")])
    kinds = {("v1", "ConfigMap"), ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("apps/v1", "Deployment")}
    kinds |= {("v1", "Endpoints"), ("example.com/v1", "NotServed")}  # no Endpoints here; an unserved kind is skipped
    managed = kube.list_managed("app.kubernetes.io/managed-by=mlops-platform", kinds)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in managed) == [
        ("ClusterRole", "reader"),
        ("ConfigMap", "c"),
        ("Deployment", "web"),
    ]
    assert all(o["apiVersion"] for o in managed)
    assert kube.delete(copy.deepcopy(role)) is True and kube.delete(role) is False
    assert kube.get(role) is None
