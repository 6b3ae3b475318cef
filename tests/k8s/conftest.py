"""Fixtures for the k3s target's tests: a fresh Kubernetes API fake per test and a kubeconfig pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.k8s.fake_apiserver import FakeApiServer


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
