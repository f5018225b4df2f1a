"""Bad input never crashes the proxy in Cluster mode: the seeded requests of tests/proxy_fuzz.py against
mqproxy in front of two mqbroker processes (2m-noslave) found through mqnamesrv. Every answer carries a
status, no process logs an ERROR, and the proxy still routes a normal request afterwards."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest

from tests import proxy_fuzz as fz
from tests.e2e.proxy_stack import EARLIEST, stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _errors(home: Path) -> list[str]:
    out = []
    for log in sorted((home / "logs" / "rocketmqlogs").glob("*.log")):
        out += [f"{log.name}: {line}" for line in log.read_text(errors="replace").splitlines()
                if re.search(r" ERROR |^Traceback", line)]
    return out


async def test_cluster_proxy_answers_random_requests(tmp_path: Path) -> None:
    with stack("cluster", tmp_path) as st:
        st.create_topic("TopicF")
        st.create_topic("TopicFifo", "FIFO")
        st.create_group("GroupF", *EARLIEST)
        async with grpc.aio.insecure_channel(st.endpoint) as channel:
            problems = await fz.random_requests(channel)
            problems += await fz.undecodable_requests(channel)
            handles = await fz.receipt_handles(channel, ["broker-a", "broker-b"])
            assert handles, "nothing received to take receipt handles from"
            problems += await fz.mutated_handles(channel, handles)
            problems += _errors(tmp_path)
            assert not problems, "\n".join(sorted(set(problems))[:30])
            await fz.still_serving(channel, 16)  # TopicF: 8 queues on each of the two brokers
