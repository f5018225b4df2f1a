"""Shared pieces of the message-type end-to-end tests (issue 5); no tests here.

``types_stack(mode)`` starts real processes on free loopback ports:
  local   - mqnamesrv + ``mqbroker --enable-proxy`` (Local mode: the proxy inside the broker process)
  cluster - mqnamesrv + two mqbroker (broker-a, broker-b) + ``mqproxy -pm cluster``
  bare    - mqnamesrv + one mqbroker (for 4.x remoting clients)
with extra broker.conf keys and rmq-proxy.json keys, and can kill -9 and restart its brokers.
``SdkDriver`` runs tests/sdk/python/types_driver.py (official Python SDK, own venv) and talks to it one
JSON command at a time, so a test can interleave SDK calls with restarts.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO, SDK_PYTHON, ServerProcess, command, free_port, mqadmin, poll_until

PROXY_BOOT = "rocketmq-proxy startup successfully"
NAMESRV_BOOT = "The Name Server boot success"
BROKER_BOOT = r"The broker\[.*boot success"
MODES = ["local", "cluster"]

needs_sdk = pytest.mark.skipif(not SDK_PYTHON.exists(), reason=".venv-sdk missing (.ci/run creates it)")


@dataclass
class BrokerSpec:
    name: str
    args: list[str]
    boot: str
    addr: str


@dataclass
class TypesStack:
    mode: str
    endpoint: str
    namesrv: str
    home: Path
    es: ExitStack
    brokers: dict[str, ServerProcess] = field(default_factory=dict)
    specs: dict[str, BrokerSpec] = field(default_factory=dict)
    others: list[ServerProcess] = field(default_factory=list)

    def admin(self, *args: str) -> str:
        return mqadmin(*args, "-n", self.namesrv, timeout=30).stdout

    def create_topic(self, topic: str, message_type: str | None = None, queues: int = 4,
                     broker: str | None = None) -> None:
        """On every broker of the cluster, or only on ``broker`` (a broker name)."""
        where = ["-b", self.specs[broker].addr] if broker else ["-c", "DefaultCluster"]
        args = ["updateTopic", *where, "-t", topic, "-r", str(queues), "-w", str(queues)]
        if message_type:
            args += ["-a", f"+message.type={message_type}"]
        self.admin(*args)

    def create_group(self, group: str, *extra: str) -> None:
        self.admin("updateSubGroup", "-c", "DefaultCluster", "-g", group, *extra)

    def _start_broker(self, spec: BrokerSpec) -> ServerProcess:
        p = ServerProcess(spec.args, self.home)
        try:
            p.wait_for(spec.boot, 40)
        except BaseException:
            p.kill()
            raise
        return p

    def restart_brokers(self, down_until_ms: int = 0) -> None:
        """kill -9 every broker (with its in-process proxy in Local mode), keep them down until the wall
        clock passes ``down_until_ms`` (if given), then start them again."""
        for name, p in self.brokers.items():
            p.kill()
            self.brokers[name] = None  # type: ignore[assignment]
        if down_until_ms:
            poll_until(lambda: time.time() * 1000 > down_until_ms, timeout=60, interval=0.05,
                       what="the brokers' downtime")
        for name, spec in self.specs.items():
            self.brokers[name] = self._start_broker(spec)

    def logs(self, tail: int = 4000) -> str:
        procs = [*self.others, *(p for p in self.brokers.values() if p is not None)]
        return "\n".join(f"--- {p.args[0]}\n{p.text()[-tail:]}" for p in procs)

    def driver(self) -> SdkDriver:
        d = SdkDriver(self.endpoint, self.home)
        self.es.callback(d.close)
        return d


def _write_broker_conf(path: Path, name: str, port: int, store: Path, extra: dict[str, Any]) -> Path:
    lines = {
        "brokerClusterName": "DefaultCluster", "brokerName": name, "brokerId": 0, "brokerRole": "ASYNC_MASTER",
        "flushDiskType": "ASYNC_FLUSH", "listenPort": port, "storePathRootDir": store, "brokerIP1": "127.0.0.1",
        "mappedFileSizeCommitLog": 16 * 1024 * 1024,
    }
    lines.update(extra)
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return path


@contextmanager
def types_stack(mode: str, home: Path, broker: dict[str, Any] | None = None,
                proxy: dict[str, Any] | None = None) -> Iterator[TypesStack]:
    grpc_port, ns_port = free_port(), free_port()
    pc = home / "rmq-proxy.json"
    # short long polls (the SDK scripts wait 2 s) keep "nothing more arrives" checks cheap
    pc.write_text(json.dumps({"rocketMQClusterName": "DefaultCluster", "grpcServerPort": grpc_port,
                              "grpcClientConsumerMinLongPollingTimeoutMillis": 1000, **(proxy or {})}))
    ns = f"127.0.0.1:{ns_port}"
    with ExitStack() as es:
        st = TypesStack(mode, f"127.0.0.1:{grpc_port}", ns, home, es)

        def stop_all() -> None:
            for p in [*st.brokers.values(), *st.others]:
                if p is not None:
                    p.stop()

        es.callback(stop_all)
        nsp = ServerProcess([command("mqnamesrv"), "--listenPort", str(ns_port)], home)
        st.others.append(nsp)
        nsp.wait_for(NAMESRV_BOOT, 30)
        if mode == "local":
            port = free_port()
            bc = _write_broker_conf(home / "broker-a.conf", "broker-a", port, home / "store-a", broker or {})
            st.specs["broker-a"] = BrokerSpec(
                "broker-a", [command("mqbroker"), "-n", ns, "-c", str(bc), "--enable-proxy", "-pc", str(pc)],
                PROXY_BOOT, f"127.0.0.1:{port}")
        else:  # cluster: two brokers and mqproxy; bare: one broker, no proxy (4.x clients)
            for name in ("broker-a", "broker-b") if mode == "cluster" else ("broker-a",):
                port = free_port()
                bc = _write_broker_conf(home / f"{name}.conf", name, port, home / f"store-{name}", broker or {})
                st.specs[name] = BrokerSpec(name, [command("mqbroker"), "-n", ns, "-c", str(bc)], BROKER_BOOT,
                                            f"127.0.0.1:{port}")
        for name, spec in st.specs.items():
            st.brokers[name] = st._start_broker(spec)
        if mode == "cluster":
            px = ServerProcess([command("mqproxy"), "-pm", "cluster", "-n", ns, "-pc", str(pc)], home)
            st.others.append(px)
            px.wait_for(PROXY_BOOT, 30)
        yield st


class SdkDriver:
    """One types_driver.py process (official Python SDK); ``call`` sends a command and waits its answer."""

    def __init__(self, endpoint: str, home: Path) -> None:
        self.stderr_path = home / f"sdk-driver-{time.monotonic_ns()}.err"
        self._err = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [str(SDK_PYTHON), str(REPO / "tests" / "sdk" / "python" / "types_driver.py"), endpoint],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, cwd=str(home),
            env={"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        )
        self._answers: queue.Queue[str] = queue.Queue()
        self._other: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                self._answers.put(line[3:])
            else:
                self._other.append(line)

    def call(self, op: str, timeout: float = 60.0, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        try:
            return dict(json.loads(self._answers.get(timeout=timeout)))
        except queue.Empty:
            raise AssertionError(f"SDK driver: no answer to {op} {kw} within {timeout}s:\n"
                                 f"{self.stderr_path.read_text()[-3000:]}") from None

    def ok(self, op: str, timeout: float = 60.0, **kw: Any) -> dict[str, Any]:
        """``call`` that fails the test on an SDK error."""
        r = self.call(op, timeout, **kw)
        assert "error" not in r, (op, kw, r)
        return r

    def receive_until(self, consumer: str, want: int, timeout: float = 30.0, ack: bool = True,
                      invisible_s: int = 15, max_num: int = 16,
                      tolerate: str | tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Receive (and ack unless told not to) until ``want`` messages arrived or ``timeout`` passed.
        Errors containing ``tolerate`` (e.g. a DLQ topic that has no route yet) are retried."""
        got: list[dict[str, Any]] = []
        tolerated = (tolerate,) if isinstance(tolerate, str) else tolerate

        def more() -> bool:
            r = self.call("receive", consumer=consumer, max=max_num, invisible_s=invisible_s)
            if "error" in r and any(t in r["error"] for t in tolerated):
                time.sleep(0.2)  # pacing only: the next receive asks again
                return False
            assert "error" not in r, r
            for m in r["messages"]:
                got.append(m)
                if ack:
                    self.ok("ack", consumer=consumer, id=m["id"])
            return len(got) >= want

        try:
            poll_until(more, timeout=timeout, interval=0.0, what=f"{want} messages on {consumer}")
        except TimeoutError:
            pass
        return got

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, OSError, BrokenPipeError):
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._err.close()


