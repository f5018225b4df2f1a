"""mqnamesrv: start a NameServer (RocketMQ's NamesrvStartup).

    mqnamesrv [-c namesrv.conf] [-p] [--listenPort N] [--<configKey> VALUE ...]

``-p`` prints every configuration item and exits. Logs go to ~/logs/rocketmqlogs/namesrv.log.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from backends.controller.manager import BOOT_LINE as CONTROLLER_BOOT_LINE
from backends.controller.manager import ControllerConfig
from backends.logs import setup_logging
from backends.namesrv.config import NamesrvConfig, option_pairs, read_properties
from backends.namesrv.controller import NamesrvController
from backends.tasks import serve_until, stop_signal

BOOT_LINE = "The Name Server boot success. serializeType=JSON"


def build_config(argv: list[str]) -> tuple[NamesrvConfig, ControllerConfig, bool]:
    parser = argparse.ArgumentParser(
        prog="mqnamesrv",
        description="Start a RocketMQ NameServer.",
        epilog="Any config key can also be given as --key VALUE (e.g. --listenPort 9877), after -c.",
    )
    parser.add_argument("-c", "--configFile", help="Name server config properties file")
    parser.add_argument("-p", "--printConfigItem", action="store_true", help="Print all config items")
    parser.add_argument("-n", "--namesrvAddr", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    config = NamesrvConfig()
    controller = ControllerConfig()  # (its keys, when enableControllerInNamesrv=true)
    if args.configFile:
        try:
            path, props = read_properties(args.configFile)
        except OSError as e:
            parser.error(f"cannot read config file {args.configFile}: {e.strerror or e}")
        for key, value in props.items():
            try:
                config.set(key, value)
                controller.set(key, value)  # (scanNotActiveBrokerInterval is a key of both)
            except ValueError:
                parser.error(f"bad value for {key} in {args.configFile}: {value!r}")
        print(f"load config properties file OK, {path}")
    for key, value in option_pairs(rest, parser.error):
        try:
            known = config.set(key, value)
            known = controller.set(key, value) or known
        except ValueError:
            parser.error(f"bad value for --{key}: {value!r}")
        if not known:
            parser.error(f"unknown option --{key}")
    return config, controller, args.printConfigItem


async def serve(config: NamesrvConfig, controller_config: ControllerConfig | None = None) -> int:
    log = logging.getLogger("RocketmqNamesrv")
    controller = NamesrvController(config, controller_config)
    try:
        await controller.start()
    except Exception as e:
        print(f"mqnamesrv: {e}", file=sys.stderr)
        log.error("start failed: %s", e)
        await controller.shutdown()
        return 1
    stop = stop_signal()
    log.info("NameServer listening on %s:%d", config.bindAddress, controller.port)
    log.info(BOOT_LINE)
    print(BOOT_LINE, flush=True)
    if controller.controller_manager is not None:
        print(CONTROLLER_BOOT_LINE, flush=True)
    await serve_until(stop)
    log.info("shutdown hook was invoked")
    await controller.shutdown()
    log.info("The Name Server shutdown.")
    return 0


def main(argv: list[str] | None = None) -> int:
    config, controller_config, print_only = build_config(list(sys.argv[1:] if argv is None else argv))
    if print_only:
        for key, value in config.items():
            print(f"{key}={value}")
        return 0
    setup_logging("namesrv.log")
    try:
        import uvloop

        return uvloop.run(serve(config, controller_config))
    except ImportError:
        return asyncio.run(serve(config, controller_config))


if __name__ == "__main__":
    raise SystemExit(main())
