"""TLS on the proxy's port with the official SDKs: in RocketMQ's default permissive mode the same port
serves the Python and Node.js SDKs' TLS and plaintext connections (the Java and Go SDKs use TLS by
default), with a certificate from tlsCertPath / tlsKeyPath that the clients verify."""

from __future__ import annotations

import os
import subprocess

import pytest

from proxy.tls import self_signed
from tests.e2e.proxy_stack import EARLIEST, needs_node_sdk, parse_result, stack
from tests.harness import NODE_SDK_DIR, run_sdk_script

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
