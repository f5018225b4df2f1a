"""The Apache RocketMQ 4.x C++ client (rocketmq==0.4.4 wheel) against real mqnamesrv + mqbroker:
100 messages with send_sync, a PushConsumer receives each exactly once."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from tests.harness import CPP_CLIENT_PYTHON, REPO, command, free_port, poll_until, server

pytestmark = pytest.mark.e2e


async def create_topic(addr: str, topic: str) -> None:
    c = RemotingClient()
    try:
        r = await c.invoke(addr, RemotingCommand.request(RequestCode.UPDATE_AND_CREATE_TOPIC, {
            "topic": topic, "readQueueNums": "4", "writeQueueNums": "4", "perm": "6"}), 5)
        assert r.code == ResponseCode.SUCCESS, r.remark
    finally:
        await c.close()


@pytest.mark.skipif(not CPP_CLIENT_PYTHON.exists(), reason=".venv-cpp missing (.ci/run creates it)")
def test_cpp_client_send_sync_and_push_consumer(tmp_path: Path) -> None:
    ns_port, port = free_port(), free_port()
    ns = f"127.0.0.1:{ns_port}"
    conf = tmp_path / "broker.conf"
    conf.write_text(f"listenPort={port}\nmappedFileSizeCommitLog=4194304\n")
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, "boot success"), \
            server([command("mqbroker"), "-n", ns, "-c", str(conf)], tmp_path, "boot success") as broker:
        asyncio.run(create_topic(f"127.0.0.1:{port}", "CppTopic"))
        # the broker re-registers with the NameServer after the topic change: wait until the route shows it
        poll_until(lambda: subprocess.run([command("mqadmin"), "topicRoute", "-n", ns, "-t", "CppTopic"],
                                          capture_output=True, timeout=10).returncode == 0,
                   timeout=15, what="CppTopic route on the NameServer")
        cp = subprocess.run(
            [str(CPP_CLIENT_PYTHON), str(REPO / "tests" / "sdk" / "cpp" / "send_and_consume.py"), ns, "CppTopic",
             "CppGroup", "100"],
            capture_output=True, text=True, timeout=150, cwd=str(tmp_path), env={"HOME": str(tmp_path)},
        )
        lines = [ln for ln in cp.stdout.splitlines() if ln.startswith("{")]
        assert lines, f"no result from the C++ client ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}\n{broker.text()}"
        result = json.loads(lines[-1])
        assert result == {"sent": 100, "received": 100, "duplicates": 0, "missing": []}, (result, cp.stderr)
        assert cp.returncode == 0


@pytest.mark.skipif(not CPP_CLIENT_PYTHON.exists(), reason=".venv-cpp missing (.ci/run creates it)")
def test_cpp_client_reconsume_later_goes_through_retry_topic(tmp_path: Path) -> None:
    ns_port, port = free_port(), free_port()
    ns = f"127.0.0.1:{ns_port}"
    conf = tmp_path / "broker.conf"
    # short delay levels so that the retry (level 3 + reconsumeTimes) comes back within a second
    conf.write_text(f"listenPort={port}\nmappedFileSizeCommitLog=4194304\n"
                    "messageDelayLevel=1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s\n")
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, "boot success"), \
            server([command("mqbroker"), "-n", ns, "-c", str(conf)], tmp_path, "boot success") as broker:
        asyncio.run(create_topic(f"127.0.0.1:{port}", "CppRetry"))
        cp = subprocess.run(
            [str(CPP_CLIENT_PYTHON), str(REPO / "tests" / "sdk" / "cpp" / "retry.py"), ns, "CppRetry", "CppRetryG", "5"],
            capture_output=True, text=True, timeout=150, cwd=str(tmp_path), env={"HOME": str(tmp_path)},
        )
        lines = [ln for ln in cp.stdout.splitlines() if ln.startswith("{")]
        assert lines, f"no result ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}\n{broker.text()}"
        result = json.loads(lines[-1])
        assert result == {"sent": 5, "first": 5, "redelivered": 5, "reconsume_times": [1]}, (result, cp.stderr)


@pytest.mark.skipif(not CPP_CLIENT_PYTHON.exists(), reason=".venv-cpp missing (.ci/run creates it)")
def test_cpp_client_orderly(tmp_path: Path) -> None:
    ns_port, port = free_port(), free_port()
    ns = f"127.0.0.1:{ns_port}"
    conf = tmp_path / "broker.conf"
    conf.write_text(f"listenPort={port}\nmappedFileSizeCommitLog=4194304\n")
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, "boot success"), \
            server([command("mqbroker"), "-n", ns, "-c", str(conf)], tmp_path, "boot success") as broker:
        asyncio.run(create_topic(f"127.0.0.1:{port}", "CppOrder"))
        cp = subprocess.run(
            [str(CPP_CLIENT_PYTHON), str(REPO / "tests" / "sdk" / "cpp" / "orderly.py"), ns, "CppOrder", "CppOrderG",
             "60"],
            capture_output=True, text=True, timeout=150, cwd=str(tmp_path), env={"HOME": str(tmp_path)},
        )
        lines = [ln for ln in cp.stdout.splitlines() if ln.startswith("{")]
        assert lines, f"no result ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}\n{broker.text()}"
        assert json.loads(lines[-1]) == {"sent": 60, "received": 60, "in_order": True}, cp.stderr
