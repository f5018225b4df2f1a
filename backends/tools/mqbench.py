"""mqbench: the project's benchmark tool (RocketMQ ships benchmark/producer.sh and consumer.sh).

    mqbench store     ...   append to a MessageStore directly (flush modes, concurrent writers)
    mqbench remoting  ...   SEND_MESSAGE_V2 / PULL against a broker over remoting
    mqbench producer  ...   gRPC SendMessage against a proxy
    mqbench consumer  ...   gRPC ReceiveMessage + AckMessage against a proxy
    mqbench timer     ...   100k pending timed messages: delivered on time? (in-process broker, POP)
    mqbench filter    ...   POP consume throughput with TAG / SQL92 filters (in-process broker)

Each sub-command has its own --help.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "store": "backends.tools.bench_store",
    "remoting": "backends.tools.bench_remoting",
    "producer": "backends.tools.bench_grpc",
    "consumer": "backends.tools.bench_grpc",
    "e2e": "backends.tools.bench_grpc",
    "timer": "backends.tools.bench_timer",
    "filter": "backends.tools.bench_filter",
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in SUBCOMMANDS:
        print(__doc__.strip())
        return 0 if args and args[0] in ("-h", "--help") else 2
    module = importlib.import_module(SUBCOMMANDS[args[0]])
    return int(module.main(args))


if __name__ == "__main__":
    raise SystemExit(main())
