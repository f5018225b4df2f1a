"""Metrics export (metricsExporterType=PROM): the official Python SDK sends and consumes through the
proxy, then the Prometheus endpoints of the broker and the proxy are scraped and their figures checked
against what the SDK did."""

from __future__ import annotations

import re
import urllib.request

import pytest

from tests.e2e.proxy_stack import EARLIEST, parse_result, stack
from tests.harness import free_port, poll_until, run_sdk_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items()))


def prom(port: int) -> dict[str, str]:
    return {"metricsExporterType": "PROM", "metricsPromExporterHost": "127.0.0.1",
            "metricsPromExporterPort": str(port), "metricsLabel": "env:test"}


def test_local_mode_broker_and_proxy_metrics(tmp_path):
    port = free_port()
    with stack("broker-proxy", tmp_path, broker_props=lambda _name: prom(port)) as st:
        st.create_topic("TopicMetrics")
        st.create_group("GroupMetrics", *EARLIEST)
        r = parse_result(run_sdk_script("send_receive.py", st.endpoint, "TopicMetrics", "GroupMetrics", "7",
                                        timeout=120).stdout)
        assert not r["errors"] and set(r["received"]) == set(r["sent"]) and len(r["sent"]) == 7, r
        s = scrape(port)
        node = {"cluster": "DefaultCluster", "node_type": "broker", "node_id": "broker-a", "env": "test"}
        assert value(s, "rocketmq_messages_in_total", topic="TopicMetrics", message_type="Normal", **node) == 7
        assert value(s, "rocketmq_throughput_in_total", topic="TopicMetrics") == sum(
            len(f"body-{i}") for i in range(7))
        assert value(s, "rocketmq_messages_out_total", topic="TopicMetrics", consumer_group="GroupMetrics",
                     is_retry="false") == 7
        assert value(s, "rocketmq_topic_number") >= 1
        assert value(s, "rocketmq_broker_permission") == 6
        assert value(s, "rocketmq_proxy_up", proxy_mode="local") == 1
        # every SendMessage of the SDK answered OK, timed into the histogram's buckets
        sends = value(s, "rocketmq_rpc_latency_count", protocol_type="grpc", request_code="SendMessage",
                      response_code="OK")
        assert sends == 7
        assert value(s, "rocketmq_rpc_latency_bucket", protocol_type="grpc", request_code="SendMessage",
                     response_code="OK", le="+Inf") == 7
        assert value(s, "rocketmq_rpc_latency_count", protocol_type="grpc", request_code="AckMessage") >= 1
        # the acks reach the committed offset: nothing left to consume
        poll_until(lambda: value(scrape(port), "rocketmq_consumer_lag_messages", topic="TopicMetrics",
                                 consumer_group="GroupMetrics") == 0, timeout=15, what="consumer lag 0")

# Cluster mode (mqproxy + two brokers, both endpoints scraped): tests/e2e/test_broker_acl.py, in the same
# stack as the brokers' ACL.
