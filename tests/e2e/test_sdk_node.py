"""The official Node SDK (rocketmq-client-nodejs 1.0.8) against mqproxy in each mode."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.proxy_stack import EARLIEST, needs_node_sdk, parse_result, stack
from tests.harness import NODE_SDK_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240), needs_node_sdk]


# the embedded default (mqproxy alone) is covered by the Python SDK tests
@pytest.fixture(params=["local", "cluster"])
def proxy_stack(request, tmp_path):
    with stack(request.param, tmp_path) as st:
        yield st


def test_node_sdk_basic(proxy_stack):
    st = proxy_stack
    st.create_topic("TopicNode")
    st.create_group("GroupNode", *EARLIEST)
    st.create_group("GroupNode-push", *EARLIEST)
    cp = subprocess.run(["node", "basic.js", st.endpoint, "TopicNode", "GroupNode"], cwd=NODE_SDK_DIR,
                        capture_output=True, text=True, timeout=180)
    r = parse_result(cp.stdout)
    assert "fatal" not in r, r.get("fatal")
    assert not r["errors"], r["errors"]
    got = r["received"]
    assert sorted(m["id"] for m in got) == sorted(r["sent"])
    for m in got:
        assert m["tag"] == "TagA" and m["attempt"] == 1 and m["props"]["color"] == "blue"
        assert m["keys"] == [f"key-{m['props']['idx']}"]
    assert r["redelivered"] == [{"id": got[2]["id"], "attempt": 2}]
    assert r["badTopicCode"] == 40002
    assert r["badInvisibleCode"] == 40011
    assert sorted(b for b in r["pushed"] if b.startswith("node-P")) == ["node-P0", "node-P1", "node-P2"]


def test_consumer_status_reaches_a_node_consumer_through_the_local_proxy(tmp_path):
    """mqadmin consumerStatus -s: broker -> Local-mode proxy -> PrintThreadStackTraceCommand on the Node
    SDK's Telemetry stream -> its answer ("mock stack", as the SDK answers) back to mqadmin."""
    from tests.harness import end_by_stdin, mqadmin, poll_until

    with stack("local", tmp_path) as st:
        st.create_topic("TopicNodeStatus")
        st.create_group("GroupNodeStatus", *EARLIEST)
        p = subprocess.Popen(["node", "stay.js", st.endpoint, "TopicNodeStatus", "GroupNodeStatus"], cwd=NODE_SDK_DIR,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.startswith("READY "), (line, p.stderr.read() if p.poll() is not None else "")
            client_id = line.split()[1]

            def status() -> str:
                cp = mqadmin("consumerStatus", "-n", st.namesrv, "-g", "GroupNodeStatus", "-i", client_id, "-s",
                             ok=False, timeout=30)
                return cp.stdout if "#Consumer jstack#" in cp.stdout else ""

            out = poll_until(status, timeout=40, interval=0.5, what="the Node consumer's thread stack")
            assert "mock stack" in out and "TopicNodeStatus" in out, out
            # consume a stored message once more on that consumer: VerifyMessageCommand on its stream; the
            # Node SDK answers NOT_IMPLEMENTED (in a verify_message_command), so no consume result
            sent = mqadmin("sendMessage", "-n", st.namesrv, "-t", "TopicNodeStatus", "-p", "again").stdout
            msg_id = sent.strip().splitlines()[-1].split()[-1]  # its unique key: looked up in the topic
            out = mqadmin("queryMsgById", "-n", st.namesrv, "-i", msg_id, "-t", "TopicNodeStatus",
                          "-g", "GroupNodeStatus", "-d", client_id, timeout=30).stdout
            assert "ConsumeMessageDirectlyResult [" in out and "consumeResult=null" in out, out
            assert "remark=from gRPC client" in out, out
        finally:
            end_by_stdin(p)