class Stubs:
    """Our own generated gRPC stubs, from the test process (for what the SDK checks client side or lacks)."""

    def __init__(self, endpoint: str, client_id: str = "types-e2e-stub") -> None:
        import grpc

        from protos.apache.rocketmq.v2 import service_pb2_grpc

        self.endpoint = endpoint
        self.channel = grpc.insecure_channel(endpoint)
        self.stub = service_pb2_grpc.MessagingServiceStub(self.channel)
        self.md = (("x-mq-client-id", client_id), ("x-mq-language", "PYTHON"), ("x-mq-protocol", "v2"))

    def call(self, method: str, request: Any, timeout: float = 10.0) -> Any:
        fn = getattr(self.stub, method)
        if method in ("ReceiveMessage", "PullMessage"):
            return list(fn(request, metadata=self.md, timeout=timeout))
        return fn(request, metadata=self.md, timeout=timeout)

    def send(self, topic: str, body: str, message_type: int, **sysprops: Any) -> Any:
        """SendMessage of one message (system properties by name; delivery_ms, recovery_s); returns the
        SendMessageResponse."""
        import uuid

        from protos.apache.rocketmq.v2 import definition_pb2 as pb
        from protos.apache.rocketmq.v2 import service_pb2 as spb

        m = pb.Message(body=body.encode())
        m.topic.name = topic
        m.system_properties.message_id = uuid.uuid4().hex.upper()
        m.system_properties.message_type = message_type
        m.system_properties.body_encoding = pb.Encoding.IDENTITY
        m.system_properties.born_host = "127.0.0.1"
        m.system_properties.born_timestamp.GetCurrentTime()
        for k, v in sysprops.items():
            if k == "delivery_ms":
                m.system_properties.delivery_timestamp.FromMilliseconds(int(v))
            elif k == "recovery_s":
                m.system_properties.orphaned_transaction_recovery_duration.seconds = int(v)
            else:
                setattr(m.system_properties, k, v)
        r = self.call("SendMessage", spb.SendMessageRequest(messages=[m]))
        return r

    def close(self) -> None:
        self.channel.close()


def check_fifo_order(deliveries: list[list[dict[str, Any]]], sent: dict[str, list[str]]) -> None:
    """Every delivered message's predecessors in its message group were acked earlier or came before it
    in the same batch (a FIFO batch is consecutive messages of a queue)."""
    acked: set[str] = set()
    for batch in deliveries:
        in_batch: set[str] = set()
        for m in batch:
            seq = sent[m["group"]]
            i = seq.index(m["body"])
            missing = [b for b in seq[:i] if b not in acked and b not in in_batch]
            assert not missing, f"{m['body']} (attempt {m['attempt']}) delivered before {missing} were acked"
            in_batch.add(m["body"])
        acked |= {m["body"] for m in batch if m.get("acked")}
