"""Issue 5 with the 4.x C++ client (rocketmq==0.4.4) over remoting against mqnamesrv + mqbroker:
DELAY levels (messageDelayLevel) and TIMER_DELIVER_MS are never early and on time, a message that always
fails goes through %RETRY% (CONSUMER_SEND_MSG_BACK) until the group's retryMaxTimes, then to
%DLQ%<group>, and a PullConsumer with a tag expression gets exactly the matching messages."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_types_support import types_stack
from tests.harness import CPP_CLIENT_PYTHON, REPO, poll_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CPP_CLIENT_PYTHON.exists(), reason=".venv-cpp missing (.ci/run creates it)"),
]

LEVELS = "1s 2s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s"  # level 1: 1 s, level 2: 2 s, retries 1 s
LATE_MS = 1500


def test_cpp_delay_levels_and_retry_to_dlq(tmp_path: Path) -> None:
    with types_stack("bare", tmp_path, broker={"messageDelayLevel": LEVELS}) as st:
        for t in ("CppDelay", "CppDead", "CppPull"):
            st.create_topic(t, broker="broker-a")
        st.create_group("CppDelayG")
        st.create_group("CppDeadG", "-r", "1")  # one retry, then the dead letter queue
        cp = subprocess.run(
            [str(CPP_CLIENT_PYTHON), str(REPO / "tests" / "sdk" / "cpp" / "types_delay_retry.py"), st.namesrv,
             "CppDelay", "CppDelayG", "CppDead", "CppDeadG"],
            capture_output=True, text=True, timeout=180, cwd=str(tmp_path), env={"HOME": str(tmp_path)},
        )
        lines = [ln for ln in cp.stdout.splitlines() if ln.startswith("{")]
        assert lines, f"no result ({cp.returncode}):\n{cp.stdout}\n{cp.stderr[-3000:]}\n{st.logs()}"
        r = json.loads(lines[-1])
        sent, got = r["sent"], r["received"]
        assert set(got) == {"plain", "lvl1", "lvl2", "timed"}, r
        # TIMER_DELIVER_MS from a 4.x client: on time; beyond timerMaxDelaySec refused, 2 days accepted
        assert r["timed_due"] <= got["timed"] <= r["timed_due"] + LATE_MS, r
        assert r["far_error"] and r["two_days_error"] is None, r
        assert got["plain"] - sent["plain"][1] < 1000, r
        for body, delay in (("lvl1", 1000), ("lvl2", 2000)):
            before, after = sent[body]
            assert got[body] >= before + delay, f"{body} {before + delay - got[body]} ms early: {r}"
            assert got[body] - (after + delay) <= LATE_MS, f"{body} {got[body] - after - delay} ms late: {r}"
        # first delivery, then one retry through %RETRY%CppDeadG (reconsume_times 1), then no more
        assert r["dead_reconsume_times"] == [0, 1], r

        def dlq_count() -> int:
            out = st.admin("topicStatus", "-t", "%DLQ%CppDeadG")
            return sum(int(m.group(1)) for m in re.finditer(r"^\S+\s+\d+\s+\d+\s+(\d+)", out, re.M))

        poll_until(lambda: dlq_count() >= 1, timeout=30, interval=0.5, what="%DLQ%CppDeadG holds the message")
        assert dlq_count() == 1

        # PullConsumer with a tag expression: only A, every one, in queue offset order
        cp = subprocess.run(
            [str(CPP_CLIENT_PYTHON), str(REPO / "tests" / "sdk" / "cpp" / "types_pull.py"), st.namesrv, "CppPull",
             "CppPullG", "20"],
            capture_output=True, text=True, timeout=120, cwd=str(tmp_path), env={"HOME": str(tmp_path)},
        )
        lines = [ln for ln in cp.stdout.splitlines() if ln.startswith("{")]
        assert lines, f"no pull result ({cp.returncode}):\n{cp.stdout}\n{cp.stderr[-3000:]}"
        p = json.loads(lines[-1])
        assert sorted(b for b, _, _ in p["pulled"]) == sorted(p["sent_a"]), p
        assert {t for _, t, _ in p["pulled"]} == {"A"}
