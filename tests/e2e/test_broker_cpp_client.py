"""The Apache RocketMQ 4.x C++ client (rocketmq==0.4.4 wheel) against real mqnamesrv + mqbroker:
100 messages with send_sync, a PushConsumer receives each exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from tests.harness import (
    CPP_CLIENT_PYTHON,
    REPO,
    ServerProcess,
    command,
    end_by_stdin,
    free_port,
    mqadmin,
    poll_until,
    server,
)

pytestmark = pytest.mark.e2e


async def create_topic(addr: str, topic: str) -> None:
    c = RemotingClient()
    try:
        r = await c.invoke(addr, RemotingCommand.request(RequestCode.UPDATE_AND_CREATE_TOPIC, {
            "topic": topic, "readQueueNums": "4", "writeQueueNums": "4", "perm": "6"}), 5)
        assert r.code == ResponseCode.SUCCESS, r.remark
    finally:
        await c.close()


needs_cpp = pytest.mark.skipif(not CPP_CLIENT_PYTHON.exists(), reason=".venv-cpp missing (.ci/run creates it)")


@contextlib.contextmanager
def cpp_stack(tmp_path: Path, topic: str, broker_conf: str = "") -> Iterator[tuple[str, ServerProcess]]:
    """mqnamesrv + mqbroker with ``topic`` created and routable: yields (NameServer address, broker)."""
    ns_port, port = free_port(), free_port()
    ns = f"127.0.0.1:{ns_port}"
    conf = tmp_path / "broker.conf"
    conf.write_text(f"listenPort={port}\nmappedFileSizeCommitLog=4194304\n{broker_conf}")
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, "boot success"), \
            server([command("mqbroker"), "-n", ns, "-c", str(conf)], tmp_path, "boot success") as broker:
        asyncio.run(create_topic(f"127.0.0.1:{port}", topic))
        # the broker re-registers with the NameServer after the topic change: wait until the route shows it
        poll_until(lambda: mqadmin("topicRoute", "-n", ns, "-t", topic, ok=False, timeout=10).returncode == 0,
                   timeout=15, what=f"{topic} route on the NameServer")
        yield ns, broker


def run_cpp(tmp_path: Path, broker: ServerProcess, script: str, *args: str) -> tuple[dict[str, Any], str, int]:
    """Run tests/sdk/cpp/<script> with the C++ client; its last JSON line, stderr and exit code."""
    cp = subprocess.run([str(CPP_CLIENT_PYTHON), str(REPO / "tests" / "sdk" / "cpp" / script), *args],
                        capture_output=True, text=True, timeout=150, cwd=str(tmp_path), env={"HOME": str(tmp_path)})
    lines = [ln for ln in cp.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from the C++ client ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}\n{broker.text()}"
    return json.loads(lines[-1]), cp.stderr, cp.returncode


@needs_cpp
def test_cpp_client_send_sync_and_push_consumer(tmp_path: Path) -> None:
    with cpp_stack(tmp_path, "CppTopic") as (ns, broker):
        result, err, rc = run_cpp(tmp_path, broker, "send_and_consume.py", ns, "CppTopic", "CppGroup", "100")
        assert result == {"sent": 100, "received": 100, "duplicates": 0, "missing": []}, (result, err)
        assert rc == 0


@needs_cpp
def test_cpp_client_reconsume_later_goes_through_retry_topic(tmp_path: Path) -> None:
    # short delay levels so that the retry (level 3 + reconsumeTimes) comes back within a second
    levels = "messageDelayLevel=1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s\n"
    with cpp_stack(tmp_path, "CppRetry", levels) as (ns, broker):
        result, err, _ = run_cpp(tmp_path, broker, "retry.py", ns, "CppRetry", "CppRetryG", "5")
        assert result == {"sent": 5, "first": 5, "redelivered": 5, "reconsume_times": [1]}, (result, err)


@needs_cpp
def test_cpp_client_orderly(tmp_path: Path) -> None:
    with cpp_stack(tmp_path, "CppOrder") as (ns, broker):
        result, err, _ = run_cpp(tmp_path, broker, "orderly.py", ns, "CppOrder", "CppOrderG", "60")
        assert result == {"sent": 60, "received": 60, "in_order": True}, err


@needs_cpp
def test_consumer_status_asks_a_remoting_consumer_for_its_running_info(tmp_path: Path) -> None:
    with cpp_stack(tmp_path, "CppStatus") as (ns, broker):
        p = subprocess.Popen([str(CPP_CLIENT_PYTHON), str(REPO / "tests" / "sdk" / "cpp" / "running_info.py"), ns,
                              "CppStatus", "CppStatusG"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=str(tmp_path), env={"HOME": str(tmp_path)})
        try:
            assert p.stdout is not None and json.loads(p.stdout.readline()) == {"started": True}

            def status() -> str:
                cp = mqadmin("consumerStatus", "-n", ns, "-g", "CppStatusG", ok=False, timeout=30)
                return cp.stdout if cp.returncode == 0 and "#Consumer Properties#" in cp.stdout else ""

            out = poll_until(status, timeout=40, interval=0.5, what="the C++ consumer's running info")
            assert "CppStatus" in out and "#Consumer Subscription#" in out, out
            # a client the group does not have
            cp = mqadmin("consumerStatus", "-n", ns, "-g", "CppStatusG", "-i", "nobody@0", ok=False, timeout=30)
            assert cp.returncode != 0 and "not online" in cp.stderr, (cp.stdout, cp.stderr)
        finally:
            end_by_stdin(p)
