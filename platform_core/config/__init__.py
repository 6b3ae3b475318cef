"""Typed model of ``platform.yaml``; ``load_config`` is the only way in."""

from platform_core.config.base import ConfigError
from platform_core.config.k3s import GitOpsConfig, K3sConfig, TrainingPodConfig
from platform_core.config.loading import load_config, parse_config
from platform_core.config.models import (
    AlertsConfig,
    BucketConfig,
    DataApiService,
    DatabaseConfig,
    FreshnessConfig,
    HostConfig,
    InferenceService,
    MlConfig,
    MlflowConfig,
    MlflowService,
    PlatformConfig,
    PostgresService,
    SeaweedService,
    ServicesConfig,
    VersionsConfig,
)
from platform_core.config.network import NetworkConfig

__all__ = [
    "AlertsConfig",
    "BucketConfig",
    "ConfigError",
    "DataApiService",
    "DatabaseConfig",
    "FreshnessConfig",
    "GitOpsConfig",
    "HostConfig",
    "InferenceService",
    "K3sConfig",
    "MlConfig",
    "MlflowConfig",
    "MlflowService",
    "NetworkConfig",
    "PlatformConfig",
    "PostgresService",
    "SeaweedService",
    "ServicesConfig",
    "TrainingPodConfig",
    "VersionsConfig",
    "load_config",
    "parse_config",
]
