"""FIFO, delay and transaction messages through the proxy with the official Python SDK."""

from __future__ import annotations

import pytest

from tests.e2e.proxy_stack import EARLIEST, parse_result, stack
from tests.harness import run_sdk_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


# Local and Cluster mode are covered in depth by tests/e2e/test_types_*.py; this one proves the embedded
# default (`mqproxy` alone). In Cluster mode its single SimpleConsumer over three topics and two brokers
# polls each (topic, broker) pair only every few receives, which made its 30 s window a race.
@pytest.mark.parametrize("mode", ["embedded"])
def test_fifo_delay_transaction(mode, tmp_path):
    with stack(mode, tmp_path) as st:
        for t in ("FIFO", "DELAY", "TRANSACTION"):
            st.create_topic(f"Topic{t}", t)
        st.create_group("GroupTypes", "-o", "true", *EARLIEST)
        cp = run_sdk_script("types_scenario.py", st.endpoint, "TopicFIFO", "TopicDELAY", "TopicTRANSACTION",
                            "GroupTypes", "30", timeout=200)
        r = parse_result(cp.stdout)
        fifo = r["fifo"]
        assert "error" not in fifo, fifo
        for g in ("0", "1"):
            bodies = [m["body"] for m in fifo["received"] if m["group"] == f"order-{g}"]
            assert bodies == [f"fifo-{g}-{i}" for i in range(3)], fifo["received"]
        delay = r["delay"]
        assert "error" not in delay, delay
        assert [m["id"] for m in delay["received"]] == [delay["sent"]]
        assert delay["after_s"] >= 1.5
        tx = r["transaction"]
        assert "error" not in tx, tx
        got = {m["body"] for m in tx["received"]}
        assert "tx-commit" in got and "tx-rollback" not in got
        # check-back through the proxy's Telemetry stream resolved the unknown one
        assert "tx-unknown" in got, (tx, r["checked"])
        assert tx["ids"]["unknown"] in r["checked"]
