"""backends.metrics: config checks, the in-process latency histogram, the PROM and LOG exporters."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import urllib.request

import pytest

from backends.broker.broker_config import BrokerConfig, ConfigError
from backends.broker.metrics import DELAY, FIFO, NORMAL, TRANSACTION, BrokerStats, message_type
from backends.metrics import LatencyHistogram, MetricsConfig, MetricsManager, parse_pairs
from backends.model import Message
from proxy.config import ProxyConfig


@pytest.mark.parametrize("cfg, error", [
    (MetricsConfig(metrics_exporter_type="GRAPHITE"), "metricsExporterType 'GRAPHITE' is not one of"),
    (MetricsConfig(metrics_exporter_type="OTLP_GRPC"), "needs metricsGrpcExporterTarget"),
    (MetricsConfig(metrics_exporter_type="PROM", metrics_prom_exporter_port=70000), "metricsPromExporterPort 70000"),
    (MetricsConfig(metrics_exporter_type="LOG", metric_logging_exporter_interval_in_mills=0), "interval must be above 0"),
    (MetricsConfig(metrics_exporter_type="PROM", metrics_label="env"), "metricsLabel: 'env' is not key:value"),
])
def test_config_check_names_the_key(cfg, error):
    with pytest.raises(ValueError, match=error):
        cfg.check_metrics()


def test_config_keys_in_broker_conf_and_rmq_proxy_json():
    cfg = BrokerConfig()
    cfg.apply({"metricsExporterType": "PROM", "metricsPromExporterPort": "15557", "metricsLabel": "a:b, c:d"})
    mc = cfg
    assert (mc.metrics_exporter_type, mc.metrics_prom_exporter_port, parse_pairs(mc.metrics_label, "x")) == ("PROM", 15557,
                                                                                     {"a": "b", "c": "d"})
    with pytest.raises(ConfigError, match="metricsExporterType 'NOPE'"):
        BrokerConfig().apply({"metricsExporterType": "NOPE"})
    pc = ProxyConfig.from_dict({"metricsExporterType": "LOG", "metricLoggingExporterIntervalInMills": 500})
    assert pc.metric_logging_exporter_interval_in_mills == 500
    with pytest.raises(ValueError, match="needs metricsGrpcExporterTarget"):
        ProxyConfig.from_dict({"metricsExporterType": "OTLP_GRPC"})


def test_histogram_buckets_are_upper_inclusive():
    h = LatencyHistogram(bounds=(1, 3))
    for ms in (0.5, 1.0, 1.5, 3.0, 3.5, 9000):
        h.record("grpc", "SendMessage", "OK", ms)
    ((key, p),) = h.snapshot()
    assert key == ("grpc", "SendMessage", "OK")
    assert p.buckets == [2, 2, 2] and p.count == 6 and p.low == 0.5 and p.high == 9000
    assert p.total == pytest.approx(9009.5)
    h.record("grpc", "SendMessage", "OK", 2)
    assert p.buckets == [2, 2, 2]  # a snapshot is a copy


def test_message_type_and_stats_count_only_what_is_committed():
    msgs = [Message(topic="T", body=b"abc"),
            Message(topic="T", body=b"x", properties={"__SHARDINGKEY": "g"}),
            Message(topic="T", body=b"", properties={"TIMER_DELIVER_MS": "1"}),
            Message(topic="T", body=b"yy", properties={"TRAN_MSG": "true"})]
    assert [message_type(m) for m in msgs] == [NORMAL, FIFO, DELAY, TRANSACTION]
    stats = BrokerStats()
    counted = stats.count_in(msgs + [Message(topic="T", body=b"12345")])
    assert stats.messages_in == {}
    stats.commit_in(counted)
    stats.commit_in(counted)
    assert stats.messages_in[("T", NORMAL)] == [4, 16] and stats.messages_in[("T", FIFO)] == [2, 2]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


async def test_prometheus_endpoint_and_a_failing_callback(caplog):
    m = MetricsManager(MetricsConfig(metrics_exporter_type="PROM", metrics_prom_exporter_host="127.0.0.1", metrics_prom_exporter_port=0),
                       node_type="broker", cluster="C", node_id="b1")
    totals = {"T": 3}
    m.counter("rocketmq_messages_in_total", lambda: [(v, {"topic": k}) for k, v in totals.items()])

    def broken() -> list[tuple[float, dict[str, str]]]:
        raise RuntimeError("boom")

    m.gauge("rocketmq_broken", broken)
    await m.start()
    try:
        m.gauge("rocketmq_topic_number", lambda: [(1, {})])  # registered after start
        m.rpc_latency.record("grpc", "SendMessage", "OK", 4.0)
        totals["T"] = 5
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{m.port}/metrics")
        assert 'rocketmq_messages_in_total{cluster="C",node_id="b1",node_type="broker",topic="T"} 5.0' in text
        assert 'rocketmq_topic_number{cluster="C",node_id="b1",node_type="broker"} 1.0' in text
        assert 'le="5",node_id="b1",node_type="broker",protocol_type="grpc",request_code="SendMessage"' in text
        assert "rocketmq_broken" not in text and "reading rocketmq_broken failed" in caplog.text
        # the port is taken: a second manager on it fails with the key's name
        other = MetricsManager(MetricsConfig(metrics_exporter_type="PROM", metrics_prom_exporter_host="127.0.0.1",
                                             metrics_prom_exporter_port=m.port), node_type="proxy", cluster="C", node_id="p")
        with pytest.raises(OSError, match="metricsPromExporterPort"):
            await other.start()
    finally:
        await m.shutdown()
    with socket.socket() as s:  # closed at shutdown
        assert s.connect_ex(("127.0.0.1", m.port)) != 0


async def test_log_exporter_writes_points(caplog):
    caplog.set_level(logging.INFO, logger="rocketmq.metrics")
    m = MetricsManager(MetricsConfig(metrics_exporter_type="LOG", metric_logging_exporter_interval_in_mills=100),
                       node_type="proxy", cluster="C", node_id="p1")
    m.gauge("rocketmq_proxy_up", lambda: [(1, {"proxy_mode": "cluster"})])
    m.rpc_latency.record("grpc", "QueryRoute", "OK", 0.5)
    await m.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "rocketmq_rpc_latency{" not in caplog.text:
            await asyncio.sleep(0.05)
        assert "rocketmq_proxy_up{cluster=C,node_id=p1,node_type=proxy,proxy_mode=cluster} 1" in caplog.text
        assert "request_code=QueryRoute,response_code=OK} count=1" in caplog.text
    finally:
        await m.shutdown()


async def test_disabled_builds_nothing():
    m = MetricsManager(MetricsConfig(), node_type="broker", cluster="C", node_id="b")
    m.gauge("rocketmq_topic_number", lambda: [(1, {})])
    await m.start()
    assert not m.enabled and m._provider is None
    await m.shutdown()


async def test_otlp_grpc_export_reaches_a_collector():
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc

    got: list[ms.ExportMetricsServiceRequest] = []

    class Collector(ms_grpc.MetricsServiceServicer):
        async def Export(self, request, context):  # noqa: N802 - the generated name
            got.append(request)
            return ms.ExportMetricsServiceResponse()

    server = grpc.aio.server()
    ms_grpc.add_MetricsServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    m = MetricsManager(MetricsConfig(metrics_exporter_type="OTLP_GRPC", metrics_grpc_exporter_target=f"127.0.0.1:{port}",
                                     metric_grpc_exporter_interval_in_mills=100, metrics_grpc_exporter_header="x-k:v"),
                       node_type="broker", cluster="C", node_id="b")
    m.counter("rocketmq_messages_in_total", lambda: [(9, {"topic": "T"})])
    m.rpc_latency.record("remoting", "310", "0", 2.0)
    await m.start()
    try:
        deadline = time.monotonic() + 10
        names: set[str] = set()
        while time.monotonic() < deadline and not {"rocketmq_messages_in_total", "rocketmq_rpc_latency"} <= names:
            await asyncio.sleep(0.05)
            names = {metric.name for req in list(got) for rm in req.resource_metrics for sm in rm.scope_metrics
                     for metric in sm.metrics}
        assert {"rocketmq_messages_in_total", "rocketmq_rpc_latency"} <= names
        hist = next(metric.histogram for req in got for rm in req.resource_metrics for sm in rm.scope_metrics
                    for metric in sm.metrics if metric.name == "rocketmq_rpc_latency")
        point = hist.data_points[0]
        assert point.count == 1 and list(point.explicit_bounds) == [1, 3, 5, 10, 100, 1000, 3000]
        assert list(point.bucket_counts)[1] == 1
    finally:
        await m.shutdown()
        await server.stop(None)
