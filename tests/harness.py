"""Helpers for end-to-end tests: free loopback ports, real server processes, SDK client processes.

Every wait here is bounded; a server that does not print its boot line in time fails the test with
its output attached.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SDK_PYTHON = Path(os.environ.get("RMQ_SDK_PYTHON", REPO / ".venv-sdk" / "bin" / "python"))
CPP_CLIENT_PYTHON = Path(os.environ.get("RMQ_CPP_PYTHON", REPO / ".venv-cpp" / "bin" / "python"))
NODE_SDK_DIR = REPO / "tests" / "sdk" / "node"


_handed_out: set[int] = set()  # ports (and their +1) free_port gave this test process


def free_port() -> int:
    """A free TCP port on 127.0.0.1 whose +1 is also free (brokers use listenPort+1 for HA), and neither
    of them a port (or the +1) handed out before: servers of one stack are given their ports before any
    of them binds, so a broker's listenPort+1 must not be another server's port."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65534 or {port, port + 1} & _handed_out:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        _handed_out.update((port, port + 1))
        return port
    raise RuntimeError("no free port pair")


def wait_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


def end_by_stdin(p: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """End a client script that runs until its standard input closes (killed if it does not)."""
    if p.stdin is not None:
        p.stdin.close()
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)


def poll_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Call ``predicate`` until it returns a truthy value (returned) or ``timeout`` passes (raises)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s (last: {last!r})")


async def apoll_until(predicate, timeout: float = 10.0, interval: float = 0.01):  # type: ignore[no-untyped-def]
    """:func:`poll_until` for async tests: the truthy value, or TimeoutError after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not (value := predicate()):
            await asyncio.sleep(interval)
        return value


class ServerProcess:
    """A real server process (mqnamesrv, mqbroker, mqproxy) whose output is collected in memory."""

    def __init__(self, args: Sequence[str], home: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.home = home
        full_env = dict(os.environ)
        full_env["HOME"] = str(home)  # logs (~/logs/rocketmqlogs) and default store land in the test dir
        full_env.pop("NAMESRV_ADDR", None)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.output: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            text=True,
            cwd=str(home),
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.output.append(line)

    def text(self) -> str:
        with self._lock:
            return "".join(self.output)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                time.sleep(0.1)
                m = rx.search(self.text())
                if m:
                    return m
                raise RuntimeError(
                    f"{self.args[0]} exited with {self.proc.returncode} before {pattern!r}:\n{self.text()}"
                )
            time.sleep(0.05)
        raise TimeoutError(f"{self.args[0]}: {pattern!r} not seen within {timeout}s:\n{self.text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        """Clean stop (SIGTERM), falling back to SIGKILL."""
        self.kill(signal.SIGTERM)


def command(name: str) -> str:
    """Path of one of the project's console scripts in the running venv."""
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: install the project (pip install -e .)")
    return str(path)


def mqadmin(*args: str, ok: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the project's mqadmin; with ``ok`` a non-zero exit fails the test with its output."""
    cp = subprocess.run([command("mqadmin"), *args], capture_output=True, text=True, timeout=timeout)
    if ok and cp.returncode != 0:
        raise AssertionError(f"mqadmin {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    return cp


@contextmanager
def server(args: Sequence[str], home: Path, boot_line: str, env: dict[str, str] | None = None,
           timeout: float = 30.0) -> Iterator[ServerProcess]:
    p = ServerProcess(args, home, env)
    try:
        p.wait_for(boot_line, timeout)
        yield p
    finally:
        p.stop()


def run_sdk_script(script: str, *args: str, timeout: float = 120.0, python: Path = SDK_PYTHON,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a script from tests/sdk/python with the official SDK's own venv (``env``: more environment);
    raises on a non-zero exit."""
    if not python.exists():
        raise FileNotFoundError(
            f"{python} missing: create it with `python3 -m venv .venv-sdk && "
            ".venv-sdk/bin/pip install rocketmq-python-client==5.1.2` (.ci/run does this)"
        )
    path = REPO / "tests" / "sdk" / "python" / script
    cp = subprocess.run([str(python), str(path), *args], capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, **env} if env else None)
    if cp.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    return cp


def broker_log(home: Path) -> str:
    """The broker.log of a process started with HOME=home ("" before it exists)."""
    try:
        return (home / "logs" / "rocketmqlogs" / "broker.log").read_text()
    except FileNotFoundError:
        return ""


def count_lines(path: Path) -> int:
    """Lines in a file another process appends to (0 before it exists)."""
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0
