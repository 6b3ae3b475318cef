"""Code location `ml_assets`: the model pipeline, on top of the platform location's services.

Lineage crosses locations by asset key: the data API and batches sit on the `datasets` bucket, training and the
registry on `mlflow_server`, serving on the `predictions` bucket.
"""

from pathlib import Path

import dagster as dg

from ml_assets.defs.data.assets import build_data_assets, data_api_for
from ml_assets.defs.jobs import build_jobs
from ml_assets.defs.model.registry import champion_resolves_and_scores, registered_model
from ml_assets.defs.model.training import features, trained_model
from ml_assets.defs.monitoring.data_drift_sensor import build_data_drift_sensor
from ml_assets.defs.monitoring.reference import reference_matches_champion, reference_profile
from ml_assets.defs.monitoring.report import build_drift_report
from ml_assets.defs.monitoring.service_drift_sensor import ml_services_drift_sensor
from ml_assets.defs.serving.deployment import serving_definitions
from ml_assets.defs.serving.observe import prediction_log, prediction_log_freshness, prediction_log_observation
from ml_assets.defs.tracking.experiment import build_experiment_asset, experiment_resolves
from ml_assets.resources import build_ml_resources
from platform_core.alerting.freshness_alerts import freshness_alert_sensor
from platform_core.alerting.lineage import publish as publish_lineage
from platform_core.alerting.sensors import check_failure_sensor
from platform_core.catalog import bucket_key
from platform_core.config.base import config_errors_in_one_line
from platform_core.freshness import with_default_freshness
from platform_core.settings import config_path
from platform_core.source_links import with_code_links
from platform_core.state import load_platform


def weekly_retraining() -> dg.ScheduleDefinition:
    """The model's freshness window is a week: retrain on whatever batches exist (promoted only if better)."""
    return dg.ScheduleDefinition(
        name="weekly_retraining",
        job_name="retrain_and_deploy",
        cron_schedule="0 3 * * 1",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )


def build_definitions(path: Path) -> dg.Definitions:
    config_errors_in_one_line()
    cfg, state = load_platform(path)
    data_assets, data_checks = build_data_assets(cfg.ml.batches, cfg.ml.source_url is None, data_api_for(cfg))
    log_checks, log_check_sensor = prediction_log_freshness(cfg.freshness.data_minutes)
    jobs = build_jobs(data_assets[-1].partitions_def)
    drift_sensor = build_data_drift_sensor([j for j in jobs if j.name in ("drift_report_job", "retrain_and_deploy")])
    located = with_default_freshness(
        with_code_links(
            dg.Definitions.merge(
                serving_definitions(cfg),
                dg.Definitions(
                    assets=[
                        build_experiment_asset(bucket_key(cfg.ml.datasets_bucket)),
                        *data_assets,
                        features,
                        trained_model,
                        registered_model,
                        reference_profile,
                        build_drift_report(data_assets[-1].partitions_def),
                    ],
                    asset_checks=[
                        experiment_resolves,
                        *data_checks,
                        champion_resolves_and_scores,
                        reference_matches_champion,
                    ],
                    jobs=jobs,
                    sensors=[  # each location alerts on its own checks and services
                        check_failure_sensor,
                        ml_services_drift_sensor,
                        drift_sensor,
                        freshness_alert_sensor,
                    ],
                    resources=build_ml_resources(cfg, state, path),
                    executor=dg.in_process_executor,
                ),
            )
        ),
        cfg.freshness.platform_minutes,  # the inference service is platform health
        {
            "ml_data": cfg.freshness.data_minutes,
            "ml_model": cfg.freshness.model_minutes,
            "serving": cfg.freshness.model_minutes,
            "ml_tracking": cfg.freshness.model_minutes,
            "ml_monitoring": cfg.freshness.data_minutes,
        },
    )
    # Observable, so outside the policy mapping: a last-update check and its sensor watch it instead.
    observed = dg.Definitions(
        assets=[prediction_log],
        asset_checks=log_checks,
        sensors=[log_check_sensor],
        schedules=[weekly_retraining()],
    )
    defs = dg.Definitions.merge(located, observed, prediction_log_observation())
    publish_lineage(state.lineage, "ml_assets", defs)
    return defs


defs = build_definitions(config_path())
