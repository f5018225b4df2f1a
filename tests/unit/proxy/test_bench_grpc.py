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
    assert "msgs/s" in cp.stdout.splitlines()[0]
