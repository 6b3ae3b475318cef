"""The platform's code in a pod of the in-cluster orchestrator (PLATFORM_IN_CLUSTER=true, as render_dagster sets
it): credentials from the mounted Secret and never generated there, services at their cluster DNS names, the
Kubernetes API through the pod's service account, and no way to the host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from platform_core.cluster.kube_error import KubeError
from platform_core.cluster.render import SEED_NETWORK
from platform_core.cluster.render_dagster import platform_env
from platform_core.cluster.resource import ClusterResource
from platform_core.config import ConfigError, parse_config
from platform_core.host.executor import HostError
from platform_core.resource import PlatformResource
from platform_core.settings import IN_CLUSTER_ENV
from platform_core.state import StateDir

K3S = {"target": "k3s", "host": {"address": "10.43.100.94", "ssh_user": "rocky"}, "network": SEED_NETWORK}


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pod's view: the Secret's files under a stand-in for /etc/platform, the state directory a volume."""
    secret = tmp_path / "etc-platform"
    secret.mkdir()
    (secret / "platform.yaml").write_text(yaml.safe_dump(K3S))
    (secret / "credentials.json").write_text(json.dumps({"postgres": {"mlflow": "from-the-workstation"}}))
    secret.chmod(0o500)  # a Secret volume is read-only
    monkeypatch.setattr("platform_core.state.CLUSTER_SECRET_DIR", secret)
    monkeypatch.setenv(IN_CLUSTER_ENV, "true")
    return secret


def test_the_rendered_pods_switch_the_mode_on() -> None:
    assert platform_env(parse_config(K3S))[IN_CLUSTER_ENV] == "true"


def test_credentials_come_from_the_secret_and_are_never_generated_in_a_pod(pod: Path, tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state").ensure()
    assert state.credentials.postgres_password("mlflow") == "from-the-workstation"
    with pytest.raises(ConfigError, match=r"postgres/dagster: not there; `platformctl up` on the workstation"):
        state.credentials.postgres_password("dagster")
    assert not state.secrets_file.exists()  # nothing written beside the state


def test_services_answer_at_their_cluster_dns_names(pod: Path, tmp_path: Path) -> None:
    resource = PlatformResource(config_path=str(pod / "platform.yaml"), state_dir=str(tmp_path / "state"))
    assert resource.address("postgres", 55432) == ("postgres.mlops.svc.cluster.local", 5432)
    assert resource.address("mlflow_server", 5000) == ("mlflow.mlops.svc.cluster.local", 5000)
    assert resource.address("dagster", 3000) == ("dagster.mlops.svc.cluster.local", 3000)


def test_the_host_is_only_reached_from_the_workstation(pod: Path, tmp_path: Path) -> None:
    cluster = ClusterResource(config_path=str(pod / "platform.yaml"), state_dir=str(tmp_path / "state"))
    with pytest.raises(HostError, match=r"10\.43\.100\.94: the host is reached from the workstation only"):
        cluster.executor.run(["true"])


def test_the_api_is_the_pods_service_account_not_a_kubeconfig(
    pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cluster = ClusterResource(config_path=str(pod / "platform.yaml"), state_dir=str(tmp_path / "state"))
    assert cluster.installed and not cluster.kubeconfig.exists()  # the drift sensor looks at the cluster
    with pytest.raises(KubeError, match="in-cluster Kubernetes config: Service host/port is not set"):
        cluster.kube()
