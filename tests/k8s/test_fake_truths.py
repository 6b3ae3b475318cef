"""What a real cluster does that the platform must cope with, reproduced by the fake (each behaviour's source
is named beside it in the fake): the kubelet without egress, finalizers and Argo CD's cascade, and server-side
apply merging lists by the schema's map keys, a CRD's late arrival in discovery."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from platform_core.cluster.kube import KubeClient
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.fake_objects import crd, deployment
from tests.k8s.test_fake_apiserver import _app, _argocd, _dynamic, _err, _in_git, _raw


def test_without_egress_the_kubelet_runs_only_what_containerd_holds(
    fake_api: FakeApiServer, api_client: client.ApiClient
) -> None:
    """IfNotPresent runs a present image; Always asks the registry even then, and :latest defaults to Always."""
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    before = list(fake_api.pulls)  # the bootstrap CoreDNS, pulled while the fake had egress
    fake_api.egress = False
    fake_api.node_images = lambda: {"docker.io/library/nginx:1.27", "docker.io/library/nginx:latest"}
    always = deployment("always")
    always["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    for dep in (deployment("present"), always, deployment("latest", image="nginx"), deployment("absent", "redis:7")):
        apps.create_namespaced_deployment("default", dep)

    def state(name: str) -> str:
        (pod,) = core.list_namespaced_pod("default", label_selector=f"app={name}").items
        s = pod.status.container_statuses[0].state
        return "running" if s.running else f"{s.waiting.reason}: {s.waiting.message}"

    assert state("present") == "running"
    for name in ("always", "latest", "absent"):
        assert state(name).startswith("ImagePullBackOff: ") and ": no such host" in state(name), name
    assert "lookup registry-1.docker.io" in state("absent")
    assert fake_api.pulls == before  # nothing since egress went


def test_finalizers_keep_an_object_terminating_and_argo_cd_cascades(
    fake_api: FakeApiServer, api_client: client.ApiClient
) -> None:
    """A deleted object with finalizers stays, Terminating, until they are removed; Argo CD's cascade finalizer
    deletes the Application's resources first, which takes a while (fake_api.cascade_seconds)."""
    core = client.CoreV1Api(api_client)
    held = {"metadata": {"name": "held", "finalizers": ["example.io/keep"]}, "data": {"a": "1"}}
    core.create_namespaced_config_map("default", held)
    core.delete_namespaced_config_map("held", "default")
    live = core.read_namespaced_config_map("held", "default")
    assert live.metadata.deletion_timestamp is not None
    assert _err(core.create_namespaced_config_map, "default", held)[0] == 409
    core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})
    assert _err(core.read_namespaced_config_map, "held", "default")[0] == 404

    root = fake_api.repo_root
    (root / "web").mkdir(parents=True)
    (root / "web/deploy.yaml").write_text(_in_git(deployment("site")))
    _argocd(api_client)
    custom = client.CustomObjectsApi(api_client)
    args = ("argoproj.io", "v1alpha1", "argocd", "applications")
    app = _app("web", "web", "web")
    app["metadata"]["finalizers"] = ["resources-finalizer.argocd.argoproj.io"]
    custom.create_namespaced_custom_object(*args, app)
    apps = client.AppsV1Api(api_client)
    assert apps.read_namespaced_deployment("site", "web").metadata.name == "site"
    fake_api.cascade_seconds = 0.5
    custom.delete_namespaced_custom_object(*args, "web")
    terminating = custom.get_namespaced_custom_object(*args, "web")
    assert terminating["metadata"]["deletionTimestamp"]
    assert apps.read_namespaced_deployment("site", "web") is not None  # not yet
    time.sleep(0.6)
    assert _err(custom.get_namespaced_custom_object, *args, "web")[0] == 404
    assert _err(apps.read_namespaced_deployment, "site", "web")[0] == 404


