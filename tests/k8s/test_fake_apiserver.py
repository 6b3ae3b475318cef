"""The Kubernetes API fake, driven by the real ``kubernetes`` client as the platform's code will drive it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic
from kubernetes.client import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.fake_objects import crd, deployment, rolled_out


def _raw(
    api: client.ApiClient,
    method: str,
    path: str,
    body: Any = None,
    ctype: str | None = None,
    query: list[tuple[str, str]] | None = None,
) -> Any:
    headers = {"Accept": "application/json"} | ({"Content-Type": ctype} if ctype else {})
    resp = api.call_api(
        path,
        method,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    return json.loads(resp.data)


def _err(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    body = json.loads(info.value.body)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == info.value.status
    return info.value.status, body["reason"], body["message"]


def _ns(core: client.CoreV1Api, name: str) -> None:
    core.create_namespace({"metadata": {"name": name}})


# --- discovery and the fresh cluster --------------------------------------------------------------------------
def _dynamic(api: client.ApiClient, tmp: Path) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(api, cache_file=str(tmp / "discovery.json"))  # not the shared /tmp cache


def test_discovery_serves_builtins_and_not_podsecuritypolicy(api_client: client.ApiClient, tmp_path: Path) -> None:
    assert client.VersionApi(api_client).get_code().git_version == "v1.31.4+k3s1"
    core = {r["name"]: r for r in _raw(api_client, "GET", "/api/v1")["resources"]}
    assert core["pods/log"]["verbs"] == ["get"] and core["namespaces"]["namespaced"] is False
    groups = {g["name"]: g for g in _raw(api_client, "GET", "/apis")["groups"]}
    assert {"apps", "batch", "rbac.authorization.k8s.io", "policy", "coordination.k8s.io"} <= set(groups)
    assert [v["version"] for v in groups["policy"]["versions"]] == ["v1"]
    assert _raw(api_client, "GET", "/apis/policy")["preferredVersion"]["groupVersion"] == "policy/v1"
    apps = {r["name"]: r for r in _raw(api_client, "GET", "/apis/apps/v1")["resources"]}
    assert apps["deployments"]["kind"] == "Deployment" and "deployments/status" in apps
    assert _err(_raw, api_client, "GET", "/apis/policy/v1beta1/podsecuritypolicies")[0] == 404
    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    resp = api_client.call_api(
        "/apis",
        "GET",
        header_params={"Accept": aggregated},
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    assert json.loads(resp.data)["kind"] == "APIGroupList"  # the plain format, which clients fall back to
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{api_client.configuration.host}/api/v1/namespaces", timeout=5)
    assert anonymous.value.code == 401  # the kubeconfig's bearer token is required
    with pytest.raises(ResourceNotFoundError):
        _dynamic(api_client, tmp_path).resources.get(api_version="policy/v1beta1", kind="PodSecurityPolicy")


def test_fresh_cluster_looks_like_k3s(api_client: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    names = {n.metadata.name for n in core.list_namespace().items}
    assert names == {"default", "kube-system", "kube-public", "kube-node-lease"}
    node = core.list_node().items[0]
    assert node.status.node_info.kubelet_version == "v1.31.4+k3s1"
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert core.read_namespaced_service("kubernetes", "default").spec.cluster_ip == "10.45.0.1"
    assert core.read_namespaced_service("kube-dns", "kube-system").spec.cluster_ip == "10.45.0.10"
    assert apps.read_namespaced_deployment("coredns", "kube-system").status.available_replicas == 1
    svc = core.create_namespaced_service("default", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})
    assert svc.spec.cluster_ip.startswith("10.45.") and svc.spec.cluster_ip not in ("10.45.0.1", "10.45.0.10")


# --- CRUD and errors ------------------------------------------------------------------------------------------
def test_crud_and_error_shapes(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    _ns(core, "team")
    cm = core.create_namespaced_config_map("team", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    assert cm.metadata.uid and cm.metadata.resource_version and cm.metadata.creation_timestamp
    assert _err(core.create_namespaced_config_map, "team", {"metadata": {"name": "c"}})[:2] == (409, "AlreadyExists")
    assert _err(core.read_namespaced_config_map, "zz", "team") == (404, "NotFound", 'configmaps "zz" not found')
    code, reason, msg = _err(core.create_namespace, {"metadata": {"name": "Bad_Name"}})
    assert (code, reason) == (422, "Invalid") and "metadata.name" in msg
    assert _err(core.create_namespaced_config_map, "nope", {"metadata": {"name": "c"}}) == (
        404,
        "NotFound",
        'namespaces "nope" not found',
    )
    cm.data = {"k": "v2"}
    updated = core.replace_namespaced_config_map("c", "team", cm)
    assert updated.data == {"k": "v2"} and updated.metadata.resource_version != cm.metadata.resource_version
    cm.data = {"k": "stale"}
    assert _err(core.replace_namespaced_config_map, "c", "team", cm)[:2] == (409, "Conflict")
    core.delete_namespaced_config_map("c", "team")
    assert _err(core.delete_namespaced_config_map, "c", "team")[0] == 404
    core.create_namespaced_secret("team", {"metadata": {"name": "s"}, "stringData": {"a": "b"}})
    core.delete_namespace("team")
    assert _err(core.read_namespaced_secret, "s", "team")[0] == 404


def test_label_and_field_selectors(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    _ns(core, "a")
    for ns, name, labels in [
        ("default", "x", {"tier": "web", "env": "prod"}),
        ("default", "y", {"tier": "db"}),
        ("a", "z", {"tier": "web"}),
    ]:
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})

    def names(selector: str, fields: str = "") -> set[str]:
        items = core.list_config_map_for_all_namespaces(label_selector=selector, field_selector=fields).items
        return {i.metadata.name for i in items}

    assert names("tier=web") == names("tier==web") == {"x", "z"}
    assert names("tier!=web") == {"y"} | {
        c.metadata.name
        for c in core.list_config_map_for_all_namespaces().items
        if "tier" not in (c.metadata.labels or {})
    }
    assert names("tier in (db,cache)") == {"y"} and names("tier notin (web),tier") == {"y"}
    assert names("env") == {"x"} and names("tier,!env") == {"y", "z"}
    assert names("tier", "metadata.namespace=a") == {"z"} and names("", "metadata.name=y") == {"y"}
    assert _err(core.list_namespaced_pod, "default", watch=True)[0] == 405  # watch answers at once, no hang


def test_patch_formats_and_generation(api_client: client.ApiClient) -> None:
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment("default", deployment("web"))
    gen = apps.read_namespaced_deployment("web", "default").metadata.generation
    merged = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"a": "1"}}})
    assert merged.metadata.labels == {"a": "1"} and merged.metadata.generation == gen  # metadata: no bump
    scaled = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
    assert scaled.spec.replicas == 3 and scaled.metadata.generation == gen + 1
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 2}, {"op": "remove", "path": "/metadata/labels/a"}]
    patched = apps.patch_namespaced_deployment("web", "default", ops)
    assert patched.spec.replicas == 2 and not patched.metadata.labels
    path = "/apis/apps/v1/namespaces/default/deployments/web"
    out = _raw(api_client, "PATCH", path, {"spec": {"replicas": 4}}, "application/merge-patch+json")
    assert out["spec"]["replicas"] == 4


# --- server-side apply ----------------------------------------------------------------------------------------
def _apply(
    api: client.ApiClient, body: dict[str, Any], manager: str | None = "ci", force: bool = False, dry: bool = False
) -> dict[str, Any]:
    query = [("fieldManager", manager)] if manager else []
    query += [("force", "true")] if force else []
    query += [("dryRun", "All")] if dry else []
    path = f"/apis/apps/v1/namespaces/default/deployments/{body['metadata']['name']}"
    return _raw(api, "PATCH", path, body, "application/apply-patch+yaml", query)


def test_server_side_apply_lifecycle(api_client: client.ApiClient) -> None:
    apps = client.AppsV1Api(api_client)
    body = deployment("web")
    body["metadata"]["labels"] = {"keep": "1", "drop": "1"}
    assert _err(_apply, api_client, body, manager=None)[:2] == (400, "BadRequest")
    created = _apply(api_client, body)
    managers = {m["manager"]: m for m in created["metadata"]["managedFields"]}
    assert managers["ci"]["operation"] == "Apply"
    assert "f:replicas" in managers["ci"]["fieldsV1"]["f:spec"]
    rv = apps.read_namespaced_deployment("web", "default").metadata.resource_version
    assert _apply(api_client, body)["metadata"]["resourceVersion"] == rv  # a no-op keeps resourceVersion
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 5}}, field_manager="hand-edit")
    code, reason, msg = _err(_apply, api_client, body)
    assert (code, reason) == (409, "Conflict") and '"hand-edit"' in msg and ".spec.replicas" in msg
    forced = _apply(api_client, body, force=True)
    assert forced["spec"]["replicas"] == 1
    owners = {m["manager"]: m.get("fieldsV1", {}) for m in forced["metadata"]["managedFields"]}
    assert "f:replicas" not in owners.get("hand-edit", {}).get("f:spec", {})
    del body["metadata"]["labels"]["drop"]
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    updated = _apply(api_client, body)
    assert updated["metadata"]["labels"] == {"keep": "1"}  # dropped from the applied config: removed
    assert updated["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    shared = _apply(api_client, {**body, "metadata": {"name": "web", "labels": {"keep": "1"}}}, manager="other")
    assert shared["metadata"]["labels"] == {"keep": "1"}
    del body["metadata"]["labels"]
    assert _apply(api_client, body)["metadata"]["labels"] == {"keep": "1"}  # still owned by "other"


def test_dry_run_changes_nothing(api_client: client.ApiClient) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    would = _apply(api_client, deployment("web"), dry=True)
    assert would["metadata"]["name"] == "web"
    assert _err(apps.read_namespaced_deployment, "web", "default")[0] == 404
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}}, dry_run="All")
    assert _err(core.read_namespaced_config_map, "c", "default")[0] == 404
    apps.create_namespaced_deployment("default", deployment("web"))
    before = apps.read_namespaced_deployment("web", "default")
    assert _apply(api_client, deployment("web", replicas=7), dry=True, force=True)["spec"]["replicas"] == 7
    apps.delete_namespaced_deployment("web", "default", dry_run="All")
    after = apps.read_namespaced_deployment("web", "default")
    assert (after.spec.replicas, after.metadata.resource_version) == (1, before.metadata.resource_version)


def test_status_subresource(api_client: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(crd("example.com", "Widget", "widgets"))
    custom = client.CustomObjectsApi(api_client)
    args = ("example.com", "v1beta1", "default", "widgets")
    body = {
        "apiVersion": "example.com/v1beta1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"a": 1},
        "status": {"phase": "ignored"},
    }
    assert "status" not in custom.create_namespaced_custom_object(*args, body)
    out = custom.patch_namespaced_custom_object_status(*args, "w", {"status": {"phase": "Ready"}, "spec": {"a": 9}})
    assert out["status"] == {"phase": "Ready"} and out["spec"] == {"a": 1}
    main = custom.patch_namespaced_custom_object(*args, "w", {"status": {"phase": "Lost"}, "spec": {"a": 2}})
    assert main["status"] == {"phase": "Ready"} and main["spec"] == {"a": 2}


def test_pod_runner_sets_phase_and_log(fake_api: FakeApiServer, api_client: client.ApiClient) -> None:
    seen: list[str] = []

    def runner(pod: dict[str, Any]) -> tuple[str, str]:
        seen.append(pod["metadata"]["name"])
        return "Succeeded", "trained 3 models\n"

    fake_api.pod_runner = runner
    core = client.CoreV1Api(api_client)
    pod = {
        "metadata": {"name": "train"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "trainer:1"}]},
    }
    core.create_namespaced_pod("default", pod)
    assert seen == ["train"]
    assert core.read_namespaced_pod("train", "default").status.phase == "Succeeded"
    # kubernetes 36 str()s a text/plain body it parses itself, so read the raw bytes as with the real server
    log = core.read_namespaced_pod_log("train", "default", _preload_content=False).data
    assert log == b"trained 3 models\n"


# --- simulated controllers ------------------------------------------------------------------------------------
def test_deployment_becomes_available_or_backs_off(fake_api: FakeApiServer, api_client: client.ApiClient) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    fake_api.unpullable_images.add("registry.invalid/broken:1")
    apps.create_namespaced_deployment("default", deployment("web", replicas=2))
    rolling = apps.read_namespaced_deployment("web", "default")
    assert {c.type: c.status for c in rolling.status.conditions}["Available"] == "False"  # pods still starting
    web = rolled_out(apps, "default", "web")
    assert (web.status.ready_replicas, web.status.available_replicas, web.status.observed_generation) == (2, 2, 1)
    assert {c.type: c.status for c in web.status.conditions}["Available"] == "True"
    pods = core.list_namespaced_pod("default", label_selector="app=web").items
    assert len(pods) == 2 and {p.status.phase for p in pods} == {"Running"}
    apps.create_namespaced_deployment("default", deployment("bad", image="registry.invalid/broken:1"))
    bad = apps.read_namespaced_deployment("bad", "default")
    assert {c.type: c.status for c in bad.status.conditions}["Available"] == "False"
    (pod,) = core.list_namespaced_pod("default", label_selector="app=bad").items
    waiting = pod.status.container_statuses[0].state.waiting
    assert waiting.reason == "ImagePullBackOff" and "registry.invalid/broken:1" in waiting.message
    assert pod.spec.node_name == "k3s-server"


def _lb(core: client.CoreV1Api, name: str) -> str | None:
    """The address MetalLB gave a LoadBalancer Service (created on first use), or None while pending."""
    if not core.list_namespaced_service("default", field_selector=f"metadata.name={name}").items:
        spec = {"type": "LoadBalancer", "ports": [{"port": 80}]}
        core.create_namespaced_service("default", {"metadata": {"name": name}, "spec": spec})
    ingress = core.read_namespaced_service(name, "default").status.load_balancer.ingress
    return ingress[0].ip if ingress else None


def _metallb_controller(apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    _ns(core, "metallb-system")
    apps.create_namespaced_deployment(
        "metallb-system", deployment("controller", "quay.io/metallb/controller:v0.12.1", ns="metallb-system")
    )
    rolled_out(apps, "metallb-system", "controller")  # MetalLB assigns nothing before its controller runs


def test_load_balancer_ip_from_v012_configmap(api_client: client.ApiClient) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    assert _lb(core, "early") is None  # no MetalLB: pending, like a real cluster
    _metallb_controller(apps, core)
    assert _lb(core, "early") is None  # MetalLB without a pool hands out nothing
    pool = "address-pools:\n- name: default\n  protocol: layer2\n  addresses:\n  - 192.168.56.240/30\n"
    core.create_namespaced_config_map("metallb-system", {"metadata": {"name": "config"}, "data": {"config": pool}})
    assert _lb(core, "early") == "192.168.56.240"
    assert _lb(core, "second") == "192.168.56.241"
    core.delete_namespaced_service("early", "default")
    assert _lb(core, "third") == "192.168.56.240"  # released on delete, handed out first-free


def test_load_balancer_ip_from_ipaddresspool(api_client: client.ApiClient) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    ext, custom = client.ApiextensionsV1Api(api_client), client.CustomObjectsApi(api_client)
    for kind, plural in (("IPAddressPool", "ipaddresspools"), ("L2Advertisement", "l2advertisements")):
        ext.create_custom_resource_definition(crd("metallb.io", kind, plural))
    _metallb_controller(apps, core)
    custom.create_namespaced_custom_object(
        "metallb.io",
        "v1beta1",
        "metallb-system",
        "ipaddresspools",
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "pool"},
            "spec": {"addresses": ["192.168.56.250-192.168.56.251"]},
        },
    )
    assert _lb(core, "svc") is None  # a pool nobody advertises is not used
    custom.create_namespaced_custom_object(
        "metallb.io",
        "v1beta1",
        "metallb-system",
        "l2advertisements",
        {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "l2"}},
    )
    assert _lb(core, "svc") == "192.168.56.250"


def _argocd(api: client.ApiClient) -> None:
    client.ApiextensionsV1Api(api).create_custom_resource_definition(
        crd("argoproj.io", "Application", "applications", version="v1alpha1")
    )
    core = client.CoreV1Api(api)
    _ns(core, "argocd")
    sts = deployment("argocd-application-controller", "quay.io/argoproj/argocd:v3.5.1", ns="argocd")
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "argocd-application-controller"  # required by the 1.31 schema
    client.AppsV1Api(api).create_namespaced_stateful_set("argocd", sts)


def _in_git(obj: dict[str, Any]) -> str:
    """A manifest as committed for Argo CD: no namespace, so the Application's destination applies."""
    obj["metadata"].pop("namespace", None)
    return yaml.safe_dump(obj)


