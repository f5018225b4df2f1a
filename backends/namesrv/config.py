"""NamesrvConfig: the keys of namesrv.conf (RocketMQ's NamesrvConfig + NettyServerConfig.listenPort)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn


def _home() -> str:
    return os.path.expanduser("~")


@dataclass(slots=True)
class NamesrvConfig:
    listenPort: int = 9876  # noqa: N815 (RocketMQ's key names)
    bindAddress: str = "0.0.0.0"  # noqa: N815
    rocketmqHome: str = os.environ.get("ROCKETMQ_HOME", "")  # noqa: N815
    kvConfigPath: str = ""  # noqa: N815  default ~/namesrv/kvConfig.json
    configStorePath: str = ""  # noqa: N815  default ~/namesrv/namesrv.properties
    scanNotActiveBrokerInterval: int = 5000  # noqa: N815  ms
    # Used when a broker's REGISTER_BROKER header has no heartbeatTimeoutMillis.
    brokerChannelExpiredTime: int = 120_000  # noqa: N815  ms
    orderMessageEnable: bool = False  # noqa: N815
    enableAllTopicList: bool = True  # noqa: N815
    enableTopicList: bool = True  # noqa: N815
    clusterTest: bool = False  # noqa: N815
    useEpollNativeSelector: bool = False  # noqa: N815  accepted, ignored
    enableControllerInNamesrv: bool = False  # noqa: N815  run the controller on the NameServer's port

    def __post_init__(self) -> None:
        if not self.kvConfigPath:
            self.kvConfigPath = str(Path(_home()) / "namesrv" / "kvConfig.json")
        if not self.configStorePath:
            self.configStorePath = str(Path(_home()) / "namesrv" / "namesrv.properties")

    def set(self, key: str, value: str) -> bool:
        """Set one key from its text form; False for a key NamesrvConfig does not have."""
        for f in fields(self):
            if f.name == key:
                current = getattr(self, key)
                conv: Any
                if isinstance(current, bool):
                    conv = value.strip().lower() == "true"
                elif isinstance(current, int):
                    conv = int(value.strip())
                else:
                    conv = value.strip()
                setattr(self, key, conv)
                return True
        return False

    def items(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def parse_properties(text: str) -> dict[str, str]:
    """Java .properties subset: key=value or key: value lines, # and ! comments."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        for i, ch in enumerate(line):
            if ch in "=:":
                out[line[:i].strip()] = line[i + 1 :].strip()
                break
        else:
            out[line] = ""
    return out


def resolve_conf_path(path: str) -> Path:
    p = Path(os.path.expanduser(path))
    if not p.exists() and not p.is_absolute() and os.environ.get("ROCKETMQ_HOME"):
        alt = Path(os.environ["ROCKETMQ_HOME"]) / p
        if alt.exists():
            return alt
    return p


def option_pairs(rest: list[str], fail: Callable[[str], NoReturn]) -> list[tuple[str, str]]:
    """The ``--key VALUE`` / ``--key=VALUE`` pairs left on a command line after its named options;
    ``fail(message)`` for anything else."""
    pairs, i = [], 0
    while i < len(rest):
        opt = rest[i]
        if not opt.startswith("--"):
            fail(f"unrecognized argument: {opt}")
        key, eq, value = opt[2:].partition("=")
        if not eq:
            if i + 1 >= len(rest):
                fail(f"option {opt} needs a value")
            value = rest[i + 1]
            i += 1
        pairs.append((key, value))
        i += 1
    return pairs


def read_properties(path: str) -> tuple[Path, dict[str, str]]:
    """Resolve ``path`` (also under $ROCKETMQ_HOME) and parse it; OSError when it cannot be read."""
    p = resolve_conf_path(path)
    return p, parse_properties(p.read_text(encoding="utf-8"))
