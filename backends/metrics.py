"""Metrics export, as RocketMQ 5's broker and proxy do it (``metricsExporterType``).

A :class:`MetricsManager` owns one OpenTelemetry ``MeterProvider`` and its exporter:

- ``PROM``: a Prometheus text endpoint ``http://metricsPromExporterHost:metricsPromExporterPort/metrics``
  (default port 5557) served with aiohttp;
- ``OTLP_GRPC``: pushed every ``metricGrpcExporterIntervalInMills`` to ``metricsGrpcExporterTarget``;
- ``LOG``: one log line per data point every ``metricLoggingExporterIntervalInMills`` (logger
  ``rocketmq.metrics``);
- ``DISABLE`` (the default): nothing is built and nothing costs anything.

Counters and gauges are observable instruments: the broker and proxy keep plain counters and the
callbacks read them at collection time, so the send and receive paths pay no OpenTelemetry call (an
SDK ``add``/``record`` costs 7-20 us here, a per-message figure this project cannot afford). The RPC
latency histogram (``rocketmq_rpc_latency``) is aggregated the same way by :class:`LatencyHistogram`
and added to each collection as a cumulative OpenTelemetry histogram.

Every data point carries RocketMQ's labels ``cluster``, ``node_type``, ``node_id`` and those of
``metricsLabel`` (``k1:v1,k2:v2``).
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

log = logging.getLogger("rocketmq.metrics")

EXPORTER_TYPES = ("DISABLE", "OTLP_GRPC", "PROM", "LOG")
# rocketmq_rpc_latency buckets (ms), RocketMQ's: le_1_ms le_3_ms le_5_ms le_10_ms le_100_ms le_1_s le_3_s
RPC_LATENCY_BOUNDS_MS: tuple[float, ...] = (1, 3, 5, 10, 100, 1000, 3000)

# an observable callback yields (value, labels) pairs; the manager adds the node labels
Points = Iterable[tuple[float, Mapping[str, str]]]


@dataclass
class MetricsConfig:
    """The metrics keys of broker.conf and rmq-proxy.json, declared once: BrokerConfig and ProxyConfig
    inherit them. A field's name is the snake_case of RocketMQ's key (``metrics_exporter_type`` <-
    ``metricsExporterType``)."""

    metrics_exporter_type: str = "DISABLE"  # DISABLE | PROM | OTLP_GRPC | LOG
    metrics_prom_exporter_host: str = ""  # "" binds every address
    metrics_prom_exporter_port: int = 5557
    metrics_grpc_exporter_target: str = ""  # OTLP_GRPC: "host:port" or "http://host:port"
    metrics_grpc_exporter_header: str = ""  # OTLP_GRPC: "k1:v1,k2:v2"
    metric_grpc_exporter_time_out_in_mills: int = 3000
    metric_grpc_exporter_interval_in_mills: int = 60_000
    metric_logging_exporter_interval_in_mills: int = 10_000
    metrics_label: str = ""  # extra labels on every point: "k1:v1,k2:v2"

    @property
    def metrics_kind(self) -> str:
        return self.metrics_exporter_type.upper()

    def check_metrics(self) -> None:
        """Raise ValueError with a one-line reason for a metrics setting that cannot work."""
        kind = self.metrics_kind
        if kind not in EXPORTER_TYPES:
            raise ValueError(f"metricsExporterType {self.metrics_exporter_type!r} is not one of "
                             f"{', '.join(EXPORTER_TYPES)}")
        if kind == "OTLP_GRPC" and not self.metrics_grpc_exporter_target:
            raise ValueError("metricsExporterType OTLP_GRPC needs metricsGrpcExporterTarget (host:port)")
        if kind == "PROM" and not 0 <= self.metrics_prom_exporter_port <= 65535:
            raise ValueError(f"metricsPromExporterPort {self.metrics_prom_exporter_port} is not a port")
        interval = (self.metric_grpc_exporter_interval_in_mills if kind == "OTLP_GRPC"
                    else self.metric_logging_exporter_interval_in_mills)
        if kind in ("OTLP_GRPC", "LOG") and interval <= 0:
            raise ValueError(f"the {kind} export interval must be above 0 ms, not {interval}")
        parse_pairs(self.metrics_label, "metricsLabel")
        parse_pairs(self.metrics_grpc_exporter_header, "metricsGrpcExporterHeader")


def parse_pairs(text: str, key: str) -> dict[str, str]:
    """``k1:v1,k2:v2`` -> dict; ValueError naming ``key`` for a pair without ':'."""
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        k, sep, v = part.partition(":")
        if not sep or not k.strip():
            raise ValueError(f"{key}: {part!r} is not key:value")
        out[k.strip()] = v.strip()
    return out


@dataclass
class _Point:
    buckets: list[int]
    count: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")


@dataclass
class LatencyHistogram:
    """``rocketmq_rpc_latency`` aggregated in process: ``record`` is a dict lookup and a bisect."""

    bounds: Sequence[float] = RPC_LATENCY_BOUNDS_MS
    points: dict[tuple[str, str, str], _Point] = field(default_factory=dict)
    start_ns: int = field(default_factory=time.time_ns)

    def record(self, protocol: str, request: str, response: str, ms: float) -> None:
        key = (protocol, request, response)
        p = self.points.get(key)
        if p is None:
            p = self.points[key] = _Point([0] * (len(self.bounds) + 1))
        # OpenTelemetry's explicit buckets are (b[i-1], b[i]]: a value equal to a bound is in that bucket
        p.buckets[bisect.bisect_left(self.bounds, ms)] += 1
        p.count += 1
        p.total += ms
        if ms < p.low:
            p.low = ms
        if ms > p.high:
            p.high = ms

    def snapshot(self) -> list[tuple[tuple[str, str, str], _Point]]:
        # copies taken in one C-level pass (the OTLP/LOG readers call this from their own thread)
        return [(k, replace(p, buckets=list(p.buckets))) for k, p in list(self.points.items())]


class MetricsManager:
    """One process's meter and exporter. Register instruments with :meth:`gauge` / :meth:`counter`
    (before or after :meth:`start`); with the exporter DISABLE they are never read."""

    def __init__(self, config: MetricsConfig, *, node_type: str, cluster: str, node_id: str,
                 meter_name: str = "broker-meter") -> None:
        config.check_metrics()
        self.config = config
        self.kind = config.metrics_kind
        self.labels: dict[str, str] = {"cluster": cluster, "node_type": node_type, "node_id": node_id}
        self.labels.update(parse_pairs(config.metrics_label, "metricsLabel"))
        self.meter_name = meter_name
        self.rpc_latency = LatencyHistogram()
        self.port = config.metrics_prom_exporter_port  # the bound port once PROM is started (0 in config: ephemeral)
        self._specs: list[tuple[str, str, Callable[[], Points], str]] = []
        self._provider: Any = None
        self._meter: Any = None
        self._runner: Any = None

    @property
    def enabled(self) -> bool:
        return self.kind != "DISABLE"

    # -- instruments --------------------------------------------------------------------------
    def gauge(self, name: str, points: Callable[[], Points], description: str = "") -> None:
        self._add("gauge", name, points, description)

    def counter(self, name: str, points: Callable[[], Points], description: str = "") -> None:
        """A monotonic cumulative counter: ``points`` returns the totals since start."""
        self._add("counter", name, points, description)

    def _add(self, kind: str, name: str, points: Callable[[], Points], description: str) -> None:
        spec = (kind, name, points, description)
        self._specs.append(spec)
        if self._meter is not None:
            self._create(spec)

    def _create(self, spec: tuple[str, str, Callable[[], Points], str]) -> None:
        from opentelemetry.metrics import Observation

        kind, name, points, description = spec
        labels = self.labels

        def callback(_options: Any) -> Iterable[Observation]:
            try:
                got = list(points())
            except Exception:  # a failing callback must not stop the other instruments
                log.exception("metrics: reading %s failed", name)
                return []
            return [Observation(v, {**labels, **attrs}) for v, attrs in got]

        make = self._meter.create_observable_counter if kind == "counter" else self._meter.create_observable_gauge
        make(name, callbacks=[callback], description=description)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.enabled or self._provider is not None:
            return
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource

        from backends import metrics_export

        reader, self._runner = await metrics_export.reader(self)
        self._provider = MeterProvider(metric_readers=[reader],
                                       resource=Resource.create({"service.name": self.labels["node_type"]}))
        self._meter = self._provider.get_meter(self.meter_name)
        for spec in self._specs:
            self._create(spec)

    async def shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
            self._meter = None
