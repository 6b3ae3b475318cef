"""Data assets: the offline data API, raw batches from it (one partition per day), validated batches."""

import warnings

import dagster as dg

from ml_assets.data.resources import DatasetsResource
from ml_assets.data.service import DataApiResource
from ml_assets.data.source import BatchSourceResource, source_settings
from ml_assets.step_runner import StepRunner, materialize_result
from ml_assets.steps.batches import RAW, VALIDATED
from platform_core.alerting.service_drift import service_change
from platform_core.catalog import ML_OWNERS
from platform_core.cluster.reconcile import cluster_service_asset, cluster_spec
from platform_core.config import PlatformConfig
from platform_core.decisions import UNKNOWN_YET, decides
from platform_core.host.resource import HostResource
from platform_core.results import NO_CHANGE, check_errors_fail, latest_metadata, service_result

GROUP = "ml_data"


def batch_partitions(batches: int) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([str(day) for day in range(batches)])


@dg.asset(
    group_name=GROUP,
    kinds={"fastapi"},
    owners=ML_OWNERS,
    deps=[dg.AssetKey(["buckets", "datasets"])],
    description="The bundled offline data API: the Ames housing sales served in the seed's batch shape.",
)
def data_api(data_api_resource: DataApiResource) -> dg.MaterializeResult:
    result = data_api_resource.ensure_server()
    return service_result(
        data_api_resource.supervisor,
        "data_api",
        result,
        {
            "url": dg.MetadataValue.url(
                f"{data_api_resource.url}/data?group_number={data_api_resource.cfg.ml.group_number}&day=0"
            ),
        },
    )


@decides("data_api", target="local")
def data_api_change(data_api_resource: DataApiResource, host_resource: HostResource) -> str:
    return service_change(data_api_resource, host_resource)


@dg.asset_check(asset=data_api, blocking=True, description="GET /data for day 0 returns listings in the seed schema.")
@check_errors_fail
def data_api_serves_batches(batch_source: BatchSourceResource) -> dg.AssetCheckResult:
    batch = batch_source.fetch_batch(0)
    return dg.AssetCheckResult(
        passed=len(batch.frame) > 0, description=f"day 0: {len(batch.frame)} rows, batch {batch.batch_number}"
    )


def data_api_for(cfg: PlatformConfig) -> dg.AssetsDefinition:
    """The offline data API: a supervised local process, or the pod Argo CD deploys (k3s target)."""
    if cfg.target == "k3s":
        spec = cluster_spec("data_api", GROUP, ["gitops", "buckets/datasets"], "The offline data API pod.")
        return cluster_service_asset(spec)
    return data_api


def raw_params(datasets: DatasetsResource, day: int) -> dict[str, object]:
    return {
        "day": day,
        "raw_key": datasets.raw_key(day),
        "datasets_bucket": datasets.cfg.ml.datasets_bucket,
        **source_settings(datasets.cfg),
    }


def validated_params(datasets: DatasetsResource, day: int) -> dict[str, object]:
    return {
        "day": day,
        "raw_key": datasets.raw_key(day),
        "validated_key": datasets.validated_key(day),
        "datasets_bucket": datasets.cfg.ml.datasets_bucket,
    }


@decides("raw_batches", reads=("seaweedfs",), partitioned=True, unknown=UNKNOWN_YET)
def raw_batch_change(datasets: DatasetsResource, partition: str) -> str:
    """A day not stored yet is fetched. A stored day is asked for again all the same (only asking tells whether the
    API's answer changed) and stored only if it did, which for a batch API is no change."""
    return NO_CHANGE if datasets.store().stored_hash(datasets.raw_key(int(partition))) else "would fetch"


@decides("validated_batches", reads=("seaweedfs",), partitioned=True, unknown=UNKNOWN_YET)
def validated_batch_change(datasets: DatasetsResource, partition: str, previous: dict[str, object]) -> str:
    """No change while the validated copy still holds the raw batch it was made from: that very content passed
    validation then, so nothing is read and no pod starts."""
    day, store = int(partition), datasets.store()
    content = previous.get("content_hash")
    stored = {store.stored_hash(datasets.raw_key(day)), store.stored_hash(datasets.validated_key(day))}
    return NO_CHANGE if content is not None and stored == {content} else "would validate"


def build_data_assets(
    batches: int, use_offline_api: bool, data_api_asset: dg.AssetsDefinition = data_api
) -> tuple[list, list]:
    """`data_api_asset`: the supervised local process, or in the k3s target the Argo CD-deployed service."""
    partitions = batch_partitions(batches)
    upstream = [data_api_asset] if use_offline_api else []

    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"s3", "parquet"},
        owners=ML_OWNERS,
        deps=upstream,
        description="One batch of listings, fetched over HTTP from the batch API, as Parquet in S3.",
    )
    def raw_batches(
        context: dg.AssetExecutionContext, datasets: DatasetsResource, step_runner: StepRunner
    ) -> dg.MaterializeResult:
        # asks even for a stored day (see raw_batch_change): the store's put is a no-op on equal content
        day = int(context.partition_key)
        return materialize_result(step_runner.run_step(context, RAW, raw_params(datasets, day)))

    def raw_batch_is_valid(context: dg.AssetCheckExecutionContext, datasets: DatasetsResource) -> dg.AssetCheckResult:
        from ml_assets.data.validation import validate_batch  # numpy and pandas: when a check runs, not at load

        day = int(context.partition_key)
        report = validate_batch(datasets.store().get(datasets.raw_key(day)))
        return dg.AssetCheckResult(
            passed=report.passed,
            description=f"day {day}: " + report.summary(),
            metadata={"rows": int(str(report.stats.get("rows", 0))), "problems": len(report.problems)},
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # per-partition checks are the right tool, still "preview"
        raw_batch_check = dg.asset_check(
            asset=raw_batches,
            blocking=True,
            partitions_def=partitions,
            description="Schema, types, null rates, ranges and duplicates; names the column and the rows.",
        )(raw_batch_is_valid)

    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"s3", "parquet"},
        owners=ML_OWNERS,
        deps=[raw_batches],
        description="A batch that passed validation, ready for features.",
    )
    def validated_batches(
        context: dg.AssetExecutionContext, datasets: DatasetsResource, step_runner: StepRunner
    ) -> dg.MaterializeResult:
        day = int(context.partition_key)  # an invalid batch: dg.Failure naming the day, from either runner
        previous = latest_metadata(context.instance, context.asset_key, context.partition_key)
        values = {k: v.value for k, v in previous.items()}
        if validated_batch_change(datasets, context.partition_key, values) == NO_CHANGE:
            version = dg.DataVersion(str(values["content_hash"]))
            return dg.MaterializeResult(metadata={**previous, "change": NO_CHANGE}, data_version=version)
        return materialize_result(step_runner.run_step(context, VALIDATED, validated_params(datasets, day)))

    assets = [*upstream, raw_batches, validated_batches]
    checks = [data_api_serves_batches] if use_offline_api else []
    return assets, [*checks, raw_batch_check]
