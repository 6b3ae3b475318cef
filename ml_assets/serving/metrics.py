"""Prometheus metrics of one app instance, in its own registry (two apps in one process never collide)."""

from __future__ import annotations

import time
from collections.abc import Collection

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_assets.serving.model_slot import LoadedModel
from ml_assets.serving.prediction_log import PredictionLog

# A request is ~0.3 ms (one row) to ~2 ms (100 rows) of work; finer buckets at the low end separate that from
# queueing.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, log: PredictionLog) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inference_requests",
            "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inference_request_duration_seconds",
            "Time from the request's arrival to the end of its response",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter("inference_predictions", "Rows predicted (single and batch)", registry=self.registry)
        self.model = Info("inference_model", "The model being served", registry=self.registry)
        pending = Gauge("inference_prediction_log_pending_rows", "Predictions not yet in S3", registry=self.registry)
        pending.set_function(lambda: log.pending_rows)
        failures = Gauge(
            "inference_prediction_log_failed_flushes", "Failed writes of the prediction log", registry=self.registry
        )
        failures.set_function(lambda: log.failed_flushes)

    def set_model(self, loaded: LoadedModel) -> None:
        self.model.info({"name": loaded.name, "version": loaded.version, "run_id": loaded.run_id or ""})

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request, including those refused before routing (413s, 404s)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, paths: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before responding

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # the route template, never the raw path: random paths must not grow the label set
            route = getattr(scope.get("route"), "path", None)
            endpoint = route or (scope["path"] if scope["path"] in self.paths else "other")
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
