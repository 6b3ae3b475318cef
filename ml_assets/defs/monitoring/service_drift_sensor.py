"""The ML location's watch over its own supervised services: the offline data API and the inference service."""

import dagster as dg

from ml_assets.data.service import DataApiResource
from ml_assets.serving.resource import InferenceResource
from platform_core.alerting.alerts import AlertsResource
from platform_core.alerting.sensors import DRIFT_INTERVAL_SECONDS, alert_on_findings
from platform_core.alerting.service_drift import service_drift


@dg.sensor(
    minimum_interval_seconds=DRIFT_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="The data API and inference service against platform.yaml: down, config changed, unhealthy.",
)
def ml_services_drift_sensor(
    context: dg.SensorEvaluationContext,
    data_api_resource: DataApiResource,
    inference_resource: InferenceResource,
    alerts: AlertsResource,
) -> dg.SkipReason:
    # A service never started here (e.g. the data API when ml.source_url is set) yields no finding.
    findings = [
        finding
        for resource in (data_api_resource, inference_resource)
        for finding in service_drift(resource.supervisor, resource.service_spec())
    ]
    return alert_on_findings(context, findings, alerts, "ml_services_drift_sensor")
