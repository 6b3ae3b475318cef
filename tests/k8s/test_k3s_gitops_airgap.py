"""The k3s target's GitOps source and air-gap bundle on the API fake, whose VM has no egress: a config change
reaches Argo CD through the in-cluster git server, a repository outside the cluster cannot be cloned, a repo
source not pushed is named, and a bundle that lacks or mangles an image is refused before any import."""

from __future__ import annotations

from pathlib import Path

from platform_core.cluster.render_base import application_ref
from tests.k8s.scenario_k3s import Platform, changes, checks, step_failures


def test_a_config_change_reaches_argo_cd_through_the_in_cluster_source(platform: Platform) -> None:
    platform.run()
    platform.write_config(namespace="ml-prod")
    result = platform.run(["gitops"])
    change = changes(result)["gitops"]
    assert "configured ConfigMap argocd/gitops-source" in change
    assert "configured Deployment argocd/gitops-source" in change  # the server restarts on the new tree
    assert "Argo CD refreshed dagster, data-api, inference, mlflow, mlops-platform, postgres, seaweedfs" in change
    assert checks(result)["infra_matches_config"][0]
    app = platform.cluster().kube().get(application_ref("postgres"))
    assert app["spec"]["destination"]["namespace"] == "ml-prod"
    assert changes(platform.run(["gitops"]))["gitops"] == "no change"


def test_a_config_change_not_pushed_to_a_repo_source_is_named(platform: Platform) -> None:
    platform.write_config(gitops={"path": "infra/apps", "source": "repo"})
    platform.push_tree()
    platform.fake.egress = True  # the repository is on a reachable git server
    platform.run(raise_on_error=False)  # this checkout's infra/ is the seed's (in-cluster source): named too
    platform.write_config(namespace="ml-prod")  # Argo CD would still deploy what git says: namespace mlops
    result = platform.run(["gitops"], raise_on_error=False)
    passed, description = checks(result)["infra_matches_config"]
    assert not passed
    assert "infra/apps/" in description and "python -m platform_core.cluster.render" in description


def test_air_gap_refuses_a_repository_outside_the_cluster(platform: Platform) -> None:
    """The seed's VM reached no GitHub: Argo CD cannot clone repo_url, and the Applications say so."""
    platform.write_config(gitops={"path": "infra/apps", "source": "repo"})
    result = platform.run(raise_on_error=False)
    passed, description = checks(result)["applications_synced_healthy"]
    assert not passed
    assert "mlops-platform OutOfSync/Missing" in description
    app = platform.cluster().kube().get(application_ref("mlops-platform"))
    message = app["status"]["conditions"][0]["message"]
    assert "failed to list refs" in message and "lookup github.com: no such host" in message
    assert platform.fake.clones == [] and platform.fake.pulls == []


def test_a_bundle_missing_an_image_is_refused_before_any_import(platform: Platform, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "images" / "quay.io_argoproj_argocd_v3.5.1.tar").unlink()
    tampered = bundle / "images" / "docker.io_library_postgres_13-alpine.tar"
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    failure = step_failures(platform.run(raise_on_error=False))["cluster_images"]
    (line,) = {line for line in failure.splitlines() if "offline bundle" in line}  # one line names every file
    assert "images/quay.io_argoproj_argocd_v3.5.1.tar missing (docker save -o" in line
    assert "images/docker.io_library_postgres_13-alpine.tar sha256 " in line
    imports = [m for m in platform.host.mutations if "images import" in m]
    assert all(m.endswith("/platform-image.tar") for m in imports)  # platform_image is another asset
