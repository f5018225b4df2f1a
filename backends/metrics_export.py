"""The OpenTelemetry readers and exporters behind :class:`backends.metrics.MetricsManager`
(imported only when an exporter is configured: the SDK exporters and aiohttp take ~0.5 s to import)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from backends.metrics import parse_pairs

if TYPE_CHECKING:
    from backends.metrics import MetricsManager

log = logging.getLogger("rocketmq.metrics")


async def reader(manager: MetricsManager) -> tuple[MetricReader, web.AppRunner | None]:
    """The reader for the manager's exporter type, and the HTTP runner to clean up (PROM)."""
    c = manager.config
    if manager.kind == "PROM":
        return await _prometheus(manager)
    if manager.kind == "OTLP_GRPC":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        target = c.metrics_grpc_exporter_target
        endpoint = target if "://" in target else f"http://{target}"
        headers = parse_pairs(c.metrics_grpc_exporter_header, "metricsGrpcExporterHeader")
        otlp = OTLPMetricExporter(endpoint=endpoint, headers=headers or None,
                                  timeout=c.metric_grpc_exporter_time_out_in_mills / 1000)
        log.info("metrics: exporting OTLP over gRPC to %s every %d ms", endpoint, c.metric_grpc_exporter_interval_in_mills)
        return PeriodicExportingMetricReader(WithHistograms(otlp, manager),
                                             export_interval_millis=c.metric_grpc_exporter_interval_in_mills), None
    log.info("metrics: logging every %d ms (logger rocketmq.metrics)", c.metric_logging_exporter_interval_in_mills)
    return PeriodicExportingMetricReader(WithHistograms(LogExporter(), manager),
                                         export_interval_millis=c.metric_logging_exporter_interval_in_mills), None


async def _prometheus(manager: MetricsManager) -> tuple[MetricReader, web.AppRunner]:
    class Reader(PrometheusMetricReader):
        def _receive_metrics(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> None:
            data = with_histograms(manager, metrics_data)
            if data is not None:
                super()._receive_metrics(data, timeout_millis, **kwargs)

    # a registry of its own: two managers in one process (tests) must not collide in the global one
    registry = CollectorRegistry(auto_describe=False)
    prom = Reader(disable_target_info=True, scope_info_enabled=False, registry=registry)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    c = manager.config
    host = c.metrics_prom_exporter_host or "0.0.0.0"
    site = web.TCPSite(runner, host, c.metrics_prom_exporter_port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise OSError(e.errno, f"metrics: cannot listen on {host}:{c.metrics_prom_exporter_port} "
                               f"(metricsPromExporterPort): {e.strerror}") from e
    for addr in runner.addresses:
        manager.port = int(addr[1])
        break
    log.info("metrics: Prometheus endpoint http://%s:%d/metrics", host, manager.port)
    return prom, runner


def with_histograms(manager: MetricsManager, data: MetricsData | None) -> MetricsData | None:
    """``data`` with the manager's rocketmq_rpc_latency appended to its first scope."""
    hist = manager.rpc_latency
    snap = hist.snapshot()
    if not snap or data is None:
        return data
    now = time.time_ns()
    bounds = list(hist.bounds)
    points = [HistogramDataPoint(
        attributes={**manager.labels, "protocol_type": proto, "request_code": req, "response_code": resp},
        start_time_unix_nano=hist.start_ns, time_unix_nano=now, count=p.count, sum=p.total,
        bucket_counts=p.buckets, explicit_bounds=bounds, min=p.low, max=p.high)
        for (proto, req, resp), p in snap]
    metric = Metric(name="rocketmq_rpc_latency", description="RPC latency in milliseconds", unit="",
                    data=Histogram(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE))
    rms = list(data.resource_metrics) or [ResourceMetrics(resource=Resource.create({}), scope_metrics=[],
                                                          schema_url="")]
    first = rms[0]
    scopes = list(first.scope_metrics)
    if scopes:
        s0 = scopes[0]
        scopes[0] = ScopeMetrics(scope=s0.scope, metrics=[*s0.metrics, metric], schema_url=s0.schema_url)
    else:
        scopes = [ScopeMetrics(scope=InstrumentationScope(manager.meter_name), metrics=[metric], schema_url="")]
    rms[0] = ResourceMetrics(resource=first.resource, scope_metrics=scopes, schema_url=first.schema_url)
    return MetricsData(resource_metrics=rms)


class WithHistograms(MetricExporter):
    """An exporter passing on what it gets plus the manager's in-process histograms."""

    def __init__(self, inner: MetricExporter, manager: MetricsManager) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self._inner = inner
        self._manager = manager

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        data = with_histograms(self._manager, metrics_data)
        assert data is not None
        return self._inner.export(data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class LogExporter(MetricExporter):
    """metricsExporterType LOG: one line per data point."""

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.data.data_points:
                        attrs = ",".join(f"{k}={v!s}" for k, v in sorted((p.attributes or {}).items()))
                        if isinstance(p, HistogramDataPoint):
                            log.info("%s{%s} count=%d sum=%.3f buckets=%s", m.name, attrs, p.count, p.sum,
                                     list(p.bucket_counts))
                        elif isinstance(p, NumberDataPoint):
                            log.info("%s{%s} %s", m.name, attrs, p.value)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None
