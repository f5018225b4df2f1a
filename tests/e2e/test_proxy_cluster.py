"""mqproxy in Cluster mode (real mqnamesrv + two mqbroker 2m-noslave) driven with our own stubs,
with two proxy processes sharing the gRPC port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import re

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from protos.apache.rocketmq.v2 import service_pb2_grpc
from tests.e2e.proxy_stack import stack
from tests.harness import poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
C = pb.Code


def _msg(topic: str, i: int) -> pb.Message:
    m = pb.Message(body=f"cluster-{i}".encode())
    m.topic.name = topic
    m.system_properties.message_id = f"CLUSTERTEST{i:08d}"
    m.system_properties.tag = "TagC"
    m.system_properties.message_type = pb.MessageType.NORMAL
    return m


async def _drive(endpoint: str, topic: str, n_channels: int) -> dict:
    out: dict = {"sent_brokers": set(), "route_brokers": set(), "receive_codes": set()}
    opts = [("grpc.use_local_subchannel_pool", 1)]
    chans = [grpc.aio.insecure_channel(endpoint, options=opts) for _ in range(n_channels)]
    try:
        for k, ch in enumerate(chans):
            md = (("x-mq-client-id", f"cluster-test-{k}"),)
            stub = service_pb2_grpc.MessagingServiceStub(ch)
            req = spb.QueryRouteRequest()
            req.topic.name = topic
            host, port = endpoint.rsplit(":", 1)
            req.endpoints.addresses.add(host=host, port=int(port))
            r = await stub.QueryRoute(req, metadata=md, timeout=10)
            assert r.status.code == C.OK, r.status
            out["route_brokers"] |= {q.broker.name for q in r.message_queues}
            assert all(q.broker.endpoints.addresses[0].port == int(port) for q in r.message_queues)
            for i in range(4):
                s = await stub.SendMessage(spb.SendMessageRequest(messages=[_msg(topic, k * 10 + i)]),
                                           metadata=md, timeout=10)
                assert s.status.code == C.OK, s.status
            h = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            out["health"] = h.status
            rr = spb.ReceiveMessageRequest(batch_size=8)
            rr.group.name = "ClusterGroup"
            rr.message_queue.CopyFrom(r.message_queues[0])
            rr.filter_expression.expression = "*"
            rr.invisible_duration.seconds = 30
            rr.long_polling_timeout.seconds = 5
            async for resp in stub.ReceiveMessage(rr, metadata=md, timeout=10):
                if resp.HasField("status"):
                    out["receive_codes"].add(resp.status.code)
    finally:
        for ch in chans:
            await ch.close()
    return out


def test_cluster_two_brokers_two_proxy_processes(tmp_path):
    with stack("cluster", tmp_path, grpcServerProcesses=2) as st:
        st.create_topic("TopicCluster")
        proxy = st.procs[-1]
        poll_until(lambda: len(re.findall(r"proxy worker \d+ serving",
                                          (tmp_path / "logs/rocketmqlogs/proxy.log").read_text())) >= 1,
                   timeout=20, what="second proxy process")
        out = asyncio.run(_drive(st.endpoint, "TopicCluster", 6))
        assert out["route_brokers"] == {"broker-a", "broker-b"}
        assert out["health"] == health_pb2.HealthCheckResponse.SERVING
        # POP over remoting may not be served by the brokers yet: then a clean UNSUPPORTED, never a hang
        assert out["receive_codes"] <= {C.OK, C.MESSAGE_NOT_FOUND, C.UNSUPPORTED}, out
        assert proxy.proc.poll() is None


def test_sdk_clients_survive_proxy_restart(tmp_path):
    """Sessions live in the client's own streams: a restarted proxy process serves the same clients."""
    import subprocess

    from tests.e2e.proxy_stack import EARLIEST, PROXY_BOOT, parse_result
    from tests.harness import REPO, SDK_PYTHON, ServerProcess

    with stack("cluster", tmp_path) as st:
        st.create_topic("TopicRestart")
        st.create_group("GroupRestart", *EARLIEST)
        sig = tmp_path / "sig"
        sig.mkdir()
        new: ServerProcess | None = None
        client = subprocess.Popen(
            [str(SDK_PYTHON), str(REPO / "tests/sdk/python/restart.py"), st.endpoint, "TopicRestart",
             "GroupRestart", str(sig)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            poll_until(lambda: (sig / "ready").exists() or client.poll() is not None, timeout=60,
                       what="first round trip")
            old = st.procs.pop()
            old.stop()  # waits for the process to exit, so its port is free
            new = ServerProcess(old.args, tmp_path)
            st.procs.append(new)
            new.wait_for(PROXY_BOOT, 30)
            (sig / "go").touch()
            stdout, stderr = client.communicate(timeout=120)
        finally:
            if client.poll() is None:
                client.kill()
            if new is not None:
                new.stop()
        r = parse_result(stdout)
        assert r["before"].get("received") == r["before"].get("sent") is not None, r
        assert r["after"].get("received") == r["after"].get("sent") is not None, (r, stderr[-2000:])
