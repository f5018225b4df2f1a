"""Process stacks for the proxy's end-to-end tests: embedded, Local and Cluster mode."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness import NODE_SDK_DIR, ServerProcess, command, free_port, mqadmin, server

# the Node SDK tests need node and tests/sdk/node/node_modules (.ci/run runs npm install there)
needs_node_sdk = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_SDK_DIR / "node_modules" / "rocketmq-client-nodejs").exists(),
    reason="node or tests/sdk/node/node_modules missing (run npm install there; .ci/run does)",
)

# New groups start at the end of each queue on their first pop (RocketMQ 5); tests start them at the
# beginning so messages sent before a broker's first pop are not skipped.
EARLIEST = ("--attributes", "+consumeFromWhere=EARLIEST")
PROXY_BOOT = "rocketmq-proxy startup successfully"
NAMESRV_BOOT = "The Name Server boot success"
BROKER_BOOT = r"The broker\[.*boot success"


@dataclass
class Stack:
    mode: str
    endpoint: str  # gRPC host:port
    namesrv: str
    home: Path
    procs: list[ServerProcess] = field(default_factory=list)

    def admin(self, *args: str) -> str:
        return mqadmin(*args, "-n", self.namesrv, timeout=30).stdout

    def create_topic(self, topic: str, message_type: str | None = None) -> None:
        args = ["updateTopic", "-c", "DefaultCluster", "-t", topic]
        if message_type:
            args += ["-a", f"+message.type={message_type}"]
        self.admin(*args)

    def create_group(self, group: str, *extra: str) -> None:
        self.admin("updateSubGroup", "-c", "DefaultCluster", "-g", group, *extra)

    def logs(self) -> str:
        return "\n".join(p.text()[-4000:] for p in self.procs)


def _broker_conf(path: Path, name: str, port: int, store: Path, flush: str = "ASYNC_FLUSH",
                 extra: dict[str, str] | None = None) -> Path:
    path.write_text(
        f"brokerClusterName=DefaultCluster\nbrokerName={name}\nbrokerId=0\nbrokerRole=ASYNC_MASTER\n"
        f"flushDiskType={flush}\nlistenPort={port}\nstorePathRootDir={store}\nbrokerIP1=127.0.0.1\n"
        "transactionTimeOut=1000\ntransactionCheckInterval=1000\n"
        + "".join(f"{k}={v}\n" for k, v in (extra or {}).items())
    )
    return path


@contextmanager
def stack(mode: str, home: Path, flush: str = "ASYNC_FLUSH",
          broker_props: Callable[[str], dict[str, str]] | None = None, env: dict[str, str] | None = None,
          **proxy_conf: object) -> Iterator[Stack]:
    """``broker_props(broker_name)``: more broker.conf keys; ``env``: more environment of every process;
    ``proxy_conf``: rmq-proxy.json keys."""
    def props(name: str) -> dict[str, str] | None:
        return broker_props(name) if broker_props is not None else None

    grpc_port, ns_port = free_port(), free_port()
    pc = home / "rmq-proxy.json"
    pc.write_text(json.dumps({"rocketMQClusterName": "DefaultCluster", "grpcServerPort": grpc_port,
                              "namesrvListenPort": ns_port, **proxy_conf}))
    ns = f"127.0.0.1:{ns_port}"
    with ExitStack() as es:
        st = Stack(mode, f"127.0.0.1:{grpc_port}", ns, home)
        if mode == "embedded":
            bc = _broker_conf(home / "broker.conf", "broker-a", free_port(), home / "store", flush, props("broker-a"))
            st.procs.append(es.enter_context(server([command("mqproxy"), "-pc", str(pc), "-bc", str(bc)],
                                                    home, PROXY_BOOT, env=env, timeout=60)))
        else:
            st.procs.append(es.enter_context(
                server([command("mqnamesrv"), "-c", str(_ns_conf(home, ns_port))], home, NAMESRV_BOOT, env=env, timeout=60)))
            if mode == "broker-proxy":  # mqbroker --enable-proxy: Local mode inside the broker process
                bc = _broker_conf(home / "broker.conf", "broker-a", free_port(), home / "store", flush, props("broker-a"))
                st.procs.append(es.enter_context(server(
                    [command("mqbroker"), "-n", ns, "-c", str(bc), "--enable-proxy", "-pc", str(pc)],
                    home, PROXY_BOOT, env=env, timeout=60)))
            elif mode == "local":
                bc = _broker_conf(home / "broker.conf", "broker-a", free_port(), home / "store", flush, props("broker-a"))
                st.procs.append(es.enter_context(server(
                    [command("mqproxy"), "-pm", "local", "-n", ns, "-pc", str(pc), "-bc", str(bc)],
                    home, PROXY_BOOT, env=env, timeout=60)))
            else:
                for name in ("broker-a", "broker-b"):
                    bc = _broker_conf(home / f"{name}.conf", name, free_port(), home / f"store-{name}", flush,
                                      props(name))
                    st.procs.append(es.enter_context(server(
                        [command("mqbroker"), "-n", ns, "-c", str(bc)], home, BROKER_BOOT, env=env, timeout=60)))
                st.procs.append(es.enter_context(server(
                    [command("mqproxy"), "-pm", "cluster", "-n", ns, "-pc", str(pc)], home, PROXY_BOOT, env=env, timeout=60)))
        yield st


def _ns_conf(home: Path, port: int) -> Path:
    p = home / "namesrv.conf"
    p.write_text(f"listenPort={port}\n")
    return p


def parse_result(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise AssertionError(f"no RESULT line in:\n{stdout[-3000:]}")
