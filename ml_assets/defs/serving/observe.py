"""`prediction_log`: the inference service's writes to the predictions bucket, observed (not materialized:
Dagster does not produce them), with a last-update freshness check since freshness policies skip observables."""

import warnings
from datetime import timedelta
from typing import Any

import dagster as dg

from ml_assets.data.resources import DatasetsResource
from ml_assets.serving.settings import PREDICTION_LOG_PREFIX
from platform_core.catalog import ML_OWNERS
from platform_core.decisions import decides
from platform_core.services.seaweedfs import SeaweedFSResource

OBSERVE_CRON = "*/5 * * * *"


def _deployed_at(instance: dg.DagsterInstance) -> float | None:
    event = instance.get_latest_materialization_event(dg.AssetKey("deployed_model"))
    return event.timestamp if event is not None else None


def observe_prediction_log(context: dg.AssetExecutionContext, datasets: DatasetsResource) -> dg.ObserveResult:
    cfg = datasets.cfg
    bucket = cfg.ml.predictions_bucket
    seaweed = SeaweedFSResource(config_path=datasets.config_path, state_dir=datasets.state_dir)
    paginator = seaweed.client(cfg.bucket(bucket).owner).get_paginator("list_objects_v2")
    objects = [
        obj
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{PREDICTION_LOG_PREFIX}/")
        for obj in page.get("Contents", [])
    ]
    newest = max(objects, key=lambda obj: obj["LastModified"], default=None)
    metadata: dict[str, Any] = {"files": len(objects), "bytes": sum(obj["Size"] for obj in objects)}
    # what build_last_update_freshness_checks reads: when the data last changed, not when we looked; an empty log
    # counts from the latest deployment (it had nothing to write before), so a new stack is not "stale"
    updated = newest["LastModified"].timestamp() if newest is not None else _deployed_at(context.instance)
    if updated is not None:
        metadata["dagster/last_updated_timestamp"] = dg.MetadataValue.timestamp(updated)
    if newest is not None:
        metadata["newest"] = f"s3://{bucket}/{newest['Key']}"
    version = f"{len(objects)}:{newest['Key'] if newest else ''}"
    return dg.ObserveResult(data_version=dg.DataVersion(version), metadata=metadata)


PREDICTION_LOG = dg.AssetSpec(
    "prediction_log",
    group_name="serving",
    kinds={"s3", "parquet"},
    owners=ML_OWNERS,
    description="Parquet files of served predictions in the predictions bucket; observed every 5 minutes.",
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # observable source assets are the documented tool, "beta"
    prediction_log = dg.multi_observable_source_asset(specs=[PREDICTION_LOG], name="prediction_log")(
        observe_prediction_log
    )


OBSERVED_ONLY = "observed only: the inference service writes it"  # nothing for `up` to change


@decides("prediction_log")
def prediction_log_change() -> str:
    return OBSERVED_ONLY


def prediction_log_observation() -> dg.Definitions:
    """A job observing the log and its schedule, RUNNING by default (declarative automation's sensor is not)."""
    job = dg.define_asset_job("observe_prediction_log", selection=dg.AssetSelection.assets("prediction_log"))
    schedule = dg.ScheduleDefinition(
        job_name=job.name, cron_schedule=OBSERVE_CRON, default_status=dg.DefaultScheduleStatus.RUNNING
    )
    return dg.Definitions(jobs=[job], schedules=[schedule])


def prediction_log_freshness(window_minutes: int) -> tuple[list[dg.AssetChecksDefinition], dg.SensorDefinition]:
    """The check (no prediction written for longer than the window fails it) and the sensor that runs it."""
    with warnings.catch_warnings():
        # "superseded by FreshnessPolicy", but policies do not evaluate observable source assets.
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        checks = dg.build_last_update_freshness_checks(
            assets=[prediction_log], lower_bound_delta=timedelta(minutes=window_minutes)
        )
        sensor = dg.build_sensor_for_freshness_checks(
            freshness_checks=checks, default_status=dg.DefaultSensorStatus.RUNNING
        )
    return list(checks), sensor
