"""kill -9 of a SYNC_FLUSH broker while the official SDK sends: every acknowledged message comes back.

The producer records each message id the proxy acknowledged; the broker is killed with SIGKILL mid
stream, restarted on the same store (abort file -> recovery), and a SimpleConsumer must then receive
every recorded id (in Local mode each once on its first delivery).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.proxy_stack import BROKER_BOOT, EARLIEST, PROXY_BOOT, parse_result, stack
from tests.harness import REPO, SDK_PYTHON, ServerProcess, count_lines, poll_until, run_sdk_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ACKED_BEFORE_KILL = 300


@pytest.mark.parametrize("mode", ["broker-proxy", "cluster"])
def test_acked_messages_survive_broker_kill9(mode, tmp_path):
    with stack(mode, tmp_path, flush="SYNC_FLUSH") as st:
        st.create_topic("TopicCrash")
        st.create_group("GroupCrash", *EARLIEST)
        acked = tmp_path / "acked.txt"
        producer = subprocess.Popen(
            [str(SDK_PYTHON), str(REPO / "tests/sdk/python/crash_send.py"), st.endpoint, "TopicCrash", str(acked)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            poll_until(lambda: count_lines(acked) >= ACKED_BEFORE_KILL or producer.poll() is not None, timeout=90,
                       interval=0.05, what=f"{ACKED_BEFORE_KILL} acknowledged sends")
            assert producer.poll() is None, producer.communicate()[0][-3000:]
            # broker-proxy: the broker process (the proxy lives in it); cluster: broker-a behind mqproxy
            victim = st.procs[1]
            victim.kill()  # SIGKILL to the broker mid stream
        finally:
            producer.kill()
            producer.communicate(timeout=30)
        sent = count_lines(acked)
        assert sent >= ACKED_BEFORE_KILL
        restarted = ServerProcess(victim.args, tmp_path)
        st.procs[1] = restarted  # (the stack stops the processes it started; this one is stopped below)
        try:
            restarted.wait_for(PROXY_BOOT if mode == "broker-proxy" else BROKER_BOOT, 60)
            log = (tmp_path / "logs" / "rocketmqlogs" / "broker.log").read_text()
            assert "unclean stop detected" in log, log[-3000:]  # the restart went through recovery
            cp = run_sdk_script("drain.py", st.endpoint, "TopicCrash", "GroupCrash", str(acked), "120",
                                timeout=200)
        finally:
            restarted.stop()
        r = parse_result(cp.stdout)
        assert r["missing_count"] == 0, (r, st.logs())
        # Local: one broker, so a second first-delivery copy could only come from recovery. Cluster: the SDK
        # resends a send whose answer the kill lost (same message id) to broker-b, so each of the 4 sends in
        # flight may arrive twice -- RocketMQ's at-least-once, not a store fault.
        assert len(r["attempt1_dups"]) <= (0 if mode == "broker-proxy" else 4), r
        assert r["received"] >= sent
