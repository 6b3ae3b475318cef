"""What a real K3s does that the platform must live with (issue 11), reproduced by the fake first:
metrics-server's aggregated API answering 503 while it starts and then serving PodMetrics without a uid, Services'
labels copied onto their Endpoints and EndpointSlices, and the platform's own step pods, labelled and unowned."""

from __future__ import annotations

import logging

import pytest

from platform_assets.cluster.kube import KubeClient
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.scenario_k3s import Platform, changes, metadata

POD_METRICS = ("metrics.k8s.io/v1beta1", "PodMetrics")
MANAGED = {"app.kubernetes.io/managed-by": "mlops-platform"}


def test_an_unavailable_aggregated_api_is_skipped_with_a_warning(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    with FakeApiServer() as fake:
        fake.metrics_unavailable_requests = 1000  # metrics-server down for good
        kube = KubeClient.from_kubeconfig(fake.write_kubeconfig(tmp_path / "kubeconfig"))
        with caplog.at_level(logging.WARNING, logger="platform_assets.cluster.kube"):
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
