"""Where the ML location's steps run: in this process (target local) or each in its own pod through dagster-k8s
Pipes (target k3s). `build_ml_resources` picks the runner; the assets do not branch on the target.

A step (ml_assets/steps/) is one plain function; the asset gives it what to do (day, keys, settings), the runner
adds where services answer from where the step runs (loopback here, Service DNS names in the cluster) and the S3
keys (here from the state directory, in the pod from Secrets through envFrom, since Pipes extras are logged).
Either way the step's result comes back as the same plain `StepResult`, which `materialize_result` and
`check_results` turn into Dagster events, so both targets record the same metadata and data versions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from ml_assets.data.source import source_for
from ml_assets.steps.base import Step, StepInputs, StepRefused, StepResult
from platform_core.cluster.render_base import hardened, labels, resources
from platform_core.cluster.render_ml import DATA_API, MLFLOW, PLATFORM_UID
from platform_core.cluster.render_storage import SEAWEEDFS, service_dns
from platform_core.cluster.secrets import ml_step_env
from platform_core.resource import PlatformResource
from platform_core.services.mlflow import MlflowResource
from platform_core.services.seaweedfs import SeaweedFSResource
from platform_core.settings import in_cluster

if TYPE_CHECKING:  # dagster-k8s and kubernetes load only for the k3s target's pods
    from dagster_k8s import PipesK8sClient

COMMAND = ["python", "-m", "ml_assets.pipes_step"]  # + the step's name
APP = "ml-step"  # app.kubernetes.io/name of every step pod
_METADATA_TYPES: dict[str, Any] = {
    "md": dg.MetadataValue.md,
    "url": dg.MetadataValue.url,
    "table_schema": lambda raw: dg.TableSchema(columns=[dg.TableColumn(c["name"], c["type"]) for c in raw["columns"]]),
}


def metadata_value(value: object) -> Any:
    """A step's `typed` value as its Dagster metadata value; plain values are inferred as usual."""
    if isinstance(value, dict) and set(value) == {"type", "raw_value"}:
        return _METADATA_TYPES[str(value["type"])](value["raw_value"])
    return value


def materialize_result(result: StepResult, **extra: Any) -> dg.MaterializeResult[Any]:
    metadata: dict[str, Any] = {k: metadata_value(v) for k, v in result.metadata.items()}
    version = dg.DataVersion(result.data_version) if result.data_version else None
    return dg.MaterializeResult(metadata={**metadata, **extra}, data_version=version)


def check_results(result: StepResult) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name=check.name,
            passed=check.passed,
            severity=dg.AssetCheckSeverity(check.severity),
            description=check.description,
            metadata=check.metadata,
        )
        for check in result.checks
    ]


class StepRunner(PlatformResource):
    """The interface the ML assets delegate their work to; subclasses say where a step runs."""

    def run_step(self, context: dg.AssetExecutionContext, step: Step, params: Mapping[str, object]) -> StepResult:
        raise NotImplementedError(f"{type(self).__name__} does not say where steps run")

    def endpoints(self) -> dict[str, str]:
        raise NotImplementedError(f"{type(self).__name__} does not say where services answer")

    def extras(self, step: Step, params: Mapping[str, object]) -> dict[str, object]:
        """The asset's params plus the endpoints the step declares, checked before anything runs."""
        extras = {**params, **{k: v for k, v in self.endpoints().items() if k in step.extras}}
        missing = step.missing_extra(extras)
        if missing:
            raise dg.Failure(f"step {step.name}: extra {missing!r} is missing or empty")
        return extras


class LocalStepRunner(StepRunner):
    """Target local: the step runs in the asset's own process, against the services on loopback."""

    def endpoints(self) -> dict[str, str]:
        where = {"config_path": self.config_path, "state_dir": self.state_dir}
        return {
            "s3_endpoint": SeaweedFSResource(**where).endpoint,
            "tracking_uri": MlflowResource(**where).url,
            "source_url": source_for(self.cfg, where).root(),
        }

    def run_step(self, context: dg.AssetExecutionContext, step: Step, params: Mapping[str, object]) -> StepResult:
        # only the step's own Secrets, as its pod would get them (the writer's and the reader's share names)
        env = ml_step_env(self.cfg, self.state.credentials)
        environ = {k: v for name in step.secrets for k, v in env[name].items()}
        inputs = StepInputs(step, self.extras(step, params), environ)
        try:
            return step.work(inputs)
        except StepRefused as refused:
            raise dg.Failure(str(refused)) from None


