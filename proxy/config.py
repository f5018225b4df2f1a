"""ProxyConfig: the keys of RocketMQ's rmq-proxy.json (ProxyConfig.java), with RocketMQ's defaults.

Unknown keys are kept (``extra``) and warned about; ``$ROCKETMQ_HOME/conf/...`` paths resolve.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from backends.metrics import MetricsConfig
from proxy.tls import TlsMode

log = logging.getLogger("proxy")

MiB = 1024 * 1024

# camelCase key (rmq-proxy.json) -> attribute name
_KEYS: dict[str, str] = {
    "rocketMQClusterName": "rocketmq_cluster_name",
    "proxyClusterName": "proxy_cluster_name",
    "proxyName": "proxy_name",
    "namesrvAddr": "namesrv_addr",
    "proxyMode": "proxy_mode",
    "grpcServerPort": "grpc_server_port",
    "grpcBindAddress": "grpc_bind_address",
    "grpcAdvertisedAddress": "grpc_advertised_address",
    "remotingListenPort": "remoting_listen_port",
    "grpcMaxInboundMessageSize": "grpc_max_inbound_message_size",
    "maxMessageSize": "max_message_size",
    "maxUserPropertySize": "max_user_property_size",
    "userPropertyMaxNum": "user_property_max_num",
    "maxMessageGroupSize": "max_message_group_size",
    "defaultInvisibleTimeMills": "default_invisible_time_mills",
    "minInvisibleTimeMillsForRecv": "min_invisible_time_mills_for_recv",
    "maxInvisibleTimeMills": "max_invisible_time_mills",
    "maxDelayTimeMills": "max_delay_time_mills",
    "maxTransactionRecoverySecond": "max_transaction_recovery_second",
    "enableTopicMessageTypeCheck": "enable_topic_message_type_check",
    "enableProxyAutoRenew": "enable_proxy_auto_renew",
    "grpcClientProducerMaxAttempts": "grpc_client_producer_max_attempts",
    "grpcClientProducerBackoffInitialMillis": "grpc_client_producer_backoff_initial_millis",
    "grpcClientProducerBackoffMaxMillis": "grpc_client_producer_backoff_max_millis",
    "grpcClientProducerBackoffMultiplier": "grpc_client_producer_backoff_multiplier",
    "grpcClientConsumerMinLongPollingTimeoutMillis": "grpc_client_consumer_min_long_polling_timeout_millis",
    "grpcClientConsumerMaxLongPollingTimeoutMillis": "grpc_client_consumer_max_long_polling_timeout_millis",
    "grpcClientConsumerLongPollingBatchSize": "grpc_client_consumer_long_polling_batch_size",
    "longPollingReserveTimeInMillis": "long_polling_reserve_time_in_millis",
    "renewAheadTimeMillis": "renew_ahead_time_millis",
    "renewSliceTimeMillis": "renew_slice_time_millis",
    "renewMaxTimeMillis": "renew_max_time_millis",
    "channelExpiredTimeout": "channel_expired_timeout",
    "grpcServerProcesses": "grpc_server_processes",
    "useUvloop": "use_uvloop",
    "tls.server.mode": "tls_server_mode",
    "tlsTestModeEnable": "tls_test_mode_enable",
    "tlsKeyPath": "tls_key_path",
    "tlsCertPath": "tls_cert_path",
    "enableACL": "enable_acl",
    "enableAclRpcHookForClusterMode": "enable_acl_rpc_hook_for_cluster_mode",
    "metricsExporterType": "metrics_exporter_type",
    "metricsPromExporterPort": "metrics_prom_exporter_port",
    "metricsPromExporterHost": "metrics_prom_exporter_host",
    "metricsGrpcExporterTarget": "metrics_grpc_exporter_target",
    "metricsGrpcExporterHeader": "metrics_grpc_exporter_header",
    "metricGrpcExporterTimeOutInMills": "metric_grpc_exporter_time_out_in_mills",
    "metricGrpcExporterIntervalInMills": "metric_grpc_exporter_interval_in_mills",
    "metricLoggingExporterIntervalInMills": "metric_logging_exporter_interval_in_mills",
    "metricsLabel": "metrics_label",
    "brokerConfigPath": "broker_config_path",
    "namesrvListenPort": "namesrv_listen_port",
}

# keys RocketMQ's proxy has that this one reads but does not act on, with what to do instead
_NOT_SERVED: dict[str, str] = {
    "remotingListenPort": ("this proxy serves gRPC only, no remoting port for 4.x clients: point them at "
                           "the NameServer (namesrvAddr), which routes them to the brokers"),
}


@dataclass
class ProxyConfig(MetricsConfig):  # the metrics keys (metricsExporterType, ...) are MetricsConfig's
    rocketmq_cluster_name: str = "DefaultCluster"
    proxy_cluster_name: str = "DefaultCluster"
    proxy_name: str = field(default_factory=socket.gethostname)
    namesrv_addr: str = ""
    proxy_mode: str = "CLUSTER"
    grpc_server_port: int = 8081
    grpc_bind_address: str = "0.0.0.0"
    # "host:port" put into QueryRoute/QueryAssignment answers instead of the address the client dialled
    grpc_advertised_address: str = ""
    remoting_listen_port: int = 8080
    grpc_max_inbound_message_size: int = 130 * MiB
    max_message_size: int = 4 * MiB
    max_user_property_size: int = 16 * 1024
    user_property_max_num: int = 128
    max_message_group_size: int = 64
    default_invisible_time_mills: int = 60_000
    min_invisible_time_mills_for_recv: int = 10_000
    max_invisible_time_mills: int = 12 * 3600 * 1000
    max_delay_time_mills: int = 24 * 3600 * 1000
    max_transaction_recovery_second: int = 3600
    enable_topic_message_type_check: bool = True
    enable_proxy_auto_renew: bool = True
    grpc_client_producer_max_attempts: int = 3
    grpc_client_producer_backoff_initial_millis: int = 10
    grpc_client_producer_backoff_max_millis: int = 1000
    grpc_client_producer_backoff_multiplier: int = 2
    grpc_client_consumer_min_long_polling_timeout_millis: int = 5_000
    grpc_client_consumer_max_long_polling_timeout_millis: int = 20_000
    grpc_client_consumer_long_polling_batch_size: int = 32
    long_polling_reserve_time_in_millis: int = 100
    renew_ahead_time_millis: int = 10_000
    renew_slice_time_millis: int = 60_000
    renew_max_time_millis: int = 3 * 3600 * 1000
    channel_expired_timeout: int = 120_000  # sessions without heartbeat expire after this (ms)
    grpc_server_processes: int = 1
    use_uvloop: bool = True
    tls_server_mode: str = "permissive"  # disabled | permissive | enforcing (see proxy.tls)
    tls_test_mode_enable: bool = True
    tls_key_path: str = ""
    tls_cert_path: str = ""
    enable_acl: bool = False  # ACL 1.0: accounts of $ROCKETMQ_HOME/conf/plain_acl.yml (see proxy.acl)
    enable_acl_rpc_hook_for_cluster_mode: bool = False  # sign requests to brokers with conf/tools.yml's keys
    broker_config_path: str = ""
    namesrv_listen_port: int = 9876
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def local_mode(self) -> bool:
        return self.proxy_mode.upper() == "LOCAL"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProxyConfig:
        cfg = cls()
        cfg.update(data)
        return cfg

    def update(self, data: dict[str, Any]) -> None:
        types = {f.name: f.type for f in fields(self)}
        for key, value in data.items():
            attr = _KEYS.get(key)
            if attr is None:
                log.warning("rmq-proxy.json: unknown key %r ignored", key)
                self.extra[key] = value
                continue
            setattr(self, attr, _coerce(value, types[attr]))
            if key in _NOT_SERVED:
                log.warning("rmq-proxy.json: %s=%s is not used: %s", key, value, _NOT_SERVED[key])
        self.proxy_mode = self.proxy_mode.upper()
        if self.proxy_mode not in ("LOCAL", "CLUSTER"):
            raise ValueError(f"proxyMode must be LOCAL or CLUSTER, not {self.proxy_mode!r}")
        self.tls_server_mode = TlsMode.parse(self.tls_server_mode).value
        advertised_addresses(self.grpc_advertised_address)
        self.check_metrics()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None) -> ProxyConfig:
        cfg = cls()
        if path:
            p = resolve_path(str(path))
            with open(p, encoding="utf-8") as f:
                text = f.read()
            data = json.loads(text) if text.strip() else {}
            if not isinstance(data, dict):
                raise ValueError(f"{p}: expected a JSON object")
            cfg.update(data)
        if not cfg.namesrv_addr:
            cfg.namesrv_addr = os.environ.get("NAMESRV_ADDR", "")
        return cfg


@functools.lru_cache(maxsize=8)
def advertised_addresses(text: str) -> tuple[tuple[str, int | None], ...]:
    """``grpcAdvertisedAddress`` -> ((host, port or None for the serving port), ...): entries split by
    ``;``, each ``host[:port]``, ``[ipv6][:port]`` or a bare IPv6 address. All entries must be of one
    kind, and a domain name comes alone (the Java SDK refuses several addresses of the domain scheme)."""
    out: list[tuple[str, int | None]] = []
    for item in (i.strip() for i in text.split(";")):
        if not item:
            continue
        host, port = item, ""
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            ok = bool(bracket) and (rest == "" or rest.startswith(":"))
            port = rest[1:]
        else:
            ok = True
            if item.count(":") == 1:
                host, _, port = item.partition(":")
        ok = ok and bool(host) and (":" not in host or address_kind(host) == "ipv6")
        ok = ok and (port == "" or (port.isdigit() and 0 < int(port) < 65536))
        if not ok:
            raise ValueError(f"grpcAdvertisedAddress: bad address {item!r} (host:port, [ipv6]:port or host)")
        out.append((host, int(port) if port else None))
    kinds = {address_kind(h) for h, _ in out}
    if len(kinds) > 1:
        raise ValueError(f"grpcAdvertisedAddress {text!r}: mixes IPv4, IPv6 and domain names")
    if kinds == {"domain"} and len(out) > 1:
        raise ValueError(f"grpcAdvertisedAddress {text!r}: one domain name only (SDKs resolve it themselves)")
    return tuple(out)


def address_kind(host: str) -> str:
    """"ipv4", "ipv6" or "domain"."""
    try:
        return "ipv4" if ipaddress.ip_address(host).version == 4 else "ipv6"
    except ValueError:
        return "domain"


def _coerce(value: Any, typ: Any) -> Any:
    t = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    if t == "bool":
        return value if isinstance(value, bool) else str(value).strip().lower() == "true"
    if t == "int":
        return int(value)
    if t == "str":
        return str(value)
    return value


def resolve_path(path: str) -> Path:
    """Expand ``~``/``$VARS``; a relative path that does not exist is tried under $ROCKETMQ_HOME."""
    p = Path(os.path.expandvars(os.path.expanduser(path)))
    if not p.exists() and not p.is_absolute():
        home = os.environ.get("ROCKETMQ_HOME")
        if home and (Path(home) / p).exists():
            return Path(home) / p
    return p
