"""mqproxy command line: boot line on stdout and in proxy.log, SIGTERM stops it cleanly, bad config."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from tests.e2e.proxy_stack import PROXY_BOOT, stack
from tests.harness import command

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_embedded_boot_and_sigterm(tmp_path):
    with stack("embedded", tmp_path) as st:
        proc = st.procs[0]
        assert PROXY_BOOT in proc.text()
        log = (tmp_path / "logs" / "rocketmqlogs" / "proxy.log").read_text()
        assert PROXY_BOOT in log
        proc.kill(signal.SIGTERM)
        assert proc.proc.returncode == 0, proc.text()
    log = (tmp_path / "logs" / "rocketmqlogs" / "proxy.log").read_text()
    assert "rocketmq-proxy shutdown" in log


def test_help_and_bad_config(tmp_path):
    cp = subprocess.run([command("mqproxy"), "--help"], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0 and "-pm" in cp.stdout and "--proxyConfigPath" in cp.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"proxyMode": "SIDEWAYS"}))
    cp = subprocess.run([command("mqproxy"), "-pc", str(bad)], capture_output=True, text=True, timeout=30,
                        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert cp.returncode == 2 and "proxyMode" in cp.stderr
    cp = subprocess.run([command("mqproxy"), "-pm", "cluster"], capture_output=True, text=True, timeout=30,
                        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert cp.returncode == 2 and "NameServer" in cp.stderr