class K8sPipesStepRunner(StepRunner):
    """Target k3s: one pod per step (image and resources from `k3s.training`) in `k3s.namespace`, reporting back
    through Pipes in its log. The pod reaches S3, MLflow and the data API by their Services unless told otherwise."""

    tracking_uri: str | None = None  # default: the MLflow Service's cluster DNS name
    s3_endpoint: str | None = None  # default: the SeaweedFS S3 Service's cluster DNS name
    source_url: str | None = None  # default: ml.source_url, else the data API Service's cluster DNS name
    poll_interval: float = 2.0
    pod_wait_timeout: float = 4 * 3600.0

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state_dir) / "kubeconfig"

    def client(self) -> PipesK8sClient:
        from dagster_k8s import PipesK8sClient

        if in_cluster():  # a run pod of the in-cluster orchestrator: its service account
            return PipesK8sClient(load_incluster_config=True, poll_interval=self.poll_interval)
        if not self.kubeconfig.is_file():
            raise dg.Failure(f"{self.kubeconfig}: no kubeconfig; install the k3s target (platform_up) first")
        return PipesK8sClient(
            load_incluster_config=False, kubeconfig_file=str(self.kubeconfig), poll_interval=self.poll_interval
        )

    def endpoints(self) -> dict[str, str]:
        cfg = self.cfg
        data_api = f"http://{service_dns(DATA_API, cfg)}:{cfg.services.data_api.port}"
        return {
            "s3_endpoint": self.s3_endpoint or f"http://{service_dns(SEAWEEDFS, cfg)}:{cfg.services.seaweedfs.s3_port}",
            "tracking_uri": self.tracking_uri or f"http://{service_dns(MLFLOW, cfg)}:{cfg.services.mlflow.port}",
            "source_url": self.source_url or (str(cfg.ml.source_url) if cfg.ml.source_url else data_api),
        }

    def require_secrets(self, step: Step) -> None:
        """A pod whose envFrom Secret is missing waits in CreateContainerConfigError, which dagster-k8s polls
        for hours: say so at once instead, before any pod exists. Only the Secrets' existence is looked at."""
        from kubernetes import client as k8s

        from platform_core.cluster.kube import KubeClient

        namespace = self.cfg.k3s.namespace
        with KubeClient.for_platform(self.kubeconfig).api as api:
            for name in step.secrets:
                try:
                    k8s.CoreV1Api(api).read_namespaced_secret(name, namespace)
                except k8s.ApiException as err:
                    if err.status != 404:
                        raise
                    raise dg.Failure(
                        f"Secret {namespace}/{name} is missing: the platform creates it with the S3 keys the "
                        f"{step.name} pod needs (materialize the k3s platform assets first)"
                    ) from None

    def pod_spec(self, step: Step) -> dict[str, Any]:
        training = self.cfg.k3s.training
        container = {
            "name": step.name.replace("_", "-"),
            "image": training.image,
            "imagePullPolicy": "IfNotPresent",  # as the platform's Deployments: the image may be imported, not pulled
            "command": [*COMMAND, step.name],
            # requests = limits: the pod is Guaranteed, so a busy node neither starves nor evicts it mid-run
            "resources": resources(training.cpu, training.memory, training.cpu, training.memory),
            "envFrom": [{"secretRef": {"name": name}} for name in step.secrets],  # keys never go in extras
            "securityContext": hardened(PLATFORM_UID),
        }
        return {
            "containers": [container],
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        }

    def run_step(self, context: dg.AssetExecutionContext, step: Step, params: Mapping[str, object]) -> StepResult:
        extras = self.extras(step, params)
        client = self.client()  # fails on a missing kubeconfig before anything is created
        self.require_secrets(step)
        invocation = client.run(
            context=context,
            namespace=self.cfg.k3s.namespace,
            base_pod_meta={"labels": labels(step.name, APP)},
            base_pod_spec=self.pod_spec(step),
            extras=extras,
            pod_wait_timeout=self.pod_wait_timeout,
        )
        return reported_result(step, invocation.get_custom_messages())


def reported_result(step: Step, messages: Sequence[Any]) -> StepResult:
    """The pod's last word (see ml_assets.pipes_step): its result, or the reason it refused its input."""
    for message in reversed(messages):
        if isinstance(message, dict) and "refused" in message:
            raise dg.Failure(str(message["refused"]))
        if isinstance(message, dict) and "result" in message:
            return StepResult.from_json(message["result"])
    raise dg.Failure(f"the {step.name} pod ended without reporting a result")