def test_apply_merges_lists_by_the_schemas_map_keys(api_client: client.ApiClient) -> None:
    """Service ports by port+protocol (protocol defaulted), volumeMounts by mountPath, as the OpenAPI schema's
    x-kubernetes-list-map-keys say; a list without them (args) is atomic, owned whole by its last applier."""
    kube = KubeClient(api_client)
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
    }
    kube.apply([svc], field_manager="a")
    live = kube.get(svc) or {}
    fields = next(m["fieldsV1"] for m in live["metadata"]["managedFields"] if m["manager"] == "a")
    assert 'k:{"port":80,"protocol":"TCP"}' in fields["f:spec"]["f:ports"]
    dep = deployment("web")
    pod = dep["spec"]["template"]["spec"]
    pod["containers"][0] |= {"args": ["--a"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    pod["volumes"] = [{"name": "data", "emptyDir": {}}]
    kube.apply([dep], field_manager="a")
    moved = copy.deepcopy(dep)
    moved["spec"]["template"]["spec"]["containers"][0] |= {
        "args": ["--b"],
        "volumeMounts": [{"name": "data", "mountPath": "/var/data"}],
    }
    kube.apply([moved], field_manager="b")
    container = (kube.get(dep) or {})["spec"]["template"]["spec"]["containers"][0]
    assert sorted(m["mountPath"] for m in container["volumeMounts"]) == ["/data", "/var/data"]  # two items
    assert container["args"] == ["--b"]  # atomic: replaced whole


def test_crd_appears_in_discovery_a_moment_after_established(
    fake_api: FakeApiServer, api_client: client.ApiClient, tmp_path: Path
) -> None:
    fake_api.registry.discovery_lag = 0.3
    ext = client.ApiextensionsV1Api(api_client)
    created = ext.create_custom_resource_definition(crd("example.com", "Widget", "widgets"))
    assert {c.type: c.status for c in created.status.conditions}["Established"] == "True"
    with pytest.raises(ApiException) as lagging:
        _raw(api_client, "GET", "/apis/example.com/v1beta1")
    assert lagging.value.status == 404
    time.sleep(0.35)
    doc = _raw(api_client, "GET", "/apis/example.com/v1beta1")
    assert {r["name"]: r["namespaced"] for r in doc["resources"]} == {"widgets": True, "widgets/status": True}
    widgets = _dynamic(api_client, tmp_path).resources.get(api_version="example.com/v1beta1", kind="Widget")
    widgets.create(
        body={"apiVersion": "example.com/v1beta1", "kind": "Widget", "metadata": {"name": "w"}}, namespace="default"
    )
    assert [w.metadata.name for w in widgets.get(namespace="default").items] == ["w"]
    ext.delete_custom_resource_definition("widgets.example.com")
    assert _err(_raw, api_client, "GET", "/apis/example.com/v1beta1")[0] == 404


def test_a_jobs_status_follows_its_pod_and_a_finished_job_stays_finished(
    fake_api: FakeApiServer, api_client: client.ApiClient
) -> None:
    """The job controller (tests/k8s/fake_jobs.py): a running pod is `active`; a pod gone while running is a
    failed attempt, fatal past `backoffLimit`; a Complete Job is left alone, even when its pod goes."""
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    fake_api.node_images = lambda: {"docker.io/library/nginx:1.27"}

    def job(name: str) -> dict[str, object]:
        pod = deployment(name)["spec"]["template"]
        pod["spec"]["restartPolicy"] = "Never"
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": pod},
        }

    batch.create_namespaced_job("default", job("killed"))
    assert batch.read_namespaced_job_status("killed", "default").status.active == 1
    (pod,) = core.list_namespaced_pod("default", label_selector="batch.kubernetes.io/job-name=killed").items
    core.delete_namespaced_pod(pod.metadata.name, "default")
    status = batch.read_namespaced_job_status("killed", "default").status
    assert (status.failed, status.active, [(c.type, c.reason) for c in status.conditions]) == (
        1,
        None,
        [("Failed", "BackoffLimitExceeded")],
    )
    assert not core.list_namespaced_pod("default", label_selector="batch.kubernetes.io/job-name=killed").items

    fake_api.pod_runner = lambda pod: ("Succeeded", "done\n")
    batch.create_namespaced_job("default", job("done"))
    (pod,) = core.list_namespaced_pod("default", label_selector="batch.kubernetes.io/job-name=done").items
    core.delete_namespaced_pod(pod.metadata.name, "default")
    status = batch.read_namespaced_job_status("done", "default").status
    assert (status.succeeded, [c.type for c in status.conditions]) == (1, ["Complete"])
    assert not core.list_namespaced_pod("default", label_selector="batch.kubernetes.io/job-name=done").items


def test_deleting_a_job_orphans_its_pods_unless_told(fake_api: FakeApiServer, api_client: client.ApiClient) -> None:
    """batch/v1 Jobs default to propagationPolicy Orphan (kubernetes pkg/registry/batch/job/strategy.go), which is
    why dagster-k8s deletes a run's pods after its Job; kubectl asks for Background."""
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    fake_api.node_images = lambda: {"docker.io/library/nginx:1.27"}
    for name in ("orphaning", "cascading"):
        pod = deployment(name)["spec"]["template"]
        pod["spec"]["restartPolicy"] = "Never"
        batch.create_namespaced_job("default", {"metadata": {"name": name}, "spec": {"template": pod}})

    def pods(name: str) -> list[client.V1Pod]:
        return core.list_namespaced_pod("default", label_selector=f"batch.kubernetes.io/job-name={name}").items

    batch.delete_namespaced_job("orphaning", "default")
    batch.delete_namespaced_job("cascading", "default", propagation_policy="Background")
    (left,) = pods("orphaning")
    assert not left.metadata.owner_references and not pods("cascading")