def _app(name: str, path: str, dest: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.example/p.git", "path": path},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": dest},
            "syncPolicy": {"automated": {"prune": True}, "syncOptions": ["CreateNamespace=true"]},
        },
    }


def test_argocd_app_of_apps_sync_and_health(fake_api: FakeApiServer, api_client: client.ApiClient) -> None:
    root = fake_api.repo_root
    (root / "infra/apps").mkdir(parents=True)
    (root / "infra/web").mkdir(parents=True)
    (root / "infra/apps/web.yaml").write_text(yaml.safe_dump(_app("web", "infra/web", "web")))
    (root / "infra/apps/kustomization.yaml").write_text("resources: [web.yaml]\n")
    web = root / "infra/web/deploy.yaml"
    web.write_text(
        _in_git(deployment("site"))
        + "---\n"
        + yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "site-config"}})
    )
    _argocd(api_client)
    custom = client.CustomObjectsApi(api_client)
    args = ("argoproj.io", "v1alpha1", "argocd", "applications")
    custom.create_namespaced_custom_object(*args, _app("root", "infra/apps", "argocd"))
    custom.create_namespaced_custom_object(*args, _app("gone", "infra/nowhere", "argocd"))
    apps = {a["metadata"]["name"]: a["status"] for a in custom.list_namespaced_custom_object(*args)["items"]}
    assert apps["root"]["sync"]["status"] == "Synced" and apps["root"]["health"]["status"] == "Healthy"
    assert apps["web"]["sync"]["status"] == "Synced" and len(apps["web"]["sync"]["revision"]) == 40
    assert apps["gone"]["sync"]["status"] == "OutOfSync" and apps["gone"]["health"]["status"] == "Missing"
    site = client.AppsV1Api(api_client).read_namespaced_deployment("site", "web")
    assert site.metadata.annotations["argocd.argoproj.io/tracking-id"] == "web:apps/Deployment:web/site"
    assert {m.manager for m in site.metadata.managed_fields} == {"argocd-controller"}
    fake_api.unpullable_images.add("registry.invalid/site:2")
    web.write_text(_in_git(deployment("site", image="registry.invalid/site:2")))
    fake_api.sync_applications()
    status = custom.get_namespaced_custom_object(*args, "web")["status"]
    # Argo CD's Deployment health: Progressing (Degraded only past the progress deadline), the pod says why
    assert status["health"]["status"] == "Progressing"
    assert status["health"]["message"].startswith("Waiting for rollout to finish: ")
    core = client.CoreV1Api(api_client)
    (pod,) = core.list_namespaced_pod("web", label_selector="app=site").items
    waiting = pod.status.container_statuses[0].state.waiting
    assert waiting.reason == "ImagePullBackOff" and "registry.invalid/site:2" in waiting.message
    assert _err(core.read_namespaced_config_map, "site-config", "web")[0] == 404  # pruned with the file's removal
