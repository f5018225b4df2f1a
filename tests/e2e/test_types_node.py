"""Issue 5 with the official Node SDK (rocketmq-client-nodejs 1.0.8): FIFO and delay, Local and Cluster mode."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.proxy_stack import needs_node_sdk, parse_result
from tests.e2e.test_types_support import MODES, TypesStack, check_fifo_order, types_stack
from tests.harness import NODE_SDK_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240), needs_node_sdk]

EARLIEST = ("--attributes", "+consumeFromWhere=EARLIEST")
LATE_MS = 1500


@pytest.fixture(scope="module", params=MODES)
def st(request, tmp_path_factory):
    with types_stack(request.param, tmp_path_factory.mktemp(f"node-{request.param}"),
                     proxy={"minInvisibleTimeMillsForRecv": 1000}) as s:
        yield s


def test_node_fifo_and_delay(st: TypesStack) -> None:
    st.create_topic("NodeFifo", "FIFO")
    st.create_topic("NodeDelay", "DELAY", broker="broker-a")  # one broker: see test_types_delay_tx
    st.create_group("GNodeFifo", "-o", "true", *EARLIEST)
    st.create_group("GNodeDelay", *EARLIEST)
    cp = subprocess.run(["node", "types_fifo_delay.js", st.endpoint, "NodeFifo", "GNodeFifo", "NodeDelay",
                         "GNodeDelay"], cwd=NODE_SDK_DIR, capture_output=True, text=True, timeout=200)
    r = parse_result(cp.stdout)
    assert "fatal" not in r, (r.get("fatal"), cp.stderr[-2000:], st.logs())

    fifo = r["fifo"]
    assert fifo["badGroupCode"] == 40006
    held = fifo["held"]
    assert held and held["body"] in ("na-0", "nb-0") and held["attempt"] == 1, fifo
    deliveries = []
    for b in fifo["batches"]:
        for m in b["messages"]:
            m["acked"] = b["acked"]
        deliveries.append(b["messages"])
    check_fifo_order(deliveries, fifo["sent"])
    again = [m for b in deliveries[1:] for m in b if m["body"] == held["body"]]
    assert again and again[0]["attempt"] == 2, deliveries
    for g, seq in fifo["sent"].items():
        acked = [m["body"] for b in deliveries for m in b if m["acked"] and m["group"] == g]
        assert list(dict.fromkeys(acked)) == seq, (g, acked)

    delay = r["delay"]
    assert delay["tooFarCode"] == 40012
    assert "recallError" not in delay, delay
    assert delay["recalledId"] == delay["sent"]["nd-recalled"]["id"]
    got = {m["body"]: m for m in delay["received"]}
    assert sorted(got) == ["nd-a", "nd-b"] and delay["after"] == [], delay
    for body, m in got.items():
        sent = delay["sent"][body]
        assert m["id"] == sent["id"] and m["delivery"] == sent["due"]
        assert m["recv"] >= sent["due"], f"{body} {sent['due'] - m['recv']} ms early"
        assert m["recv"] - sent["due"] <= LATE_MS, f"{body} {m['recv'] - sent['due']} ms late"
