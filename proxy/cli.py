"""mqproxy: start the gRPC proxy (RocketMQ's ProxyStartup).

Modes:
  cluster  (default when a NameServer address is known) brokers found through the NameServer
  local    a broker in this process (-bc broker.conf) registered with the NameServer (-n)
  embedded (no NameServer address anywhere) NameServer + broker + proxy in one process, data in ~/store
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from backends.logs import setup_logging
from backends.tasks import serve_until, stop_signal
from proxy.config import ProxyConfig

BOOT_LINE = "rocketmq-proxy startup successfully"
log = logging.getLogger("proxy")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mqproxy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="rmq-proxy.json also takes \"enableACL\": true (accounts of $ROCKETMQ_HOME/conf/plain_acl.yml) and\n"
               "\"metricsExporterType\": \"PROM\" (http://host:metricsPromExporterPort/metrics, default 5557),\n"
               "\"OTLP_GRPC\" (metricsGrpcExporterTarget) or \"LOG\".\n"
               "TLS: \"tls.server.mode\": \"permissive\" (default: TLS and plaintext on grpcServerPort), \"enforcing\"\n"
               "or \"disabled\"; a self-signed certificate while \"tlsTestModeEnable\" is true (default), else\n"
               "\"tlsCertPath\" / \"tlsKeyPath\" (PEM, default $ROCKETMQ_HOME/conf/tls/rocketmq.crt / .key).",
    )
    p.add_argument("-n", "--namesrvAddr", dest="namesrv", default=None,
                   help="NameServer address list, e.g. 127.0.0.1:9876;127.0.0.2:9876 (env NAMESRV_ADDR)")
    p.add_argument("-pc", "--proxyConfigPath", dest="proxy_config", default=None,
                   help="rmq-proxy.json (RocketMQ's key names; $ROCKETMQ_HOME/conf/... resolves)")
    p.add_argument("-pm", "--proxyMode", dest="proxy_mode", default=None, type=str.upper,
                   choices=["LOCAL", "CLUSTER"], metavar="{local,cluster}",
                   help="LOCAL: broker in this process; CLUSTER: remote brokers (default)")
    p.add_argument("-bc", "--brokerConfigPath", dest="broker_config", default=None,
                   help="broker.conf for LOCAL and embedded mode")
    return p


def boot_line() -> str:
    return f"{time.strftime('%a %b %d %H:%M:%S %Z %Y')} {BOOT_LINE}"


async def serve(cfg: ProxyConfig, mode: str, broker_config: str | None, quiet: bool = False) -> int:
    from proxy.server import ProxyServer

    closers: list[Any] = []
    backend: Any
    metrics = None
    try:
        if mode == "CLUSTER":
            from backends.cluster import ClusterBackend

            addrs = [a.strip() for a in cfg.namesrv_addr.replace(",", ";").split(";") if a.strip()]
            client = None
            if cfg.enable_acl_rpc_hook_for_cluster_mode:  # brokers with aclEnable: sign with tools.yml's keys
                from backends.acl import tools_credentials
                from backends.remoting.client import RemotingClient

                creds = tools_credentials()
                if creds is None:
                    raise ValueError("enableAclRpcHookForClusterMode needs $ROCKETMQ_HOME/conf/tools.yml "
                                     "(accessKey, secretKey)")
                client = RemotingClient(credentials=creds)
            backend = ClusterBackend(addrs, cfg.rocketmq_cluster_name, client=client)
        else:
            from backends.broker.broker_config import BrokerConfig
            from backends.broker.controller import BrokerController
            from backends.local import LocalBackend

            namesrv = cfg.namesrv_addr
            if not namesrv:  # embedded: NameServer in this process
                from backends.namesrv.config import NamesrvConfig
                from backends.namesrv.controller import NamesrvController

                ns = NamesrvController(NamesrvConfig(listenPort=cfg.namesrv_listen_port))
                await ns.start()
                closers.append(ns)
                namesrv = f"127.0.0.1:{ns.port}"
                log.info("The Name Server boot success. serializeType=JSON (embedded, port %d)", ns.port)
            bcfg = BrokerConfig.load(broker_config or cfg.broker_config_path or None, namesrv)
            if not bcfg.namesrv_addr:
                bcfg.namesrv_addr = namesrv
            broker = BrokerController(bcfg)
            await broker.start()
            closers.append(broker)
            log.info("The broker[%s, %s] boot success.", bcfg.broker_name, broker.broker_addr)
            backend = LocalBackend(broker)
            if broker.metrics.enabled:  # the proxy's metrics go out through the broker's exporter
                metrics = broker.metrics
        server = ProxyServer(cfg, backend, metrics=metrics)
        await server.start()
    except Exception as e:
        log.exception("proxy start failed")
        print(f"mqproxy: start failed: {e}", file=sys.stderr)
        for c in reversed(closers):
            try:
                await c.shutdown()
            except Exception:
                pass
        return 1
    line = boot_line()
    if not quiet:
        log.info(line)
        print(line, flush=True)
        print(f"gRPC port {server.port}, mode {mode}, pid {os.getpid()}", flush=True)
    else:
        log.info("proxy worker %d serving on port %d", os.getpid(), server.port)
    stop = stop_signal()
    await serve_until(stop)
    log.info("shutdown hook was invoked")
    await server.shutdown()
    for c in reversed(closers):
        try:
            await c.shutdown()
        except Exception as e:
            log.warning("shutdown of %s failed: %s", type(c).__name__, e)
    log.info("rocketmq-proxy shutdown")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging("proxy.log")
    try:
        cfg = ProxyConfig.load(args.proxy_config)
    except (OSError, ValueError) as e:
        print(f"mqproxy: bad proxy config: {e}", file=sys.stderr)
        return 2
    if args.namesrv:
        cfg.namesrv_addr = args.namesrv
    if args.proxy_mode:
        mode = args.proxy_mode
    elif not cfg.namesrv_addr:
        mode = "LOCAL"  # embedded
    else:
        mode = cfg.proxy_mode
    if mode == "CLUSTER" and not cfg.namesrv_addr:
        print("mqproxy: CLUSTER mode needs a NameServer address (-n or NAMESRV_ADDR)", file=sys.stderr)
        return 2
    cfg.proxy_mode = mode
    children: list[int] = []
    quiet = False
    if mode == "CLUSTER" and cfg.grpc_server_processes > 1:
        # Extra worker processes share the gRPC port (SO_REUSEPORT); the kernel spreads connections.
        # Nothing a client needs lives in one process only (self-contained receipt handles, sessions
        # rebuilt from each client's own Telemetry stream).
        if cfg.grpc_server_port == 0:
            print("mqproxy: grpcServerProcesses > 1 needs a fixed grpcServerPort", file=sys.stderr)
            return 2
        for worker in range(1, cfg.grpc_server_processes):
            pid = os.fork()
            if pid == 0:
                children.clear()
                quiet = True
                # each worker exports its own metrics: node_id <proxyName>-<n>, PROM port + n
                cfg.proxy_name = f"{cfg.proxy_name}-{worker}"
                if cfg.metrics_prom_exporter_port:
                    cfg.metrics_prom_exporter_port += worker
                break
            children.append(pid)
    try:
        return _run(serve(cfg, mode, args.broker_config, quiet=quiet), cfg.use_uvloop)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _run(coro: Any, use_uvloop: bool) -> int:
    if use_uvloop:
        try:
            import uvloop

            return int(uvloop.run(coro))
        except ImportError:
            pass
    return int(asyncio.run(coro))


if __name__ == "__main__":
    raise SystemExit(main())
