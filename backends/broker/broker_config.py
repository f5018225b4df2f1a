"""BrokerConfig: the keys of broker.conf (RocketMQ's BrokerConfig + MessageStoreConfig).

The file is a Java properties file with RocketMQ's camelCase keys. Fields here are snake_case; the
camelCase key of a field is derived from its name (``broker_cluster_name`` <- ``brokerClusterName``),
with a few explicit aliases (``brokerIP1``). Keys of the store (MessageStoreConfig) are accepted too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.metrics import MetricsConfig
from backends.store.message_store import MessageStoreConfig

log = logging.getLogger("rocketmq.broker")

DEFAULT_DELAY_LEVELS = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"

_ALIASES = {"brokerIP1": "broker_ip1", "brokerIP2": "broker_ip2", "haListenPort": "ha_listen_port"}


class ConfigError(Exception):
    """A broker.conf that cannot be read or holds a value of the wrong type."""


def camel_to_snake(key: str) -> str:
    if key in _ALIASES:
        return _ALIASES[key]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def snake_to_camel(name: str) -> str:
    for k, v in _ALIASES.items():
        if v == name:
            return k
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def parse_properties(text: str) -> dict[str, str]:
    """Java .properties: ``key=value``, ``key: value`` or ``key value``; ``#``/``!`` comments;
    a trailing backslash continues the line."""
    props: dict[str, str] = {}
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip() if not buf else raw.lstrip()
        if not buf and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            buf += line[:-1]
            continue
        logical.append(buf + line)
        buf = ""
    if buf:
        logical.append(buf)
    for line in logical:
        m = re.match(r"^((?:[^=:\s\\]|\\.)+)\s*[=:\s]\s*(.*)$", line)
        if m:
            key, value = m.group(1), m.group(2)
        else:
            key, value = line, ""
        props[key.replace("\\", "")] = value.strip()
    return props


def _home() -> str:
    return os.path.expanduser("~")


@dataclass
class BrokerConfig(MetricsConfig):  # the metrics keys (metricsExporterType, ...) are MetricsConfig's
    broker_cluster_name: str = "DefaultCluster"
    broker_name: str = "broker-a"
    broker_id: int = 0
    broker_role: str = "ASYNC_MASTER"  # ASYNC_MASTER | SYNC_MASTER | SLAVE
    broker_permission: int = 6
    broker_ip1: str = "127.0.0.1"
    broker_ip2: str = ""
    listen_port: int = 10911
    ha_listen_port: int = 0  # 0: listenPort + 1
    ha_send_heartbeat_interval: int = 5000  # ms: the slave's offset report when idle, the master's heartbeat
    ha_housekeeping_interval: int = 20000  # ms of silence after which an HA connection is dropped
    ha_transfer_batch_size: int = 32 * 1024  # commitlog bytes per transfer to a slave
    ha_max_gap_not_in_sync: int = 256 * 1024 * 1024  # a SYNC_MASTER waits only for a slave this close
    # controller mode (RocketMQ 5): the controller elects the master of this broker set
    enable_controller_mode: bool = False
    controller_addr: str = ""  # "host:port[;host:port]": mqcontroller, or a NameServer running one
    broker_heartbeat_interval: int = 1000  # ms between heartbeats to the controller
    controller_heart_beat_timeout_mills: int = 10000  # the controller deems a silent broker gone after this
    sync_broker_metadata_period: int = 5000  # ms between GET_REPLICA_INFO polls (role changes also pushed)
    all_ack_in_sync_state_set: bool = False  # a write waits for every replica of the SyncStateSet
    ha_max_time_slave_not_catchup: int = 15000  # ms a slave may lag before it leaves the SyncStateSet
    namesrv_addr: str = ""
    store_path_root_dir: str = field(default_factory=lambda: os.path.join(_home(), "store"))
    store_path_commit_log: str = ""
    auto_create_topic_enable: bool = True
    auto_create_subscription_group: bool = True
    default_topic_queue_nums: int = 8
    cluster_topic_enable: bool = True
    broker_topic_enable: bool = True
    trace_topic_enable: bool = False
    msg_trace_topic_name: str = "RMQ_SYS_TRACE_TOPIC"
    enable_property_filter: bool = False
    filter_support_retry: bool = False
    transaction_time_out: int = 6000
    transaction_check_interval: int = 30000
    transaction_check_max: int = 15
    timer_max_delay_sec: int = 259200
    timer_wheel_enable: bool = True
    message_delay_level: str = DEFAULT_DELAY_LEVELS
    register_name_server_period: int = 30000
    broker_not_active_timeout_millis: int = 120000
    long_polling_enable: bool = True
    short_polling_time_mills: int = 1000
    flush_consumer_offset_interval: int = 5000
    revive_queue_num: int = 8
    max_reconsume_times: int = 16
    reject_transaction_message: bool = False
    enable_acting_master: bool = False
    # store keys (copied into MessageStoreConfig)
    flush_disk_type: str = "ASYNC_FLUSH"
    mapped_file_size_commit_log: int = 1024 * 1024 * 1024
    mapped_file_size_consume_queue: int = 300_000 * 20
    flush_interval_commit_log: int = 500
    sync_flush_timeout: int = 5000
    delete_when: str = "04"
    file_reserved_time: int = 48
    disk_max_used_space_ratio: int = 75
    max_message_size: int = 4 * 1024 * 1024
    message_index_enable: bool = True
    max_transfer_count_on_message_in_memory: int = 32
    acl_enable: bool = False  # ACL 1.0 on the remoting port: accounts of $ROCKETMQ_HOME/conf/plain_acl.yml
    # Keys of the file this config came from that we do not know (kept, reported by -p).
    extra: dict[str, str] = field(default_factory=dict)

    # -- derived --
    @property
    def broker_addr(self) -> str:
        return f"{self.broker_ip1}:{self.listen_port}"

    @property
    def ha_server_addr(self) -> str:
        return f"{self.broker_ip2 or self.broker_ip1}:{self.ha_listen_port or self.listen_port + 1}"

    @property
    def is_slave(self) -> bool:
        return self.broker_role.upper() == "SLAVE"

    @property
    def namesrv_addr_list(self) -> list[str]:
        return [a.strip() for a in re.split(r"[;,]", self.namesrv_addr or "") if a.strip()]

    @property
    def delay_levels_ms(self) -> list[int]:
        """Delay level 1..N -> milliseconds."""
        units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
        out: list[int] = []
        for item in self.message_delay_level.split():
            try:
                out.append(int(item[:-1]) * units[item[-1]])
            except (KeyError, ValueError):
                log.warning("bad messageDelayLevel entry %r ignored", item)
        return out

    def store_config(self) -> MessageStoreConfig:
        names = {f.name for f in dataclasses.fields(MessageStoreConfig)}
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in names and f.name != "store_path_root_dir":
                kwargs[f.name] = getattr(self, f.name)
        # store-only keys given in the file
        for key, value in self.extra.items():
            name = camel_to_snake(key)
            if name in names and name not in kwargs:
                fdef = next(x for x in dataclasses.fields(MessageStoreConfig) if x.name == name)
                try:
                    kwargs[name] = _convert(value, fdef.type, key)
                except ConfigError as e:
                    log.warning("%s", e)
        kwargs["store_host"] = (self.broker_ip1, self.listen_port)
        return MessageStoreConfig(store_path_root_dir=os.path.expanduser(self.store_path_root_dir), **kwargs)

    # -- loading --
    def apply(self, props: dict[str, str], source: str = "") -> None:
        fields = {f.name: f for f in dataclasses.fields(self) if f.name != "extra"}
        store_names = {f.name for f in dataclasses.fields(MessageStoreConfig)}
        for key, value in props.items():
            name = camel_to_snake(key)
            f = fields.get(name)
            if f is None:
                self.extra[key] = value
                if name not in store_names:
                    log.warning("unknown broker config key %r%s ignored", key, f" in {source}" if source else "")
                continue
            setattr(self, name, _convert(value, f.type, key))
        self.store_path_root_dir = os.path.expanduser(self.store_path_root_dir)
        self.broker_role = self.broker_role.upper()
        if self.broker_role not in ("ASYNC_MASTER", "SYNC_MASTER", "SLAVE"):
            raise ConfigError(f"brokerRole must be ASYNC_MASTER, SYNC_MASTER or SLAVE, not {self.broker_role!r}")
        if self.enable_controller_mode:  # the controller assigns the id and the role
            if not self.controller_addr:
                raise ConfigError("enableControllerMode=true needs controllerAddr (the controller's host:port)")
        elif self.broker_role == "SLAVE" and self.broker_id <= 0:
            raise ConfigError(f"a SLAVE broker needs a brokerId above 0, not {self.broker_id}")
        elif self.broker_role != "SLAVE" and self.broker_id != 0:
            log.warning("brokerRole %s: brokerId %d is set to 0 (a master's id)", self.broker_role, self.broker_id)
            self.broker_id = 0
        self.flush_disk_type = self.flush_disk_type.upper()
        if self.flush_disk_type not in ("ASYNC_FLUSH", "SYNC_FLUSH"):
            raise ConfigError(f"flushDiskType must be ASYNC_FLUSH or SYNC_FLUSH, not {self.flush_disk_type!r}")
        if self.enable_acting_master:
            log.warning("enableActingMaster=true is not used: a slave never acts as master here; use the "
                        "controller (enableControllerMode) to promote a slave when its master fails")
        if self.filter_support_retry:
            log.warning("filterSupportRetry=true is not used: a %%RETRY%% topic is filtered by its own "
                        "subscription only (POP redelivers from the original queue, where the filter applies)")
        try:
            self.check_metrics()
        except ValueError as e:
            raise ConfigError(str(e)) from e

    @classmethod
    def load(cls, path: str | None, namesrv: str | None = None) -> BrokerConfig:
        cfg = cls()
        env_ns = os.environ.get("NAMESRV_ADDR")
        if env_ns:
            cfg.namesrv_addr = env_ns
        if path:
            p = resolve_config_path(path)
            try:
                text = p.read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"cannot read broker config file {path}: {e.strerror or e}") from e
            except UnicodeDecodeError as e:
                raise ConfigError(f"broker config file {path} is not UTF-8 text") from e
            cfg.apply(parse_properties(text), str(p))
        if namesrv:
            cfg.namesrv_addr = namesrv
        return cfg

    def to_properties(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            out[snake_to_camel(f.name)] = str(v).lower() if isinstance(v, bool) else str(v)
        out.update(self.extra)
        return out


def resolve_config_path(path: str) -> Path:
    p = Path(os.path.expanduser(path))
    if not p.is_absolute() and not p.exists():
        home = os.environ.get("ROCKETMQ_HOME")
        if home and (Path(home) / p).exists():
            return Path(home) / p
    return p


def _convert(value: str, typ: Any, key: str) -> Any:
    t = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    v = value.strip()
    if t == "bool":
        if v.lower() in ("true", "1", "yes"):
            return True
        if v.lower() in ("false", "0", "no", ""):
            return False
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if t == "int":
        try:
            return int(v)
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected an integer") from None
    if t == "float":
        try:
            return float(v)
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected a number") from None
    if t.startswith("tuple"):
        raise ConfigError(f"{key} cannot be set from a config file")
    return v
