"""The ML location's jobs: what a person (or a sensor) runs by name."""

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # dagster does not export the type define_asset_job returns
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

MODEL_ASSETS = ["features", "trained_model", "registered_model", "deployed_model", "reference_profile"]


def build_jobs(partitions: dg.PartitionsDefinition) -> list["UnresolvedAssetJobDefinition"]:
    return [
        dg.define_asset_job(
            "ingest_batch",
            selection=dg.AssetSelection.groups("ml_data") | dg.AssetSelection.assets("drift_report"),
            partitions_def=partitions,
            description="Fetch, validate and drift-test one batch (a partition).",
        ),
        dg.define_asset_job(
            "retrain_and_deploy",
            selection=dg.AssetSelection.assets(*MODEL_ASSETS)
            | dg.AssetSelection.assets("ml_experiment", "inference_service"),
            description="Features from every validated batch, train, promote if better, deploy the champion, "
            "profile it as the drift reference.",
        ),
        dg.define_asset_job(
            "drift_report_job",
            selection=dg.AssetSelection.assets("drift_report"),
            partitions_def=partitions,
            description="The drift report of one batch (requested by data_drift_sensor).",
        ),
    ]
