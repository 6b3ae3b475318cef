"""Pristine upstream manifests for the k3s tests. They are never in this repository (only what this project
writes is); a test finds them, in order, in $MLOPS_VENDOR_DIR, in the shared folder beside this checkout
(../shared/vendor), in /work/shared/vendor, or downloads them once from their official release URLs, verified
against the sha256 pinned in infra/upstream.yaml, into ~/.cache. Without any of these the test is skipped,
saying why, rather than failing on the machine's network."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest

from platform_core.cluster.upstream import UpstreamError, UpstreamPins, requests_fetch, sha256_hex

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlops-platform" / "vendor"


def _candidates() -> list[Path]:
    found = [Path(os.environ["MLOPS_VENDOR_DIR"])] if os.environ.get("MLOPS_VENDOR_DIR") else []
    return [*found, REPO.parent / "shared" / "vendor", Path("/work/shared/vendor"), CACHE]


@cache
def _download(rel: str) -> Path | None:
    component, version, name = rel.split("/", 2)
    try:
        pinned = next(f for f in UpstreamPins.load().pin(component, version).files if f.name == name)
        data = requests_fetch(pinned.url, timeout=30)
    except (UpstreamError, StopIteration, OSError) as err:
        print(f"vendor: cannot download {rel}: {err}")
        return None
    if sha256_hex(data) != pinned.sha256:
        return None
    target = CACHE / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def vendor_file(rel: str) -> Path:
    """`<component>/<version>/<file>`, e.g. `argocd/v3.5.1/install.yaml`."""
    for root in _candidates():
        if (root / rel).is_file():
            return root / rel
    downloaded = _download(rel)
    if downloaded is None:
        pytest.skip(f"upstream manifest {rel}: not in {', '.join(map(str, _candidates()))} and not downloadable")
    return downloaded


def vendor_dir(component: str, version: str, names: list[str]) -> Path:
    """The folder holding these files of one pinned version (downloading what is missing)."""
    paths = [vendor_file(f"{component}/{version}/{name}") for name in names]
    return paths[0].parent
