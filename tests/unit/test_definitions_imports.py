"""What loading a code location's definitions must not import: the daemon and the UI reload them, and each of these
costs a tenth of a second or more (benchmarks/definitions_load.py times the whole load)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pandas", "mlflow", "sklearn", "scipy.stats", "kubernetes", "dagster_k8s")


@pytest.mark.parametrize("location", ["platform_assets.definitions", "ml_assets.definitions"])
def test_loading_definitions_leaves_the_heavy_libraries_to_the_code_that_runs(location: str) -> None:
    probe = f"import sys, {location}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"{location} imports {loaded} at load"
