"""Infrastructure drift of the local target: desired vs live each tick (service down, config changed out of band,
bucket / role / database missing, orphans); one alert when a finding appears, one when it clears."""

import dagster as dg

from platform_core.alerting.alerts import AlertsResource
from platform_core.alerting.sensors import DRIFT_INTERVAL_SECONDS, alert_on_findings
from platform_core.alerting.service_drift import local_findings
from platform_core.orchestrator.services import DagsterResource
from platform_core.services.mlflow import MlflowResource
from platform_core.services.postgres import PostgresResource
from platform_core.services.seaweedfs import SeaweedFSResource


@dg.sensor(
    minimum_interval_seconds=DRIFT_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Compares live services, buckets, roles and databases with platform.yaml; alerts on drift.",
)
def infra_drift_sensor(
    context: dg.SensorEvaluationContext,
    postgres_resource: PostgresResource,
    seaweedfs_resource: SeaweedFSResource,
    mlflow_resource: MlflowResource,
    dagster_resource: DagsterResource,
    alerts: AlertsResource,
) -> dg.SkipReason:
    findings = local_findings(postgres_resource, seaweedfs_resource, mlflow_resource, dagster_resource)
    return alert_on_findings(context, findings, alerts, "infra_drift_sensor")
