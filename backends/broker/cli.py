"""mqbroker: start a broker (RocketMQ's BrokerStartup).

    mqbroker [-n "a:9876;b:9876"] [-c broker.conf] [-p] [--enable-proxy] [-pc rmq-proxy.json]

``-n`` wins over ``namesrvAddr`` in the file, which wins over $NAMESRV_ADDR. A relative ``-c`` path
that does not exist resolves against $ROCKETMQ_HOME. ``-p`` prints the configuration and exits.
Logs go to ~/logs/rocketmqlogs/broker.log.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

from backends.broker.broker_config import BrokerConfig, ConfigError
from backends.logs import setup_logging
from backends.tasks import serve_until, stop_signal

log = logging.getLogger("rocketmq.broker")


def boot_line(config: BrokerConfig, broker_addr: str) -> str:
    line = f"The broker[{config.broker_name}, {broker_addr}] boot success. serializeType=JSON"
    if config.namesrv_addr:
        line += f" and name server is {config.namesrv_addr}"
    return line


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mqbroker", description="Start a RocketMQ broker.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Roles (broker.conf): brokerRole=ASYNC_MASTER | SYNC_MASTER | SLAVE (brokerId > 0); a master\n"
               "serves its slaves on haListenPort (default listenPort + 1). Automatic failover: enableControllerMode=true\n"
               "and controllerAddr=host:port[;host:port] (mqcontroller, or mqnamesrv with enableControllerInNamesrv=true).\n"
               "Examples: conf/2m-2s-sync/, conf/2m-2s-async/, conf/controller/.\n"
               "Metrics: metricsExporterType=PROM (http://host:metricsPromExporterPort/metrics, default 5557), "
               "OTLP_GRPC (metricsGrpcExporterTarget) or LOG.\n"
               "ACL: aclEnable=true checks each request against $ROCKETMQ_HOME/conf/plain_acl.yml.")
    parser.add_argument("-n", "--namesrvAddr", help='Name server address list, e.g. "192.168.0.1:9876;192.168.0.2:9876"')
    parser.add_argument("-c", "--configFile", help="Broker config properties file")
    parser.add_argument("-p", "--printConfigItem", action="store_true", help="Print all config items")
    parser.add_argument("-m", "--printImportantConfig", action="store_true", help="Print important config items")
    parser.add_argument("--enable-proxy", "--enableProxy", dest="enable_proxy", action="store_true",
                        help="Start a proxy (Local mode) in the broker's process")
    parser.add_argument("-pc", "--proxyConfigPath", help="Proxy config file (with --enable-proxy)")
    return parser.parse_args(argv)


async def serve(config: BrokerConfig, args: argparse.Namespace) -> int:
    from backends.broker.controller import BrokerController

    broker = BrokerController(config)
    proxy: Any = None
    try:
        await broker.start()
        if args.enable_proxy:
            proxy = await start_proxy(broker, args.proxyConfigPath)
    except Exception as e:  # noqa: BLE001
        print(f"mqbroker: start failed: {e}", file=sys.stderr, flush=True)
        log.exception("broker start failed")
        try:
            await broker.shutdown()
        except Exception:  # noqa: BLE001
            pass
        return 1
    stop = stop_signal()
    line = boot_line(config, broker.broker_addr)
    log.info(line)
    print(line, flush=True)
    await serve_until(stop)
    log.info("shutdown hook was invoked")
    if proxy is not None:
        try:
            await proxy.shutdown()
        except Exception as e:  # noqa: BLE001
            log.warning("proxy shutdown failed: %s", e)
    await broker.shutdown()
    log.info("The broker[%s, %s] shutdown.", config.broker_name, broker.broker_addr)
    return 0


async def start_proxy(broker: Any, proxy_config_path: str | None) -> Any:
    """--enable-proxy: a Local-mode proxy in this process, in front of this broker."""
    try:
        from proxy.config import ProxyConfig
        from proxy.server import run_proxy_with_backend
    except ImportError as e:
        raise RuntimeError(f"--enable-proxy: the proxy package is not available ({e})") from None
    from backends.local import LocalBackend

    cfg = ProxyConfig.load(proxy_config_path)
    cfg.proxy_mode = "LOCAL"  # whatever the file says: this proxy is inside the broker
    # the proxy's metrics go out through the broker's exporter when the broker has one (as RocketMQ's)
    server = await run_proxy_with_backend(cfg, LocalBackend(broker), manage_backend=False,
                                          metrics=broker.metrics if broker.metrics.enabled else None)
    line = f"{time.strftime('%a %b %d %H:%M:%S %Z %Y')} rocketmq-proxy startup successfully"
    logging.getLogger("proxy").info(line)
    print(line, flush=True)
    return server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    printing = args.printConfigItem or args.printImportantConfig
    if not printing:
        setup_logging("broker.log")
    # config warnings (unknown keys) go to the console as well as to broker.log
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("mqbroker: %(message)s"))
    logging.getLogger().addHandler(console)
    try:
        config = BrokerConfig.load(args.configFile, args.namesrvAddr)
    except ConfigError as e:
        print(f"mqbroker: {e}", file=sys.stderr)
        return 1
    finally:
        logging.getLogger().removeHandler(console)
    if printing:
        for k, v in config.to_properties().items():
            print(f"{k}={v}")
        return 0
    if args.configFile:
        log.info("load config properties file OK, %s", args.configFile)
    try:
        import uvloop

        return uvloop.run(serve(config, args))
    except ImportError:
        return asyncio.run(serve(config, args))


if __name__ == "__main__":
    raise SystemExit(main())
