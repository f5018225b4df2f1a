"""The gRPC proxy (apache.rocketmq.v2 MessagingService) in front of a :class:`backends.api.Backend`.

Modules:
    config          ProxyConfig: rmq-proxy.json keys (RocketMQ's names and defaults; unknown keys warned)
    server          ProxyServer(config, backend): grpc.aio server + health service; run_proxy_with_backend
    service         MessagingService: every RPC, errors as Status codes inside a gRPC OK
    validation      RocketMQ's request rules -> apache.rocketmq.v2.Code
    convert         protobuf Message <-> domain Message/MessageExt
    receipt_handle  self-contained handles: "<POP extra info> <commitLogOffset>"
    session         client sessions rebuilt from each client's own Telemetry stream
    errors          ProxyError and remoting ResponseCode -> gRPC Code
    tls             tls.server.mode (disabled | permissive | enforcing) and the server certificate
    tls_relay       permissive mode: TLS and plaintext on one port, chosen by each connection's first byte
    cli             mqproxy (cluster | local | embedded)

Proxy-only keys in rmq-proxy.json beyond RocketMQ's: grpcAdvertisedAddress ("host:port[;host:port]",
put into QueryRoute/QueryAssignment answers instead of the address the client dialled),
grpcServerProcesses (Cluster mode: N processes share grpcServerPort with SO_REUSEPORT),
namesrvListenPort (embedded mode's NameServer), useUvloop, grpcBindAddress, and "tls.server.mode" (RocketMQ
sets it as a JVM system property).
"""
