"""Fixtures for the k3s target's tests: a fresh Kubernetes API fake per test and a kubeconfig pointing at it; a
whole scenario platform (fake API, scripted VM, platform.yaml), fresh or after one run of the cluster graph."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.scenario_k3s import Platform, make_platform


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[FakeApiServer]:
    with FakeApiServer(repo_root=tmp_path / "repo") as fake:
        yield fake


@pytest.fixture
def kubeconfig(fake_api: FakeApiServer, tmp_path: Path) -> Path:
    return fake_api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """The real kubernetes client, configured from the kubeconfig as a user's tools would be."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    plat = make_platform(tmp_path, monkeypatch)
    yield plat
    plat.fake.stop()


@pytest.fixture
def installed(platform: Platform) -> Platform:
    """The platform after one successful run of the whole cluster graph."""
    platform.run()
    platform.host.mutations.clear()
    return platform
