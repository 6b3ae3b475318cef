"""Everything the k3s target applies validates against the real schemas of the pinned cluster and CRDs."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from platform_core.cluster import render
from platform_core.cluster.gitops_source import render_gitops_source
from platform_core.cluster.render_base import ASSET_LABEL, MANAGED_BY
from platform_core.cluster.upstream import drop_kinds, parse_manifest
from platform_core.config import PlatformConfig, parse_config
from platform_core.config.k3s import ExposureConfig
from tests.k8s.schemas import SchemaError, served_kinds, validate, vendor_file

VENDOR_MANIFESTS = (
    "argocd/v3.5.1/install.yaml",
    "argocd/v3.2.0/install.yaml",
    "metallb/v0.12.1/namespace.yaml",
    "metallb/v0.12.1/metallb.yaml",
    "metallb/v0.15.3/metallb-native.yaml",
)
KEY = "bWVtYmVybGlzdC1rZXktZm9yLXRlc3Rz"


SEED_HOST = {"address": render.SEED_NETWORK["host_ip"], "ssh_user": "rocky"}


def config(**versions: str) -> PlatformConfig:
    return parse_config({"target": "k3s", "host": SEED_HOST, "network": render.SEED_NETWORK, "versions": versions})


@pytest.fixture(scope="module")
def seed() -> PlatformConfig:
    return render.seed_config()


def tree_objects(cfg: PlatformConfig) -> list[dict[str, Any]]:
    return [o for text in render.render_infra_tree(cfg).values() for o in parse_manifest(text)]


def cluster_objects(cfg: PlatformConfig) -> list[dict[str, Any]]:
    """What the platform applies itself (not through Argo CD)."""
    objs = render.render_argocd_pre(cfg) + render.render_argocd_post(cfg) + [render.probe_service(cfg)]
    return objs + render.render_metallb(cfg, KEY) + render_gitops_source(cfg, render.render_infra_tree(cfg))


def _containers(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for o in objs if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]]


@pytest.mark.parametrize("metallb", ["v0.12.1", "v0.15.3"])
def test_everything_rendered_validates_and_is_labelled(metallb: str) -> None:
    cfg = config(metallb=metallb)
    objs = cluster_objects(cfg) + tree_objects(cfg)
    for item in objs:
        validate(item)
        assert item["metadata"]["labels"]["app.kubernetes.io/managed-by"] == MANAGED_BY
        assert item["metadata"]["labels"][ASSET_LABEL]
    assert {o["kind"] for o in objs} >= {"Deployment", "Service", "PersistentVolumeClaim", "Application"}


def test_argocd_objects_and_root_application(seed: PlatformConfig) -> None:
    pre = render.render_argocd_pre(seed)
    assert [(o["kind"], o["metadata"]["name"]) for o in pre] == [("Namespace", "argocd"), ("Namespace", "mlops")]
    patch, root = render.render_argocd_post(seed)
    assert patch["spec"] == {"type": "ClusterIP"} and patch["metadata"]["name"] == "argocd-server"  # the default
    lan = seed.model_copy(update={"k3s": seed.k3s.model_copy(update={"exposure": ExposureConfig(argocd="lan")})})
    assert render.argocd_server_patch(lan)["spec"] == {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False}
    assert (root["metadata"]["namespace"], root["metadata"]["name"]) == ("argocd", "mlops-platform")
    assert root["spec"]["source"] == {  # the in-cluster git server: nothing cloned from outside
        "repoURL": "git://gitops-source.argocd.svc.cluster.local:9418/infra.git",
        "targetRevision": "main",
        "path": "infra/apps",
    }
    assert root["spec"]["destination"]["server"] == "https://kubernetes.default.svc"
    assert root["spec"]["syncPolicy"]["automated"] == {"prune": False, "selfHeal": True}
    probe = render.probe_service(seed)
    assert probe["metadata"] == {**probe["metadata"], "name": "mlops-platform-lb-probe", "namespace": "mlops"}
    assert probe["spec"]["type"] == "LoadBalancer" and "selector" not in probe["spec"]


def test_child_applications_follow_the_config() -> None:
    cfg = parse_config(
        {
            "target": "k3s",
            "host": SEED_HOST,
            "network": render.SEED_NETWORK,
            "k3s": {"namespace": "ml", "gitops": {"repo_url": "https://git.example/p.git", "revision": "v2"}},
        }
    )
    tree = render.render_infra_tree(cfg)
    apps = {p: parse_manifest(t)[0] for p, t in tree.items() if p.startswith("infra/apps/")}
    assert sorted(apps) == [f"infra/apps/{s}.yaml" for s in sorted(render.SERVICES)]
    for path, app in apps.items():
        svc = Path(path).stem
        validate(app)
        assert app["spec"]["source"] == {
            "repoURL": "https://git.example/p.git",
            "targetRevision": "v2",
            "path": f"infra/manifests/{svc}",
        }
        assert app["spec"]["destination"]["namespace"] == "ml"
        assert any(p.startswith(f"infra/manifests/{svc}/") for p in tree)
    namespaced = [o for o in tree_objects(cfg) if o["kind"] != "ClusterRoleBinding"]  # the run pods' rights
    assert all(o["metadata"].get("namespace") in ("ml", "argocd") for o in namespaced)
    bindings = [o for o in tree_objects(cfg) if o["kind"] == "ClusterRoleBinding"]
    assert [s["namespace"] for b in bindings for s in b["subjects"]] == ["ml"]


def test_the_in_cluster_git_source_serves_the_rendered_tree(seed: PlatformConfig) -> None:
    tree = render.render_infra_tree(seed)
    cm, server, svc = render_gitops_source(seed, tree)
    for item in (cm, server, svc):
        validate(item)
    pod = server["spec"]["template"]["spec"]
    items = next(v for v in pod["volumes"] if v["name"] == "tree")["configMap"]["items"]
    assert {i["path"]: cm["data"][i["key"]] for i in items} == tree  # every file, at its repository path
    assert pod["containers"][0]["image"] == seed.versions.platform_image
    assert "git daemon" in pod["containers"][0]["command"][-1] and svc["spec"]["type"] == "ClusterIP"
    changed = render_gitops_source(seed, {**tree, "infra/apps/x.yaml": "---\n"})[1]
    assert changed["spec"]["template"]["metadata"] != server["spec"]["template"]["metadata"]  # a new tree restarts
    repo = parse_config(
        {
            "target": "k3s",
            "host": SEED_HOST,
            "network": render.SEED_NETWORK,
            "k3s": {"gitops": {"repo_url": "https://git.example/p.git"}},
        }
    )
    assert not repo.k3s.gitops.in_cluster  # auto: a repo_url given means that repository


def test_containers_are_pinned_probed_bounded_and_non_root(seed: PlatformConfig) -> None:
    containers = _containers(tree_objects(seed))
    orchestrator = {"dagster", "dagster-daemon", "dagster-code-platform", "dagster-code-ml"}
    assert {c["name"] for c in containers} == {
        "seaweedfs",
        "postgres",
        "mlflow",
        "data-api",
        "inference",
    } | orchestrator
    for c in containers:
        image = c["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
        assert c["readinessProbe"] and c["livenessProbe"], c["name"]
        assert set(c["resources"]) == {"requests", "limits"}, c["name"]
        assert c["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["runAsUser"] > 0
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
    images = {c["name"]: c["image"] for c in containers}
    assert images == {
        "seaweedfs": "chrislusf/seaweedfs:4.48",
        "postgres": "postgres:13-alpine",
        "mlflow": "ghcr.io/example/mlops-platform:0.1.0",
        "data-api": "ghcr.io/example/mlops-platform:0.1.0",
        "inference": "ghcr.io/example/mlops-platform:0.1.0",
    } | dict.fromkeys(orchestrator, "ghcr.io/example/mlops-platform:0.1.0")
    other = config(postgres_image="postgres:16.4-alpine", platform_image="registry.local:5000/mlops:1.2.3")
    changed = {c["name"]: c["image"] for c in _containers(tree_objects(other))}
    assert changed["postgres"] == "postgres:16.4-alpine" and changed["inference"] == "registry.local:5000/mlops:1.2.3"


def test_service_commands_and_secrets(seed: PlatformConfig) -> None:
    by_name = {c["name"]: c for c in _containers(tree_objects(seed))}
    weed = by_name["seaweedfs"]
    assert weed["command"] == ["weed"] and weed["args"][0] == "server"
    assert {"-s3", "-s3.config=/etc/seaweedfs/s3.json", "-filer", "-s3.port=8333"} <= set(weed["args"])
    mlflow = by_name["mlflow"]
    assert mlflow["command"][:2] == ["mlflow", "server"] and "--serve-artifacts" in mlflow["command"]
    assert "--artifacts-destination=s3://mlflow-artifacts" in mlflow["command"]
    assert {"name": "MLFLOW_S3_ENDPOINT_URL", "value": "http://seaweedfs.mlops.svc.cluster.local:8333"} in mlflow["env"]
    assert mlflow["envFrom"] == [{"secretRef": {"name": "mlflow-env"}}]
    data_api = by_name["data-api"]
    assert data_api["command"][:3] == ["python", "-m", "ml_assets.data.offline_api"]
    assert {"--host=0.0.0.0", "--port=8001", "--admin-token-env=DATA_API_ADMIN_TOKEN"} <= set(data_api["command"])
    token_ref = {"secretKeyRef": {"name": "data-api-admin", "key": "token"}}
    assert data_api["env"] == [{"name": "DATA_API_ADMIN_TOKEN", "valueFrom": token_ref}]
    inference = by_name["inference"]
    assert inference["command"] == [
        *("python", "-m", "ml_assets.serving"),
        *("--host=0.0.0.0", "--port=8000", "--settings-from-env"),
    ]
    inf_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in inference["env"]}
    for key in ("SERVING_S3_ACCESS_KEY", "SERVING_S3_SECRET_KEY"):
        assert inf_env[key] == {"secretKeyRef": {"name": "inference-env", "key": key}}
    assert inf_env["SERVING_TRACKING_URI"] == "http://mlflow.mlops.svc.cluster.local:5000"
    assert inf_env["SERVING_S3_ENDPOINT"] == "http://seaweedfs.mlops.svc.cluster.local:8333"
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in tree_objects(seed) if o["kind"] == "Deployment"
    }
    assert "envFrom" not in inference and "volumes" not in pods["inference"]  # no config/state-dir mounts any more
    pg_env = {e["name"]: e for e in by_name["postgres"]["env"]}
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "postgres-admin"
    assert "pg_isready" in by_name["postgres"]["readinessProbe"]["exec"]["command"]
    services = {o["metadata"]["name"]: o["spec"] for o in tree_objects(seed) if o["kind"] == "Service"}
    ports = {name: sorted(p["port"] for p in spec["ports"]) for name, spec in services.items()}
    assert ports == {
        "seaweedfs": [8333],  # S3 only: the filer answers without credentials
        "postgres": [5432],
        "mlflow": [5000],
        "data-api": [8001],
        "inference": [8000],
        "dagster": [3000],
        "dagster-code-platform": [4000],
        "dagster-code-ml": [4000],
    }
    # k3s.exposure's defaults: only the S3 endpoint and the inference API on the LAN, at their pool IPs only
    on_lan = {name for name, spec in services.items() if spec["type"] == "LoadBalancer"}
    assert on_lan == {"seaweedfs", "inference"}
    assert all(services[name]["allocateLoadBalancerNodePorts"] is False for name in on_lan)
    assert {spec["type"] for name, spec in services.items() if name not in on_lan} == {"ClusterIP"}
    # No credential in any generated file: only references to Secrets the platform creates.
    text = "\n".join(render.render_infra_tree(seed).values())
    instance_file = "infra/manifests/dagster/configmap-dagster-instance.yaml"
    text = "\n".join(t for p, t in render.render_infra_tree(seed).items() if p != instance_file)
    assert "stringData" not in text and "kind: Secret" not in text and "password:" not in text
    instance = next(o for o in tree_objects(seed) if o["metadata"]["name"] == "dagster-instance")
    written = yaml.safe_load(instance["data"]["dagster.yaml"])
    for section in ("run_storage", "event_log_storage", "schedule_storage"):
        # the instance's password, from the environment
        assert written[section]["config"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}


def test_vendor_manifests_validate_after_dropping_unserved_kinds() -> None:
    dropped_all = []
    for rel in VENDOR_MANIFESTS:
        objs = parse_manifest(vendor_file(rel).read_text(encoding="utf-8"))
        kept, dropped = drop_kinds(objs, served_kinds(objs))
        dropped_all += dropped
        for item in kept:
            validate(item)
    assert dropped_all == [
        "PodSecurityPolicy/controller (policy/v1beta1): not served by this cluster",
        "PodSecurityPolicy/speaker (policy/v1beta1): not served by this cluster",
    ]


def test_committed_infra_equals_the_renderer(seed: PlatformConfig) -> None:
    assert render.diff_tree(render.render_infra_tree(seed), render.REPO_ROOT) == []
    assert render.render_infra_tree(seed) == render.render_infra_tree(render.seed_config())


def test_render_cli_writes_checks_and_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = ["--root", str(tmp_path)]
    assert render.main(["--check", *root]) == 1
    assert "infra/apps/mlflow.yaml: missing" in capsys.readouterr().out
    assert render.main(root) == 0
    assert render.main(root) == 0 and capsys.readouterr().out.endswith("no change\n")
    assert render.main(["--check", *root]) == 0
    edited = tmp_path / "infra/manifests/postgres/service-postgres.yaml"
    edited.write_text(edited.read_text() + "# hand edit\n")
    (tmp_path / "infra/apps/old.yaml").write_text("{}\n")
    capsys.readouterr()
    assert render.main(["--check", *root]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "infra/apps/old.yaml: not generated (stale)",
        "infra/manifests/postgres/service-postgres.yaml: differs",
    ]
    local = tmp_path / "platform.yaml"
    local.write_text("target: local\n")
    assert render.main(["--config", str(local), *root]) == 2
    assert "target: must be k3s" in capsys.readouterr().err


def test_the_validator_refuses_bad_objects(seed: PlatformConfig) -> None:
    """The checks above mean something: typos and unknown kinds fail with kind/name/path."""
    deployment = next(
        o for o in tree_objects(seed) if o["metadata"]["name"] == "data-api" and o["kind"] == "Deployment"
    )
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(
        SchemaError, match=r"^Deployment/data-api: spec\.template\.spec\.containers\.0\.imagePullPolicy: "
    ):
        validate(typo)
    app = copy.deepcopy(render.root_application(seed))
    app["spec"]["syncPolicy"]["automated"]["selfheal"] = True
    with pytest.raises(SchemaError, match=r"Application/mlops-platform: spec\.syncPolicy\.automated: .*'selfheal'"):
        validate(app)
    pool = copy.deepcopy(render.render_metallb(config(metallb="v0.15.3"))[0])
    del pool["metadata"]["namespace"]
    with pytest.raises(SchemaError, match=r"IPAddressPool/default: metadata\.namespace: required"):
        validate(pool)
    pool["metadata"]["namespace"] = "metallb-system"
    pool["spec"]["addresses"] = "10.0.0.1-10.0.0.2"
    with pytest.raises(SchemaError, match=r"IPAddressPool/default: spec\.addresses: .* is not of type 'array'"):
        validate(pool)
    with pytest.raises(SchemaError, match=r"Widget/w: unknown kind Widget \(example\.com/v1\)"):
        validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    psp = next(
        o for o in parse_manifest(vendor_file(VENDOR_MANIFESTS[3]).read_text()) if o["kind"] == "PodSecurityPolicy"
    )
    with pytest.raises(SchemaError, match="unknown kind PodSecurityPolicy"):
        validate(psp)


def test_mlflow_runs_basic_auth_with_its_users_written_from_secrets(seed: PlatformConfig, tmp_path: Path) -> None:
    """MLflow's auth app on the cluster: the ini (no secret) from a ConfigMap, both users written into the auth
    store by an init container from the Secret mlflow-users, which the server container never reads."""
    from platform_core.cluster.secrets import render_secrets
    from platform_core.services import mlflow_auth
    from platform_core.state import StateDir

    objs = tree_objects(seed)
    [deployment] = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "mlflow"]
    pod = deployment["spec"]["template"]["spec"]
    [server] = pod["containers"]
    assert "--app-name=basic-auth" in server["command"]
    server_env = {e["name"]: e.get("value") for e in server["env"]}
    assert server_env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow-auth/mlflow-auth.ini"
    assert all("mlflow-users" not in str(ref) for ref in [server.get("envFrom"), server["env"]])
    [init] = pod["initContainers"]
    assert init["command"] == ["python", "-m", "platform_core.services.mlflow_auth"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in init["env"] if "valueFrom" in e}
    assert refs == {
        "PGPASSWORD": {"name": "mlflow-env", "key": "PGPASSWORD"},
        "MLFLOW_WRITER_PASSWORD": {"name": "mlflow-users", "key": "MLFLOW_WRITER_PASSWORD"},
        "MLFLOW_READER_PASSWORD": {"name": "mlflow-users", "key": "MLFLOW_READER_PASSWORD"},
    }
    assert (
        init["securityContext"]["runAsNonRoot"] is True and init["securityContext"]["allowPrivilegeEscalation"] is False
    )
    assert set(init["resources"]) == {"requests", "limits"}
    [configmap] = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mlflow-auth"]
    ini = tmp_path / "mlflow-auth.ini"
    ini.write_text(configmap["data"]["mlflow-auth.ini"])
    assert (
        mlflow_auth.ini_database_uri(str(ini))
        == "postgresql+psycopg2://mlflow@postgres.mlops.svc.cluster.local:5432/mlflow"
    )
    assert {"configMap": {"name": "mlflow-auth"}, "name": "auth-config"} in pod["volumes"]
    # the Secrets the platform applies: both passwords for the init container, the reader for inference
    credentials = StateDir(tmp_path / "state").ensure().credentials
    secrets = {s["metadata"]["name"]: s for s in render_secrets(seed, credentials, {}, "")}
    for secret in secrets.values():
        validate(secret)
    users = {k: base64.b64decode(v).decode() for k, v in secrets["mlflow-users"]["data"].items()}
    assert users == {
        "MLFLOW_WRITER_PASSWORD": credentials.mlflow_password("platform-admin"),
        "MLFLOW_READER_PASSWORD": credentials.mlflow_password("reader"),
    }
    inference = {k: base64.b64decode(v).decode() for k, v in secrets["inference-env"]["data"].items()}
    assert inference["MLFLOW_TRACKING_USERNAME"] == "reader"
    assert inference["MLFLOW_TRACKING_PASSWORD"] == users["MLFLOW_READER_PASSWORD"]
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in secrets["mlflow-env"]["data"]
    assert "MLFLOW_WRITER_PASSWORD" not in secrets["mlflow-env"]["data"]
