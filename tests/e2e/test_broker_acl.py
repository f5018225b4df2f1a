"""A Cluster deployment with ACL and metrics: ACL 1.0 on the brokers' remoting port (aclEnable) -- the 4.x
C++ client signs with its session credentials, mqadmin and the proxy (enableAclRpcHookForClusterMode) with
conf/tools.yml -- and the Prometheus endpoints of the proxy and both brokers scraped after SDK traffic."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.proxy_stack import EARLIEST, parse_result, stack
from tests.e2e.test_metrics import prom, scrape, value
from tests.harness import CPP_CLIENT_PYTHON, REPO, command, free_port, run_sdk_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ACL = """\
globalWhiteRemoteAddresses:
accounts:
  - accessKey: app1
    secretKey: app1-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - TopicBrokerAcl=PUB|SUB
  - accessKey: ops
    secretKey: ops-secret
    admin: true
"""


def cpp_send(tmp_path, ns: str, topic: str, ak: str, sk: str, count: int) -> dict:
    cp = subprocess.run([str(CPP_CLIENT_PYTHON), str(REPO / "tests" / "sdk" / "cpp" / "acl_send.py"), ns, topic,
                         ak, sk, str(count)], capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                        env={"HOME": str(tmp_path)})
    lines = [ln for ln in cp.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from the C++ client ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}"
    return dict(json.loads(lines[-1]))


def test_cluster_with_broker_acl_and_metrics(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "plain_acl.yml").write_text(ACL)
    (tmp_path / "conf" / "tools.yml").write_text("accessKey: ops\nsecretKey: ops-secret\n")
    monkeypatch.setenv("ROCKETMQ_HOME", str(tmp_path))  # the servers and mqadmin read conf/ from here
    proxy_port = free_port()
    broker_ports = {"broker-a": free_port(), "broker-b": free_port()}
    with stack("cluster", tmp_path, broker_props=lambda name: {"aclEnable": "true", **prom(broker_ports[name])},
               enableAclRpcHookForClusterMode=True, metricsExporterType="PROM",
               metricsPromExporterHost="127.0.0.1", metricsPromExporterPort=proxy_port, proxyName="proxy-1") as st:
        st.create_topic("TopicBrokerAcl")  # mqadmin signs with tools.yml's admin account
        st.create_topic("TopicBrokerOther")
        st.create_group("GroupBrokerAcl", *EARLIEST)
        # without keys the brokers refuse administration
        bare = tmp_path / "bare"
        bare.mkdir()
        cp = subprocess.run([command("mqadmin"), "updateTopic", "-n", st.namesrv, "-c", "DefaultCluster",
                             "-t", "TopicNoKey"], capture_output=True, text=True, timeout=60,
                            env={"ROCKETMQ_HOME": str(bare), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        assert cp.returncode != 0 and "no access key" in cp.stdout + cp.stderr, (cp.stdout, cp.stderr)
        # the SDK through the proxy, which signs its requests to the brokers
        r = parse_result(run_sdk_script("send_receive.py", st.endpoint, "TopicBrokerAcl", "GroupBrokerAcl", "4",
                                        timeout=120).stdout)
        assert not r["errors"] and set(r["received"]) == set(r["sent"]) and len(r["sent"]) == 4, r
        # metrics: the proxy timed each SendMessage; the brokers counted the messages and timed the
        # proxy's SEND_MESSAGE_V2 (310) requests
        p = scrape(proxy_port)
        assert value(p, "rocketmq_proxy_up", proxy_mode="cluster", node_type="proxy", node_id="proxy-1") == 1
        assert value(p, "rocketmq_rpc_latency_count", protocol_type="grpc", request_code="SendMessage",
                     response_code="OK") == 4
        brokers = [scrape(port) for port in broker_ports.values()]
        assert sum(value(b, "rocketmq_messages_in_total", topic="TopicBrokerAcl") for b in brokers) == 4
        assert sum(value(b, "rocketmq_rpc_latency_count", protocol_type="remoting", request_code="310",
                         response_code="0") for b in brokers) == 4
        if CPP_CLIENT_PYTHON.exists():
            # a real 4.x client's signature is accepted; a wrong secret and a topic without PUB are not
            assert cpp_send(tmp_path, st.namesrv, "TopicBrokerAcl", "app1", "app1-secret", 3) == {
                "ok": 3, "errors": []}
            assert cpp_send(tmp_path, st.namesrv, "TopicBrokerAcl", "app1", "wrong", 1)["ok"] == 0
            assert cpp_send(tmp_path, st.namesrv, "TopicBrokerOther", "app1", "app1-secret", 1)["ok"] == 0
            log = "".join(p.read_text() for p in (tmp_path / "logs" / "rocketmqlogs").glob("*.log"))
            assert "refused: signature check failed for accessKey 'app1'" in log
            assert "refused: accessKey 'app1' has no PUB permission on topic TopicBrokerOther" in log
