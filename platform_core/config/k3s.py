"""The k3s target's own settings: install mode, host preparation, GitOps source, training pods."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import AnyUrl, Field, model_validator

from platform_core.config.base import _check, _FieldError, _Model

_K8S_NAME = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
K8sName = Annotated[str, _check(lambda v: re.fullmatch(_K8S_NAME, v), "{v} is not a Kubernetes name (RFC 1123)")]
_QUANTITY = r"\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?"
Quantity = Annotated[str, _check(lambda v: re.fullmatch(_QUANTITY, v), "{v} is not a Kubernetes quantity")]


class GitOpsConfig(_Model):
    """Where Argo CD reads the platform's Applications (``infra/`` as rendered from this config).

    in_cluster: a git server the platform runs in the cluster serves the tree it renders, so Argo CD clones
    nothing from outside (the seed's VM had no egress). repo: Argo CD clones ``repo_url`` at ``revision``, which
    must hold the same rendered tree (`python -m platform_core.cluster.render`, pushed). auto: repo when
    ``repo_url`` is set in platform.yaml, else in_cluster.
    """

    source: Literal["auto", "in_cluster", "repo"] = "auto"
    repo_url: AnyUrl = AnyUrl("https://github.com/example/mlops-platform.git")
    revision: str = Field("main", min_length=1)
    path: str = Field("infra/apps", min_length=1)

    @property
    def in_cluster(self) -> bool:
        return self.source == "in_cluster" or (self.source == "auto" and "repo_url" not in self.model_fields_set)

    @model_validator(mode="after")
    def _in_cluster_serves_main(self) -> Self:
        """The in-cluster server serves the rendered tree on main at its own layout: nothing else to choose."""
        if self.in_cluster:
            for name, default in (("revision", "main"), ("path", "infra/apps")):
                if getattr(self, name) != default:
                    raise _FieldError(name, f"the in-cluster source serves {default!r}; set source: repo for another")
        return self


class TrainingPodConfig(_Model):
    """Training and batch steps run as pods (dagster-k8s Pipes) in the k3s target."""

    image: str | None = None  # None: versions.platform_image (filled in by PlatformConfig)
    cpu: Quantity = "1"
    memory: Quantity = "2Gi"


Exposure = Literal["lan", "cluster"]


class ExposureConfig(_Model):
    """Who reaches each service. lan: a MetalLB LoadBalancer address on the host's LAN. cluster: a ClusterIP
    only; the workstation reaches it through a port-forward the platform opens while it needs it, and people
    through the ``kubectl port-forward`` command the asset prints. Only what clients outside the cluster need is
    on the LAN by default; Postgres speaks plain text, so `lan` for it is a deliberate choice."""

    inference: Exposure = "lan"
    seaweedfs: Exposure = "lan"  # its S3 endpoint only: master, volume and filer never leave the cluster
    mlflow: Exposure = "cluster"  # behind MLflow's basic auth either way
    argocd: Exposure = "cluster"  # behind Argo CD's admin login either way
    data_api: Exposure = "cluster"
    postgres: Exposure = "cluster"
    dagster: Exposure = "cluster"  # the orchestrator's UI: it can launch any run

    def of(self, app: str) -> Exposure:
        """The decision for a Service by its name (``data-api`` is ``data_api`` here)."""
        decision: Exposure = getattr(self, app.replace("-", "_"))
        return decision


class K3sConfig(_Model):
    # auto: an egress preflight picks online (official URLs) or airgap (offline_bundle_dir) and says why.
    install: Literal["auto", "online", "airgap"] = "auto"
    # k3s binary, k3s-airgap-images-<arch>.tar(.zst), install.sh and the upstream manifests, by version.
    offline_bundle_dir: str | None = None
    firewalld: Literal["disable", "keep"] = "disable"  # the seed disabled it; "keep" opens the k3s ports
    selinux: Literal["permissive", "enforcing", "keep"] = "permissive"
    namespace: K8sName = "mlops"  # where the platform services run
    prune_orphans: bool = False  # orphans are reported; deleted only when this is true
    gitops: GitOpsConfig = Field(default_factory=GitOpsConfig)
    training: TrainingPodConfig = Field(default_factory=TrainingPodConfig)
    exposure: ExposureConfig = Field(default_factory=ExposureConfig)
    # Where K3s gets versions.platform_image: registry = the kubelet pulls it; bundle = imported from
    # <offline_bundle_dir>/images/platform-image.tar; host_build = built on the host with podman and imported;
    # auto = bundle when that tarball exists, else host_build when the host has egress.
    image_source: Literal["auto", "host_build", "bundle", "registry"] = "auto"
    # How long a rollout may take (first image pulls on a small VM are slow; progress is logged every 30 s), and
    # how long MetalLB's webhook may take to serve once its controller is up (its certificate comes later).
    rollout_timeout_seconds: int = Field(900, strict=True, gt=0, le=7200)
    webhook_timeout_seconds: int = Field(180, strict=True, gt=0, le=3600)

    @model_validator(mode="after")
    def _bundle_for_image(self) -> Self:
        if self.image_source == "bundle" and not self.offline_bundle_dir:
            raise _FieldError("offline_bundle_dir", "required when image_source is bundle (images/platform-image.tar)")
        return self
