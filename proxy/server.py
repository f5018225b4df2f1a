"""ProxyServer: the grpc.aio server hosting MessagingService and the standard health service.

Used by ``mqproxy`` (proxy.cli) and by ``mqbroker --enable-proxy``::

    server = ProxyServer(config, LocalBackend(broker), manage_backend=False)
    await server.start()          # server.port is the bound gRPC port
    ...
    await server.shutdown()
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from backends.acl import open_plain_acl
from backends.api import Backend
from backends.metrics import MetricsManager
from proxy import handlers, tls
from proxy.acl import PlainAccessValidator
from proxy.config import ProxyConfig
from proxy.service import MessagingService
from proxy.tls import TlsMode
from proxy.tls_relay import LOOPBACK, ProtocolDetector

log = logging.getLogger("proxy")

SERVICE_NAME = handlers.SERVICE.full_name


class ProxyServer:
    def __init__(self, config: ProxyConfig, backend: Backend, *, manage_backend: bool = True,
                 metrics: MetricsManager | None = None) -> None:
        """``metrics``: a manager to add the proxy's metrics to (Local mode: the broker's); by default the
        proxy builds its own from the metrics keys of ``config``."""
        self.config = config
        self.backend = backend
        self.manage_backend = manage_backend
        self.port = config.grpc_server_port
        self.service = MessagingService(config, backend, port=lambda: self.port)
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._detector: ProtocolDetector | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._own_metrics = metrics is None
        self.metrics = metrics if metrics is not None else MetricsManager(
            config, node_type="proxy", cluster=config.proxy_cluster_name, node_id=config.proxy_name,
            meter_name="proxy-meter")
        mode = "local" if config.local_mode else "cluster"
        self.metrics.gauge("rocketmq_proxy_up", lambda: [(1, {"proxy_mode": mode})], "1 while the proxy serves")

    async def start(self) -> None:
        cfg = self.config
        if self.manage_backend:
            await self.backend.start()
        options = [
            ("grpc.max_receive_message_length", cfg.grpc_max_inbound_message_size),
            ("grpc.max_send_message_length", cfg.grpc_max_inbound_message_size),
            ("grpc.so_reuseport", 1),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        acl = None
        if cfg.enable_acl:
            acl = handlers.Acl(PlainAccessValidator(open_plain_acl()), self.service.peer_of)
        server = grpc.aio.server(options=options)
        handlers.add_to_server(self.service, server, self.metrics.rpc_latency if self.metrics.enabled else None, acl)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        bind = cfg.grpc_bind_address or "0.0.0.0"
        host = f"[{bind}]" if ":" in bind else bind
        public = f"{host}:{cfg.grpc_server_port}"
        mode = TlsMode(cfg.tls_server_mode)
        creds, cert = None, ""
        if mode is not TlsMode.DISABLED:
            creds, cert = tls.server_credentials(cfg.tls_test_mode_enable, cfg.tls_cert_path, cfg.tls_key_path)
        if mode is TlsMode.PERMISSIVE:  # both behind the relay on the public port
            assert creds is not None
            self._detector = ProtocolDetector(server.add_insecure_port(f"{LOOPBACK}:0"),
                                              server.add_secure_port(f"{LOOPBACK}:0", creds))
        else:
            port = server.add_secure_port(public, creds) if creds else server.add_insecure_port(public)
            if port == 0:
                raise OSError(f"cannot bind the gRPC port {bind}:{cfg.grpc_server_port}")
            self.port = port
        await server.start()
        if self._detector is not None:
            try:
                self.port = await self._detector.start(bind, cfg.grpc_server_port)
            except OSError as e:
                await server.stop(0)
                raise OSError(f"cannot bind the gRPC port {bind}:{cfg.grpc_server_port}: {e.strerror}") from e
            self.service.client_of = self._detector.client_of
        self._server = server
        self.service.start()
        await self._update_health()
        self._health_task = asyncio.get_running_loop().create_task(self._health_loop())
        if self._own_metrics:
            await self.metrics.start()
        if mode is TlsMode.DISABLED:
            log.info("gRPC server listening on %s:%d (plaintext only, tls.server.mode disabled)", bind, self.port)
        else:
            log.info("gRPC server listening on %s:%d (tls.server.mode %s, %s)", bind, self.port, mode.value, cert)

    async def _update_health(self) -> None:
        try:
            ok = await asyncio.wait_for(self.backend.healthy(), 3.0)
        except Exception:
            ok = False
        st = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set("", st)
        await self.health.set(SERVICE_NAME, st)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            await self._update_health()

    async def shutdown(self, grace: float = 2.0) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            try:
                await self._health_task
            except asyncio.CancelledError:
                pass
            self._health_task = None
        await self.health.enter_graceful_shutdown()
        await self.service.stop()
        if self._detector is not None:
            await self._detector.close()
            self._detector = None
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._own_metrics:
            await self.metrics.shutdown()
        if self.manage_backend:
            await self.backend.shutdown()


async def run_proxy_with_backend(config: ProxyConfig, backend: Backend, *, manage_backend: bool = False,
                                 metrics: MetricsManager | None = None) -> ProxyServer:
    """Start a proxy in front of ``backend`` (for ``mqbroker --enable-proxy``); returns it started."""
    server = ProxyServer(config, backend, manage_backend=manage_backend, metrics=metrics)
    await server.start()
    return server
