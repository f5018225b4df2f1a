"""mqcontroller: start a controller alone (RocketMQ's ControllerStartup).

    mqcontroller [-c controller.conf] [-p] [--<configKey> VALUE ...]

Brokers with ``enableControllerMode=true`` name it in ``controllerAddr``. To run it inside the NameServer
instead, start ``mqnamesrv`` with ``enableControllerInNamesrv=true``. Logs: ~/logs/rocketmqlogs/controller.log.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from backends.controller.manager import BOOT_LINE, ControllerConfig, ControllerManager
from backends.logs import setup_logging
from backends.namesrv.config import option_pairs, read_properties
from backends.tasks import serve_until, stop_signal


def build_config(argv: list[str]) -> tuple[ControllerConfig, bool]:
    parser = argparse.ArgumentParser(
        prog="mqcontroller", description="Start a RocketMQ controller (master election for controller-mode brokers).",
        epilog="Any config key can also be given as --key VALUE (e.g. --listenPort 9878), after -c.")
    parser.add_argument("-c", "--configFile", help="controller config properties file")
    parser.add_argument("-p", "--printConfigItem", action="store_true", help="print all config items and exit")
    args, rest = parser.parse_known_args(argv)
    config = ControllerConfig()
    items: list[tuple[str, str, str]] = []
    if args.configFile:
        try:
            _, props = read_properties(args.configFile)
        except OSError as e:
            parser.error(f"cannot read config file {args.configFile}: {e.strerror or e}")
        items += [(k, v, args.configFile) for k, v in props.items()]
    items += [(k, v, "the command line") for k, v in option_pairs(rest, parser.error)]
    for key, value, where in items:
        try:
            if not config.set(key, value):
                print(f"mqcontroller: unknown config key {key} in {where} ignored", file=sys.stderr)
        except ValueError:
            parser.error(f"bad value for {key} in {where}: {value!r}")
    return config, args.printConfigItem


async def serve(config: ControllerConfig) -> int:
    log = logging.getLogger("rocketmq.controller")
    manager = ControllerManager(config)
    try:
        await manager.start()
    except (OSError, ValueError) as e:
        print(f"mqcontroller: {e}", file=sys.stderr)
        log.error("start failed: %s", e)
        await manager.shutdown()
        return 1
    stop = stop_signal()
    log.info("controller listening on port %d", manager.port)
    log.info(BOOT_LINE)
    print(BOOT_LINE, flush=True)
    await serve_until(stop)
    await manager.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    config, print_only = build_config(list(sys.argv[1:] if argv is None else argv))
    if print_only:
        for f in config.__dataclass_fields__:
            print(f"{f}={getattr(config, f)}")
        return 0
    setup_logging("controller.log")
    return asyncio.run(serve(config))


if __name__ == "__main__":
    raise SystemExit(main())
