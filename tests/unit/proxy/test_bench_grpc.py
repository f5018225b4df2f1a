"""Smoke test of mqbench producer/consumer against its own no-op server (--bare)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("mode", ["producer", "consumer"])
def test_bench_bare_smoke(mode):
    cp = subprocess.run(
        [sys.executable, "-m", "backends.tools.bench_grpc", mode, "--bare", "--seconds", "1", "--warmup", "0.2",
         "--concurrency", "2", "--batch", "4", "--topic", "T"],
        capture_output=True, text=True, timeout=60,
    )
    assert cp.returncode == 0, cp.stderr
    assert f"[bare] SUMMARY {mode}:" in cp.stdout and "p999" in cp.stdout
    summary = next(line for line in cp.stdout.splitlines() if "SUMMARY" in line)
    p50 = float(summary.split("p50 ")[1].split()[0])
    assert p50 > 0, summary  # producer: each SendMessage; consumer: each receive that got messages
    assert "msgs/s" in cp.stdout.splitlines()[0]


def _template(size: int, batch: int):
    import argparse

    from backends.tools.bench_grpc import SendTemplate

    return SendTemplate(argparse.Namespace(size=size, batch=batch, topic="T", tag="bench"))


def test_send_template_fresh_ids_and_send_time_per_request():
    import time

    from backends.tools.bench_grpc import sent_at_ms
    from protos.apache.rocketmq.v2 import service_pb2 as spb

    t = _template(1024, 3)
    before = time.time() * 1000
    reqs = [spb.SendMessageRequest.FromString(t.next()) for _ in range(2)]
    after = time.time() * 1000
    ids = [m.system_properties.message_id for r in reqs for m in r.messages]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert [int(i[16:], 16) for i in ids] == list(range(6))
    for r in reqs:
        for m in r.messages:
            assert len(m.body) == 1024 and m.topic.name == "T" and m.system_properties.tag == "bench"
            sent = sent_at_ms(m.body)
            assert sent is not None and before - 1 <= sent <= after + 1
            assert m.system_properties.born_timestamp.seconds > 0


def test_send_template_small_body_has_no_stamp():
    from backends.tools.bench_grpc import sent_at_ms
    from protos.apache.rocketmq.v2 import service_pb2 as spb

    r = spb.SendMessageRequest.FromString(_template(8, 2).next())
    assert [len(m.body) for m in r.messages] == [8, 8]
    assert all(sent_at_ms(m.body) is None for m in r.messages)
    assert sent_at_ms(b"hello world, not stamped") is None
