"""The MLflow tracking server asset and its function check."""

import dagster as dg

from platform_assets.defs.storage.assets import postgres_databases
from platform_core.alerting.service_drift import service_change
from platform_core.catalog import PLATFORM_OWNERS, bucket_key
from platform_core.cluster.reconcile import cluster_service_asset, cluster_spec
from platform_core.config import PlatformConfig
from platform_core.decisions import decides
from platform_core.host.resource import HostResource
from platform_core.results import check_errors_fail, loopback_only, service_result
from platform_core.services.mlflow import MlflowResource
from platform_core.services.mlflow_auth import READER, WRITER, prove_auth
from platform_core.services.seaweedfs import SeaweedFSResource

GROUP = "tracking"


@decides("mlflow_server", target="local")
def mlflow_server_change(mlflow_resource: MlflowResource, host_resource: HostResource) -> str:
    return service_change(mlflow_resource, host_resource)


def build_mlflow_server_asset(artifact_bucket: str) -> dg.AssetsDefinition:
    @dg.asset(
        name="mlflow_server",
        group_name=GROUP,
        kinds={"mlflow"},
        owners=PLATFORM_OWNERS,
        deps=[postgres_databases, bucket_key(artifact_bucket)],
        description="mlflow server on the platform Postgres, artifacts proxied to SeaweedFS S3.",
    )
    def mlflow_server(mlflow_resource: MlflowResource) -> dg.MaterializeResult:
        result = mlflow_resource.ensure_server()
        users = mlflow_resource.ensure_users() + mlflow_resource.claim_models()
        cfg = mlflow_resource.cfg
        return service_result(
            mlflow_resource.supervisor,
            "mlflow",
            result,
            {
                "url": dg.MetadataValue.url(mlflow_resource.url),
                "auth": f"basic-auth: writer {WRITER}, reader {READER}",
                "credentials": dg.MetadataValue.path(str(mlflow_resource.state.secrets_file)),
                "version": mlflow_resource.server_version(),
                "backend_store": f"postgresql+psycopg2://{mlflow_resource.backend_role}@127.0.0.1:"
                f"{cfg.services.postgres.port}/{cfg.mlflow.database}",
                "artifacts_destination": f"s3://{cfg.mlflow.artifact_bucket}",
                "experiments": mlflow_resource.experiment_count(),
            },
            also=users,  # a user or model made or mended is a change, even with the server left running
        )

    return mlflow_server


MLFLOW_SERVER_KEY = dg.AssetKey("mlflow_server")


@dg.asset_check(
    asset=MLFLOW_SERVER_KEY,
    blocking=True,
    description="Create/get an experiment, log and read back an artifact, find it in the S3 bucket.",
)
@check_errors_fail
def mlflow_round_trip(mlflow_resource: MlflowResource, seaweedfs_resource: SeaweedFSResource) -> dg.AssetCheckResult:
    trip = mlflow_resource.round_trip(seaweedfs_resource)
    return dg.AssetCheckResult(
        passed=True,  # round_trip raises, naming what failed, on any mismatch
        description=f"experiment {trip.experiment_id}: artifact of run {trip.run_id} read back and stored "
        f"at s3://{mlflow_resource.cfg.mlflow.artifact_bucket}/{trip.artifact_key}",
    )


@dg.asset_check(
    asset=MLFLOW_SERVER_KEY,
    blocking=True,
    description="An anonymous write is refused (401), the reader cannot move an alias (403), the writer can.",
)
@check_errors_fail
def mlflow_auth_enforced(mlflow_resource: MlflowResource) -> dg.AssetCheckResult:
    cfg = mlflow_resource.cfg
    proof = prove_auth(
        mlflow_resource.url,
        mlflow_resource.writer,
        mlflow_resource.reader,
        cfg.mlflow.artifact_bucket,
        cfg.ml.model_name,
    )
    problems = proof.problems
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems)
        or "anonymous write 401, reader alias move 403, writer alias move 200, reader read 200",
        metadata={name: value for name, value in vars(proof).items()},
    )


@dg.asset_check(asset=MLFLOW_SERVER_KEY, blocking=True, description="MLflow listens on 127.0.0.1 only.")
@check_errors_fail
def mlflow_loopback_only(mlflow_resource: MlflowResource) -> dg.AssetCheckResult:
    return loopback_only(mlflow_resource.supervisor, "mlflow")


def cluster_mlflow_server(artifact_bucket: str) -> dg.AssetsDefinition:
    """The k3s target's: deployed by Argo CD (gitops too, so a run without the storage assets still orders it after)."""
    deps = ["gitops", "postgres_databases", f"buckets/{artifact_bucket}"]
    description = "mlflow server deployed by Argo CD, on the cluster's Postgres and SeaweedFS."
    return cluster_service_asset(cluster_spec("mlflow_server", GROUP, deps, description, ["mlflow"]))


def tracking_definitions(cfg: PlatformConfig) -> dg.Definitions:
    """The tracking server, supervised here or deployed by Argo CD, and its round trip in both targets."""
    bucket = cfg.mlflow.artifact_bucket
    if cfg.target == "k3s":
        return dg.Definitions(
            assets=[cluster_mlflow_server(bucket)], asset_checks=[mlflow_round_trip, mlflow_auth_enforced]
        )
    return dg.Definitions(
        assets=[build_mlflow_server_asset(bucket)],
        asset_checks=[mlflow_round_trip, mlflow_auth_enforced, mlflow_loopback_only],
    )
