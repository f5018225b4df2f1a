"""TLS on the proxy's port with the official SDKs: in RocketMQ's default permissive mode the same port
serves the Python and Node.js SDKs' TLS and plaintext connections (the Java and Go SDKs use TLS by
default), with a certificate from tlsCertPath / tlsKeyPath that the clients verify."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from proxy.tls import self_signed
from tests.e2e.proxy_stack import EARLIEST, needs_node_sdk, parse_result, stack
from tests.harness import NODE_SDK_DIR, poll_until, run_sdk_script

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def tls_stack(tmp_path):
    cert, key = self_signed(("localhost",))
    (tmp_path / "rocketmq.crt").write_bytes(cert)
    (tmp_path / "rocketmq.key").write_bytes(key)
    with stack("broker-proxy", tmp_path, tlsTestModeEnable=False, tlsCertPath=str(tmp_path / "rocketmq.crt"),
               tlsKeyPath=str(tmp_path / "rocketmq.key")) as st:
        st.create_topic("TopicTls")
        yield st


def _roots(st) -> dict[str, str]:  # gRPC (C core and grpc-js) trusts the test's certificate
    return {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(st.home / "rocketmq.crt")}


def test_python_sdk_over_tls_and_plaintext_on_one_port(tls_stack):
    st = tls_stack
    for tls in ("1", "0"):
        group = f"GroupTls{tls}"
        st.create_group(group, *EARLIEST)
        r = parse_result(run_sdk_script("send_receive.py", st.endpoint, "TopicTls", group, "4",
                                        env={**_roots(st), "SDK_TLS": tls}, timeout=150).stdout)
        assert not r["errors"], (tls, r)
        assert len(r["sent"]) == 4 and set(r["sent"]) <= set(r["received"]), (tls, r)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_relay_process_ends_with_a_killed_proxy(tls_stack):
    broker = tls_stack.procs[-1].proc
    relays = _children(broker.pid)
    assert len(relays) == 1, relays
    broker.kill()  # SIGKILL: no shutdown code runs
    broker.wait(10)
    poll_until(lambda: not _running(relays[0]), timeout=10, what="the relay ending with the proxy")


def _running(pid: int) -> bool:
    try:  # a zombie (Z) has ended; whoever adopted it may not have reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@needs_node_sdk
def test_node_sdk_over_tls(tls_stack):
    st = tls_stack
    st.create_group("GroupTlsNode", *EARLIEST)
    cp = subprocess.run(["node", "tls.js", st.endpoint, "TopicTls", "GroupTlsNode", "3"], cwd=NODE_SDK_DIR,
                        capture_output=True, text=True, timeout=180, env={**os.environ, **_roots(st)})
    r = parse_result(cp.stdout)
    assert "fatal" not in r, r.get("fatal")
    assert not r["errors"], r
    assert len(r["sent"]) == 3 and sorted(r["received"]) == sorted(r["sent"]), r
