"""What a real K3s does that the platform must live with (issue 11), reproduced by the fake first:
metrics-server's aggregated API answering 503 while it starts and then serving PodMetrics without a uid, Services'
labels copied onto their Endpoints and EndpointSlices, and the platform's own step pods, labelled and unowned."""

from __future__ import annotations

import base64
import logging

import pytest

from platform_core.cluster.kube import KubeClient
from platform_core.cluster.kube_health import rollout_pending
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.scenario_k3s import Platform, changes, make_platform, metadata, step_failures

POD_METRICS = ("metrics.k8s.io/v1beta1", "PodMetrics")
MANAGED = {"app.kubernetes.io/managed-by": "mlops-platform"}


def test_an_unavailable_aggregated_api_is_skipped_with_a_warning(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    with FakeApiServer() as fake:
        fake.metrics_unavailable_requests = 1000  # metrics-server down for good
        kube = KubeClient.from_kubeconfig(fake.write_kubeconfig(tmp_path / "kubeconfig"))
        with caplog.at_level(logging.WARNING, logger="platform_core.cluster.kube"):
            served = kube.served_kinds()
        assert ("apps/v1", "Deployment") in served and POD_METRICS not in served
        assert "discovery skips metrics.k8s.io/v1beta1: discovery: the server is currently unable" in caplog.text


def test_a_transient_503_is_retried(tmp_path) -> None:
    with FakeApiServer() as fake:
        fake.metrics_unavailable_requests = 2  # as K3s's metrics-server right after start: then it serves
        kube = KubeClient.from_kubeconfig(fake.write_kubeconfig(tmp_path / "kubeconfig"))
        assert POD_METRICS in kube.served_kinds()
        pods = kube.list(*POD_METRICS)
        assert all("uid" not in p["metadata"] for p in pods)  # as metrics-server builds them


def test_labelled_endpoints_pod_metrics_and_step_pods_are_not_orphans(installed: Platform) -> None:
    p = installed
    kube = p.cluster().kube()
    step_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "train-step-1", "namespace": "mlops", "labels": dict(MANAGED)},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "step", "image": "busybox:1.36"}]},
    }
    kube.apply([step_pod], field_manager="dagster-k8s")  # a Pipes step pod, running, owned by no one
    labelled = kube.list("v1", "Endpoints", namespace="mlops")
    assert any((e["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") for e in labelled)
    assert any((m["metadata"].get("labels") or {}) for m in kube.list(*POD_METRICS, namespace="mlops"))

    message, _ = p.sense()
    assert "orphan" not in message, message
    p.write_config(prune_orphans=True)
    result = p.run(["gitops"])
    assert metadata(result, "gitops")["orphans"] == "none"
    assert "pruned" not in changes(result)["gitops"]
    assert kube.get(step_pod) is not None  # a running training pod is never pruned
    assert kube.list("v1", "Endpoints", namespace="mlops") == labelled


def test_metallb_pool_waits_for_the_webhook_then_applies(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    plat = make_platform(tmp_path, monkeypatch, metallb="v0.15.3")
    try:
        assert plat.fake.metallb_webhook_refusals > 0  # the webhook refuses at first, as on a real cluster
        monkeypatch.setattr("platform_core.cluster.steps.time.sleep", lambda s: None)
        result = plat.run(["host", "k3s_cluster", "cluster_images", "metallb"])
        assert "created IPAddressPool metallb-system/" in changes(result)["metallb"]
        assert plat.fake.metallb_webhook_refusals == 0
    finally:
        plat.fake.stop()


def test_a_webhook_that_never_serves_is_named_when_the_wait_ends(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    plat = make_platform(tmp_path, monkeypatch, metallb="v0.15.3")
    try:
        plat.fake.metallb_webhook_refusals = 10**6
        plat.write_config(webhook_timeout_seconds=1)
        result = plat.run(["host", "k3s_cluster", "cluster_images", "metallb"], raise_on_error=False)
        failure = step_failures(result)["metallb"]
        assert "MetalLB's webhook still refuses the address pool after 1s" in failure and "x509" in failure
    finally:
        plat.fake.stop()


@pytest.mark.parametrize(
    ("status", "pending"),
    [
        ({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}, None),
        ({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}, "observed"),
        ({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 0, "availableReplicas": 1}, "0 of 1 new"),
        ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 2}, "1 old replicas"),
        ({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}, "0 of 1 updated"),
    ],
)
def test_a_rollout_in_progress_is_not_done_though_available(status: dict, pending: str | None) -> None:
    """kubectl rollout status's rule: the Available condition stays True from the old ReplicaSet meanwhile."""
    available = [{"type": "Available", "status": "True"}]
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 1}, "status": {**status, "conditions": available}}
    why = rollout_pending(dep)
    assert why is None if pending is None else pending in str(why)


def test_stringdata_keys_linger_after_apply_and_data_keys_do_not(tmp_path) -> None:
    """The fake folds stringData as the API server does; so the platform applies `data`, whose keys it owns."""
    with FakeApiServer() as fake:
        kube = KubeClient.from_kubeconfig(fake.write_kubeconfig(tmp_path / "kubeconfig"))
        kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mlops"}}])

        def secret(name: str, field: str, values: dict[str, str]) -> dict:
            body = (
                values
                if field == "stringData"
                else {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
            )
            return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "mlops"}, field: body}

        for field in ("stringData", "data"):
            kube.apply([secret(field.lower(), field, {"a": "1", "b": "2"})])
            kube.apply([secret(field.lower(), field, {"a": "1"})])  # key b removed from the desired Secret
            live = kube.get(secret(field.lower(), field, {}))
            assert "stringData" not in live
            assert sorted(live["data"]) == (["a", "b"] if field == "stringData" else ["a"]), field
