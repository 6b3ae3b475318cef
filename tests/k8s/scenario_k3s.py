"""The k3s target end to end on the Kubernetes API fake: a scripted Rocky 9 VM installs K3s air-gapped from a
tmp bundle, K3s "answers" with the fake's kubeconfig, and the Dagster graph runs on both.

The storage function checks (SQL per role, S3 round trips, MLflow) need real services behind the LoadBalancer
addresses, which the fake does not run: `CLUSTER_SELECTION` is the cluster part of the graph without them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from platform_assets.definitions import build_definitions
from platform_assets.defs.cluster.assets import CLUSTER_CHECKS
from platform_assets.defs.cluster.cluster_drift import cluster_drift_sensor
from platform_core.cluster.bundle import required_images
from platform_core.cluster.render import render_infra_tree, write_tree
from platform_core.cluster.resource import ClusterResource
from platform_core.config import load_config
from platform_core.config.k3s import GitOpsConfig
from tests import containerd
from tests.hosts import ScriptedHost, bundle_images, k3s_vm, offline_bundle
from tests.k8s.fake_apiserver import FakeApiServer

REPO = Path(__file__).resolve().parents[2]
# In k3s-airgap-images-amd64 (the release's k3s-images.txt): what the fake's K3s runs itself.
K3S_IMAGES = {"docker.io/rancher/mirrored-coredns-coredns:1.12.0"}
K3S_VERSION = "v1.31.4+k3s1"
CLUSTER_ASSETS = [
    "host",
    "k3s_cluster",
    "metallb",
    "argocd",
    "cluster_secrets",
    "cluster_images",
    "platform_image",
    "gitops",
    "postgres",
    "seaweedfs",
    "mlflow_server",
]
# host_ip_on_host is left out: the fake only listens on 127.0.0.1, so host_ip is loopback, and host_facts
# (rightly, for a real VM) never counts loopback as an address of the host. `test_host_ip_check` covers it.
CHECKS = list(CLUSTER_CHECKS)  # host_ip_on_host (defs/host) is not among them
NETWORK = {
    "host_ip": "127.0.0.1",  # the fake's address: fetch_kubeconfig points the kubeconfig at host_ip
    "host_subnet": "127.0.0.0/24",
    "pod_cidr": "10.44.0.0/16",
    "service_cidr": "10.45.0.0/16",
    "cluster_dns": "10.45.0.10",
    "metallb_pool": "127.0.0.200-127.0.0.220",
}


def cluster_selection(assets: list[str] = CLUSTER_ASSETS, extra_checks: list[Any] = []) -> dg.AssetSelection:  # noqa: B006
    """The assets and their cluster checks (plus ``extra_checks``), without the storage function checks."""
    keys = [dg.AssetKey(a) for a in assets]
    checks = [key for c in [*CHECKS, *extra_checks] for key in c.check_keys if key.asset_key in keys]
    return dg.AssetSelection.assets(*keys).without_checks() | dg.AssetSelection.checks(*checks)


@dataclass
class Platform:
    """One scenario's world: config file, fake API server, scripted VM, Dagster instance."""

    tmp: Path
    fake: FakeApiServer
    host: ScriptedHost
    config: Path
    instance: dg.DagsterInstance
    doc: dict[str, Any] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    def write_config(self, network: dict[str, str] | None = None, **k3s: Any) -> None:
        """Rewrite platform.yaml (network.* and k3s.* overrides); the mtime moves on so cached configs are re-read."""
        self.doc["network"] |= network or {}
        self.doc["k3s"] |= k3s
        self.config.write_text(yaml.safe_dump(self.doc, sort_keys=False))
        stamp = self.config.stat().st_mtime_ns + 1_000_000_000
        os.utime(self.config, ns=(stamp, stamp))

    def push_tree(self) -> Path:
        """gitops.source repo: render this config's infra/ into a repository the fake's Argo CD clones at the
        configured repo_url, as a user renders and pushes it."""
        cfg = load_config(self.config)
        root = self.tmp / "pushed"
        write_tree(render_infra_tree(cfg), root)
        self.fake.git_repos[str(cfg.k3s.gitops.repo_url)] = root
        return root

    def defs(self) -> dg.Definitions:
        return build_definitions(self.config)

    def run(
        self,
        assets: list[str] = CLUSTER_ASSETS,
        raise_on_error: bool = True,
        extra_checks: list[Any] = [],  # noqa: B006
    ) -> dg.ExecuteInProcessResult:
        job = dg.define_asset_job("scenario", cluster_selection(assets, extra_checks))
        defs = dg.Definitions.merge(self.defs(), dg.Definitions(jobs=[job]))
        job = defs.resolve_job_def("scenario")
        return job.execute_in_process(instance=self.instance, raise_on_error=raise_on_error)

    def cluster(self) -> ClusterResource:
        """The cluster resource; in plan mode inside `state.planning()`, the platform's one plan switch."""
        return ClusterResource(config_path=str(self.config), state_dir=str(self.state_dir))

    def sense(self, cursor: str | None = None) -> tuple[str, str | None]:
        """One evaluation of the drift sensor: its skip message and the new cursor."""
        defs = self.defs()
        context = dg.build_sensor_context(
            instance=self.instance, cursor=cursor, definitions=defs, resources=defs.resources
        )
        result = cluster_drift_sensor(context)
        return str(result.skip_message), context.cursor

    def alerts(self) -> list[dict[str, Any]]:
        path = self.state_dir / "alerts.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def changes(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """asset -> the "change" its materialization reported."""
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        assert mat is not None
        out[mat.asset_key.to_user_string()] = str(mat.metadata["change"].value)
    return out


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat is not None and mat.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def checks(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, str]]:
    """check name -> (passed, description)."""
    return {e.check_name: (e.passed, str(e.description)) for e in result.get_asset_check_evaluations()}


def platform_doc(tmp: Path, bundle: Path, metallb: str = "v0.12.1") -> dict[str, Any]:
    return {
        "target": "k3s",
        "state_dir": str(tmp / "state"),
        "host": {"address": "127.0.0.1", "ssh_user": "rocky"},
        "network": dict(NETWORK),
        "versions": {"k3s": K3S_VERSION, "metallb": metallb, "argocd": "v3.5.1"},
        "k3s": {
            "install": "airgap",
            "offline_bundle_dir": str(bundle),
            "gitops": {"path": "infra/apps"},
            "rollout_timeout_seconds": 20,  # the fake rolls out in 0.3 s: a wait that lasts is a failure
        },
    }


def make_platform(tmp: Path, monkeypatch: pytest.MonkeyPatch, metallb: str = "v0.12.1") -> Platform:
    """A fresh VM, a fresh (started) fake API server and a k3s platform.yaml under ``tmp``; stop ``.fake`` after."""
    monkeypatch.delenv("PLATFORM_STATE_DIR", raising=False)
    bundle = offline_bundle(tmp / "bundle", K3S_VERSION, {"metallb": [metallb], "argocd": ["v3.5.1"]})
    vm: list[ScriptedHost] = []
    # The VM has no egress: the kubelet runs only what containerd holds (K3s's own images came with its air-gap
    # tarball at start), and Argo CD clones only what the cluster serves.
    fake = FakeApiServer(
        service_cidr=NETWORK["service_cidr"],
        cluster_dns=NETWORK["cluster_dns"],
        repo_root=REPO,
        repo_url=str(GitOpsConfig().repo_url),
        egress=False,
        node_images=lambda: K3S_IMAGES | (containerd.present(vm[0]) if vm else set()),
    )
    fake.start()
    host = k3s_vm(NETWORK["host_ip"], fake.write_kubeconfig(tmp / "k3s.yaml").read_bytes(), K3S_VERSION)
    monkeypatch.setattr("platform_core.cluster.resource.executor_for", lambda cfg, state_dir: host)
    doc = platform_doc(tmp, bundle, metallb)
    plat = Platform(tmp, fake, host, tmp / "platform.yaml", dg.DagsterInstance.ephemeral(), doc)
    plat.write_config()
    images = [i.ref for i in required_images(load_config(plat.config)) if not i.platform]
    bundle_images(bundle, images)
    for ref in images:
        containerd.absent(host, ref)  # a fresh VM's containerd
    vm.append(host)
    return plat


def step_failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """step -> its error message and those of its causes (the user code's error is a cause of Dagster's)."""
    out = {}
    for event in result.all_events:
        if event.is_step_failure and event.step_key:
            error, lines = event.step_failure_data.error, []
            while error is not None:
                lines.append(error.message.strip())
                error = error.cause
            out[event.step_key] = "\n".join(lines)
    return out
