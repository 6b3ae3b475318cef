"""Data assets: the offline data API, raw batches from it (one partition per day), validated batches."""

import warnings

import dagster as dg
import pandas as pd

from ml_assets.data.resources import DatasetsResource
from ml_assets.data.service import DataApiResource
from ml_assets.data.source import BatchSourceResource
from ml_assets.data.store import TableStore
from ml_assets.data.validation import validate_batch
from platform_assets.services.results import NO_CHANGE, check_errors_fail, service_result

GROUP = "ml_data"
OWNERS = ["team:ml"]
PREVIEW_ROWS = 5


def batch_partitions(batches: int) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([str(day) for day in range(batches)])


@dg.asset(
    group_name=GROUP,
    kinds={"fastapi"},
    owners=OWNERS,
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


@dg.asset_check(asset=data_api, blocking=True, description="GET /data for day 0 returns listings in the seed schema.")
@check_errors_fail
def data_api_serves_batches(batch_source: BatchSourceResource) -> dg.AssetCheckResult:
    batch = batch_source.fetch_batch(0)
    return dg.AssetCheckResult(
        passed=len(batch.frame) > 0, description=f"day 0: {len(batch.frame)} rows, batch {batch.batch_number}"
    )


def _stored_table(store: TableStore, key: str, frame: pd.DataFrame, **extra: object) -> dg.MaterializeResult:
    """Write the table (a no-op when equal content is already there) and describe it for the UI."""
    stored = store.put(key, frame)
    metadata = {
        "change": f"wrote {stored.bytes} bytes" if stored.written else NO_CHANGE,
        "uri": store.uri(key),
        "rows": len(frame),
        "content_hash": stored.content_hash,
        "schema": dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.dtypes.items()]),
        "preview": dg.MetadataValue.md(frame.head(PREVIEW_ROWS).to_markdown(index=False)),
        **extra,
    }
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(stored.content_hash))


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
        owners=OWNERS,
        deps=upstream,
        description="One batch of listings, fetched over HTTP from the batch API, as Parquet in S3.",
    )
    def raw_batches(
        context: dg.AssetExecutionContext, batch_source: BatchSourceResource, datasets: DatasetsResource
    ) -> dg.MaterializeResult:
        day = int(context.partition_key)
        batch = batch_source.fetch_batch(day)
        return _stored_table(datasets.store(), datasets.raw_key(day), batch.frame, batch_number=batch.batch_number)

    def raw_batch_is_valid(context: dg.AssetCheckExecutionContext, datasets: DatasetsResource) -> dg.AssetCheckResult:
        day = int(context.partition_key)
        report = validate_batch(datasets.store().get(datasets.raw_key(day)))
        return dg.AssetCheckResult(
            passed=report.passed,
            description=f"day {day}: " + report.summary(),
            metadata={"rows": report.stats.get("rows", 0), "problems": len(report.problems)},
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # per-partition checks are the right tool, still "preview"
        raw_batch_is_valid = dg.asset_check(
            asset=raw_batches,
            blocking=True,
            partitions_def=partitions,
            description="Schema, types, null rates, ranges and duplicates; names the column and the rows.",
        )(raw_batch_is_valid)

    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"s3", "parquet"},
        owners=OWNERS,
        deps=[raw_batches],
        description="A batch that passed validation, ready for features.",
    )
    def validated_batches(context: dg.AssetExecutionContext, datasets: DatasetsResource) -> dg.MaterializeResult:
        day = int(context.partition_key)
        store = datasets.store()
        frame = store.get(datasets.raw_key(day))
        report = validate_batch(frame)
        if not report.passed:  # the blocking check stops this in a job; a direct run must not slip past it
            raise dg.Failure(f"day {day} is invalid: {report.summary()}")
        return _stored_table(store, datasets.validated_key(day), frame)

    assets = [*upstream, raw_batches, validated_batches]
    checks = [data_api_serves_batches] if use_offline_api else []
    return assets, [*checks, raw_batch_is_valid]
