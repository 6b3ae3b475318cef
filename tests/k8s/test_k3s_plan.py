"""`platformctl plan` for the k3s target on the scripted VM and the API fake: every asset of both code locations
answers, and a plan writes nothing — no host change, no object (not even a dry run is stored), no state directory,
no credential."""

from __future__ import annotations

import pytest

from platform_core.cluster.steps import STEPS
from platform_core.state import load_platform
from platformctl.plan import PlanError, known_assets, plan
from tests.k8s.scenario_k3s import Platform


def _plan(p: Platform, selection: list[str] | None = None) -> list[str]:
    cfg, state = load_platform(p.config)
    return plan(cfg, state, p.config, selection)


def test_plan_of_a_fresh_vm_answers_for_every_asset_and_writes_nothing(platform: Platform) -> None:
    objects, version = dict(platform.fake.store.objects), platform.fake.store.rv
    lines = _plan(platform)
    answered = {line.split(": ", 1)[0] for line in lines}
    assert set(known_assets(platform.config)) <= answered
    assert "host commands: run (sudo): dnf install -y iscsi-initiator-utils nfs-utils bind-utils" in lines
    assert "buckets/datasets: would create s3://datasets (once seaweedfs is up)" in lines
    assert "trained_model: would run once seaweedfs and mlflow_server are up" in lines
    state = platform.state_dir
    assert f"state: would create the state directory {state}" in lines
    secrets = state / "secrets" / "credentials.json"
    assert f"state: would generate the credential tokens/metallb-memberlist in {secrets}" in lines
    assert platform.host.mutations == [] and not state.exists()
    assert platform.fake.store.objects == objects and platform.fake.store.rv == version


def test_plan_of_an_installed_cluster_is_no_change_for_every_step(platform: Platform) -> None:
    platform.run()
    platform.host.mutations.clear()
    credentials = (platform.state_dir / "secrets" / "credentials.json").read_bytes()
    answers = dict(line.split(": ", 1) for line in _plan(platform, [*STEPS, "postgres", "buckets/reports"]))
    assert {asset: answers[asset] for asset in STEPS} == dict.fromkeys(STEPS, "no change")
    assert answers["postgres"] == "no change"  # its Application is Synced/Healthy and its address recorded
    # the fake serves no S3 at the recorded LoadBalancer address: the plan says what it waits for, it does not hang
    assert answers["buckets/reports"] == "would create s3://reports (once seaweedfs is up)"
    assert set(answers) == {*STEPS, "postgres", "buckets/reports"}
    assert platform.host.mutations == []
    assert (platform.state_dir / "secrets" / "credentials.json").read_bytes() == credentials


def test_a_selection_naming_no_asset_is_refused_before_anything_runs(platform: Platform) -> None:
    with pytest.raises(PlanError, match=r"^--select: no asset named metalb \(known: host, k3s_cluster, "):
        _plan(platform, ["metalb", "argocd"])
    assert platform.host.mutations == [] and not platform.state_dir.exists()


def test_every_asset_of_both_locations_has_a_decision_in_the_k3s_target(platform: Platform) -> None:
    from platform_core.decisions import decision_of

    assets = known_assets(platform.config)
    assert {*STEPS, "postgres", "mlflow_server", "data_api", "inference_service", "trained_model"} <= set(assets)
    assert [asset for asset in assets if decision_of(asset, "k3s") is None] == []
    # the cluster's own assets decide through their reconcile step, not the local target's supervisor
    assert decision_of("postgres", "k3s") is not decision_of("postgres", "local")
