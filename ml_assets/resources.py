"""Resources of the ML location: the platform's (chosen by target in platform_core/targets.py) plus
the ML ones."""

from pathlib import Path

from ml_assets.data.resources import DatasetsResource
from ml_assets.data.service import DataApiResource
from ml_assets.data.source import source_for
from ml_assets.data_drift.reports import ReportsResource
from ml_assets.serving.resource import InferenceResource
from ml_assets.step_runner import K8sPipesStepRunner, LocalStepRunner, StepRunner
from platform_core.config import PlatformConfig
from platform_core.state import StateDir
from platform_core.targets import build_resources


def build_ml_resources(cfg: PlatformConfig, state: StateDir, config_path: Path) -> dict[str, object]:
    where = {"config_path": str(config_path), "state_dir": str(state.root)}
    return {
        **build_resources(cfg, state, config_path),
        "data_api_resource": DataApiResource(**where),
        "batch_source": source_for(cfg, where),
        "datasets": DatasetsResource(**where),
        "inference_resource": InferenceResource(**where),
        "reports": ReportsResource(**where),
        "step_runner": step_runner(cfg, where),
    }


def step_runner(cfg: PlatformConfig, where: dict[str, str]) -> StepRunner:
    """Where the batch, training and drift steps run: each in a pod through dagster-k8s Pipes in the cluster,
    else in this process."""
    config_path, state_dir = where["config_path"], where["state_dir"]
    if cfg.target == "k3s":
        return K8sPipesStepRunner(config_path=config_path, state_dir=state_dir)
    return LocalStepRunner(config_path=config_path, state_dir=state_dir)
