"""MessagingService: the apache.rocketmq.v2 gRPC servicer (RocketMQ's GrpcMessagingApplication).

Every error is answered as a gRPC OK carrying ``Status{code, message}`` (the SDKs read the status).
The servicer only talks to :class:`backends.api.Backend`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from backends.api import (
    Backend,
    BackendError,
    ConsumerClient,
    PopRequest,
    PullStatus,
    SendResult,
    SendStatus,
    TopicRouteData,
)
from backends.model import (
    RETRY_GROUP_TOPIC_PREFIX,
    MessageConst,
    MessageExt,
    Perm,
    SubscriptionGroupConfig,
    TopicConfig,
    TopicMessageType,
    decode_offset_msg_id,
)
from backends.remoting.codes import ResponseCode
from backends.remoting.command import VERSION
from backends.remoting.version import version_ordinal
from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from protos.apache.rocketmq.v2 import service_pb2_grpc
from proxy import receipt_handle as rh
from proxy import validation as v
from proxy.config import ProxyConfig, address_kind, advertised_addresses
from proxy.convert import (
    duration_to_ms,
    java_hash,
    parse_peer,
    to_message,
    to_pb_message,
    ts_to_ms,
)
from proxy.errors import ProxyError, grpc_code
from proxy.session import ClientSession, SessionManager

log = logging.getLogger("proxy")
C = pb.Code
MT = pb.MessageType
_MT_NORMAL = int(MT.NORMAL)
_MT_TRANSACTION = int(MT.TRANSACTION)

_ACCEPT_TYPES: dict[TopicMessageType, tuple[int, ...]] = {
    TopicMessageType.NORMAL: (MT.NORMAL,),
    TopicMessageType.UNSPECIFIED: (MT.NORMAL,),
    TopicMessageType.FIFO: (MT.FIFO,),
    TopicMessageType.DELAY: (MT.DELAY,),
    TopicMessageType.TRANSACTION: (MT.TRANSACTION,),
    TopicMessageType.MIXED: (MT.NORMAL, MT.FIFO, MT.DELAY, MT.TRANSACTION),
}
# Group retry policy (RocketMQ's messageDelayLevel from level 3: 1s 5s 10s 30s 1m 2m ... 2h).
CUSTOMIZED_BACKOFF_S = (1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200)
_SEND_STATUS = {
    SendStatus.SEND_OK: (C.OK, "OK"),
    SendStatus.FLUSH_DISK_TIMEOUT: (C.MASTER_PERSISTENCE_TIMEOUT, "flush disk timeout"),
    SendStatus.FLUSH_SLAVE_TIMEOUT: (C.SLAVE_PERSISTENCE_TIMEOUT, "flush slave timeout"),
    SendStatus.SLAVE_NOT_AVAILABLE: (C.HA_NOT_AVAILABLE, "slave not available"),
}
ROUTE_CACHE_S = 3.0
ACK_LANES = 8


def status(code: int, message: str = "") -> pb.Status:
    return pb.Status(code=code, message=message or pb.Code.Name(code))  # type: ignore[arg-type]


OK_STATUS = status(C.OK, "OK")
_OK = int(C.OK)


def error_status(exc: BaseException) -> pb.Status:
    if isinstance(exc, ProxyError):
        return status(exc.code, exc.message)
    if isinstance(exc, BackendError):
        return status(grpc_code(exc.code, exc.message), exc.message)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return status(C.PROXY_TIMEOUT, "timed out waiting for the broker")
    log.exception("internal error", exc_info=exc)
    return status(C.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")


async def _end_telemetry(context: Any, st: pb.Status) -> None:
    """End a Telemetry call as RocketMQ's ClientActivity.processTelemetryException does."""
    code = grpc.StatusCode.INVALID_ARGUMENT if C.BAD_REQUEST <= st.code < C.INTERNAL_ERROR else grpc.StatusCode.INTERNAL
    await context.abort(code, f"process client telemetryCommand failed. {pb.Code.Name(st.code)}: {st.message}")


def _overall_status(entries: Any) -> pb.Status:
    """A batch answer's status: its entries' one status when they all share a code, else MULTIPLE_RESULTS."""
    if len({e.status.code for e in entries}) == 1:
        return entries[0].status  # type: ignore[no-any-return]
    return status(C.MULTIPLE_RESULTS, "multiple results")


def _enum_name(enum: Any, number: int) -> str:
    """The name of an enum number, or the number itself for one this proto version does not define."""
    try:
        return str(enum.Name(number))
    except ValueError:
        return str(number)


def _perm_of(perm: int) -> int:
    r, w = Perm.readable(perm), Perm.writeable(perm)
    if r and w:
        return pb.Permission.READ_WRITE
    if r:
        return pb.Permission.READ
    if w:
        return pb.Permission.WRITE
    return pb.Permission.NONE


@dataclass(slots=True)
class _CachedTopic:
    route: TopicRouteData
    config: TopicConfig | None
    write_queues: list[tuple[str, int]]
    expires: float


@dataclass(slots=True)
class _Renewal:
    current: str
    group: str
    topic: str
    client_id: str
    next_visible: int  # ms
    give_up_at: int  # ms


def _metadata(context: Any) -> dict[str, str]:
    md = context.invocation_metadata()
    return {k: v for k, v in md} if md else {}


def _client_id(context: Any) -> str:
    md = context.invocation_metadata()
    if md:
        for k, val in md:
            if k == "x-mq-client-id":
                if val:
                    return str(val)
                break
    raise ProxyError(C.CLIENT_ID_REQUIRED, "x-mq-client-id header is required")


# the broker's consume type of a gRPC consumer (RocketMQ's ClientActivity.buildConsumeType)
_CONSUME_TYPES: dict[int, str] = {pb.ClientType.SIMPLE_CONSUMER: "CONSUME_ACTIVELY",
                                  pb.ClientType.PUSH_CONSUMER: "CONSUME_PASSIVELY"}


def _timeout(context: Any, default: float = 5.0) -> float:
    rem = context.time_remaining()
    if rem is None:
        return default
    return max(0.05, min(rem - 0.05, 60.0))


def _ack_error_status(e: BaseException) -> Any:
    """An ack that failed: a handle naming no delivery (NO_MESSAGE, a bad extra info) is an invalid
    receipt handle."""
    if isinstance(e, BackendError):
        code = grpc_code(e.code, e.message)
        if e.code in (ResponseCode.NO_MESSAGE, ResponseCode.INVALID_PARAMETER):
            code = C.INVALID_RECEIPT_HANDLE
        return status(code, e.message)
    return error_status(e)


class MessagingService(service_pb2_grpc.MessagingServiceServicer):
    def __init__(self, config: ProxyConfig, backend: Backend, port: Callable[[], int] | None = None) -> None:
        self.config = config
        self.backend = backend
        self.sessions = SessionManager(config.channel_expired_timeout / 1000.0)
        self._port = port or (lambda: config.grpc_server_port)
        self._topics: dict[str, _CachedTopic] = {}
        self._groups: dict[str, tuple[SubscriptionGroupConfig | None, float]] = {}
        self._rr = itertools.count()
        self._renewals: dict[str, _Renewal] = {}
        # nonce -> the future a client's answer on its Telemetry stream resolves (ask_client)
        self._client_answers: dict[str, asyncio.Future[spb.TelemetryCommand]] = {}
        self._renew_task: asyncio.Task[None] | None = None
        # the client behind a connection the gRPC server sees (set when a relay stands in between)
        self.client_of: Callable[[str, int], tuple[str, int]] | None = None
        backend.set_transaction_check_listener(self.on_transaction_check)
        backend.set_consumer_commander(self)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.sessions.start()
        if self.config.enable_proxy_auto_renew and self._renew_task is None:
            self._renew_task = asyncio.get_running_loop().create_task(self._renew_loop())

    async def stop(self) -> None:
        if self._renew_task is not None:
            self._renew_task.cancel()
            try:
                await self._renew_task
            except asyncio.CancelledError:
                pass
            self._renew_task = None
        await self.sessions.stop()

    # -- helpers -----------------------------------------------------------------------------------
    def peer_of(self, context: Any) -> tuple[str, int]:
        """The calling client's (host, port)."""
        host, port = parse_peer(context.peer())
        return self.client_of(host, port) if self.client_of is not None else (host, port)

    async def _topic(self, topic: str) -> _CachedTopic:
        now = time.monotonic()
        c = self._topics.get(topic)
        if c is not None and c.expires > now:
            return c
        route = await self.backend.get_route(topic)
        try:
            config = await self.backend.get_topic_config(topic)
        except BackendError:
            config = None
        masters = {b.broker_name for b in route.broker_datas if b.master_addr}
        wq: list[tuple[str, int]] = []
        for qd in sorted(route.queue_datas, key=lambda q: q.broker_name):
            if Perm.writeable(qd.perm) and qd.broker_name in masters:
                wq.extend((qd.broker_name, i) for i in range(qd.write_queue_nums))
        c = _CachedTopic(route, config, wq, now + ROUTE_CACHE_S)
        self._topics[topic] = c
        return c

    def _endpoints(self, requested: pb.Endpoints | None) -> pb.Endpoints:
        adv = advertised_addresses(self.config.grpc_advertised_address)
        if adv:
            eps = pb.Endpoints(scheme=_scheme_of(adv[0][0]))  # type: ignore[arg-type]
            for host, port in adv:
                eps.addresses.add(host=host, port=port or self._port())
            return eps
        if requested is not None and requested.addresses:
            return requested
        bind = self.config.grpc_bind_address
        host = "127.0.0.1" if bind in ("", "0.0.0.0", "::") else bind
        eps = pb.Endpoints(scheme=_scheme_of(host))  # type: ignore[arg-type]
        eps.addresses.add(host=host, port=self._port())
        return eps

    async def _group_config(self, group: str) -> SubscriptionGroupConfig | None:
        now = time.monotonic()
        hit = self._groups.get(group)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            gc = await self.backend.get_subscription_group(group)
        except BackendError:
            gc = None
        self._groups[group] = (gc, now + ROUTE_CACHE_S)
        return gc

    # -- QueryRoute --------------------------------------------------------------------------------
    async def QueryRoute(self, request: spb.QueryRouteRequest, context: Any) -> spb.QueryRouteResponse:
        try:
            _client_id(context)
            topic = request.topic.name
            v.validate_topic(topic)
            c = await self._topic(topic)
            eps = self._endpoints(request.endpoints if request.HasField("endpoints") else None)
            resp = spb.QueryRouteResponse(status=OK_STATUS)
            accept = _ACCEPT_TYPES[c.config.message_type if c.config else TopicMessageType.NORMAL]
            masters = {b.broker_name for b in c.route.broker_datas if b.master_addr}
            for qd in sorted(c.route.queue_datas, key=lambda q: q.broker_name):
                if qd.broker_name not in masters:
                    continue
                broker = pb.Broker(name=qd.broker_name, id=0, endpoints=eps)
                readable, writable = Perm.readable(qd.perm), Perm.writeable(qd.perm)
                rw = r = w = 0
                if readable and writable:
                    rw = min(qd.read_queue_nums, qd.write_queue_nums)
                    r, w = qd.read_queue_nums - rw, qd.write_queue_nums - rw
                elif writable:
                    w = qd.write_queue_nums
                elif readable:
                    r = qd.read_queue_nums
                qid = 0
                for count, perm in ((rw, pb.Permission.READ_WRITE), (r, pb.Permission.READ),
                                    (w, pb.Permission.WRITE)):
                    for _ in range(count):
                        resp.message_queues.add(
                            topic=request.topic, id=qid, permission=perm, broker=broker,
                            accept_message_types=accept,
                        )
                        qid += 1
            if not resp.message_queues:
                return spb.QueryRouteResponse(status=status(C.TOPIC_NOT_FOUND, f"topic {topic} has no queue"))
            return resp
        except Exception as e:
            return spb.QueryRouteResponse(status=error_status(e))

    # -- Heartbeat / sessions ----------------------------------------------------------------------
    async def Heartbeat(self, request: spb.HeartbeatRequest, context: Any) -> spb.HeartbeatResponse:
        try:
            cid = _client_id(context)
            s = self.sessions.get(cid)
            if (s is None or s.settings is None) and request.client_type == pb.ClientType.CLIENT_TYPE_UNSPECIFIED:
                raise ProxyError(C.UNRECOGNIZED_CLIENT_TYPE, "cannot find client settings for this client")
            s = self.sessions.touch(cid)
            if s.client_type == pb.ClientType.CLIENT_TYPE_UNSPECIFIED:
                s.client_type = request.client_type
            if request.HasField("group") and request.group.name:
                s.group = request.group.name
            await self._register_consumer(s, context)
            return spb.HeartbeatResponse(status=OK_STATUS)
        except Exception as e:
            return spb.HeartbeatResponse(status=error_status(e))

    async def _register_consumer(self, s: ClientSession, context: Any) -> None:
        """A consumer's settings or heartbeat: (re)register it with the backend (Local mode: the broker
        lists it until it stops heartbeating)."""
        consume_type = _CONSUME_TYPES.get(s.client_type)
        if not consume_type or not s.group:
            return
        host, port = self.peer_of(context)
        subs = s.settings.subscription.subscriptions if s.settings is not None else ()
        md = _metadata(context)
        # the SDK's release (RocketMQ's proxy falls back to its own version for one it cannot name)
        version = version_ordinal(md.get("x-mq-client-version", "")) or VERSION
        try:
            await self.backend.register_consumer(ConsumerClient(
                s.client_id, s.group, f"{host}:{port}", md.get("x-mq-language") or "OTHER", version, consume_type,
                [(e.topic.name, "SQL92" if e.expression.type == pb.FilterType.SQL else "TAG", e.expression.expression)
                 for e in subs]))
        except Exception as e:  # noqa: BLE001 - being listed is best effort, like register_producer
            log.debug("register_consumer %s %s: %s", s.client_id, s.group, e)

    async def NotifyClientTermination(self, request: spb.NotifyClientTerminationRequest,
                                      context: Any) -> spb.NotifyClientTerminationResponse:
        try:
            cid = _client_id(context)
            s = self.sessions.remove(cid)
            if s is not None and s.group and s.client_type in _CONSUME_TYPES:
                await self.backend.unregister_consumer(s.group, cid)
            for key in [k for k, r in self._renewals.items() if r.client_id == cid]:
                del self._renewals[key]
            return spb.NotifyClientTerminationResponse(status=OK_STATUS)
        except Exception as e:
            return spb.NotifyClientTerminationResponse(status=error_status(e))

    # -- Telemetry ---------------------------------------------------------------------------------
    async def Telemetry(self, request_iterator: Any, context: Any) -> AsyncIterator[spb.TelemetryCommand]:
        """A client's settings are answered on the stream; settings that cannot be applied end the call
        with a gRPC error, as RocketMQ's proxy ends it (INVALID_ARGUMENT for a 4xxxx code, else INTERNAL):
        the Java and Go SDKs then fail their start with the reason instead of waiting for settings."""
        try:
            cid = _client_id(context)
        except ProxyError as e:
            await _end_telemetry(context, error_status(e))
            return
        out: asyncio.Queue[spb.TelemetryCommand | None] = asyncio.Queue()
        failed: list[pb.Status] = []
        self.sessions.attach(cid, out)
        reader = asyncio.get_running_loop().create_task(
            self._telemetry_reader(cid, request_iterator, out, failed, context))
        try:
            while True:
                cmd = await out.get()
                if cmd is None:
                    break
                yield cmd
        finally:
            reader.cancel()
            self.sessions.detach(cid, out)
        if failed:
            await _end_telemetry(context, failed[0])

    async def _telemetry_reader(self, cid: str, request_iterator: Any,
                                out: asyncio.Queue[spb.TelemetryCommand | None], failed: list[pb.Status],
                                context: Any) -> None:
        try:
            async for cmd in request_iterator:
                which = cmd.WhichOneof("command")
                if which == "settings":
                    try:
                        out.put_nowait(await self.apply_settings(cid, cmd.settings))
                    except Exception as e:
                        failed.append(error_status(e))
                        break
                    s = self.sessions.get(cid)
                    if s is not None:
                        await self._register_consumer(s, context)  # listed from its start, not its heartbeat
                elif which in ("thread_stack_trace", "verify_message_result", "verify_message_command"):
                    # an answer to ask_client (the Node.js SDK answers a verify in a verify_message_command)
                    fut = self._client_answers.get(getattr(cmd, which).nonce)
                    if fut is not None and not fut.done():
                        fut.set_result(cmd)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # stream broken by the client
            log.debug("telemetry stream of %s ended: %s", cid, e)
        finally:
            out.put_nowait(None)

    async def apply_settings(self, cid: str, settings: pb.Settings) -> spb.TelemetryCommand:
        cfg = self.config
        merged = pb.Settings()
        merged.CopyFrom(settings)
        ct = settings.client_type
        if ct == pb.ClientType.PRODUCER or settings.HasField("publishing"):
            for t in settings.publishing.topics:
                v.validate_topic(t.name)
            bp = merged.backoff_policy
            bp.Clear()
            bp.max_attempts = cfg.grpc_client_producer_max_attempts
            eb = bp.exponential_backoff
            eb.initial.seconds = cfg.grpc_client_producer_backoff_initial_millis // 1000
            eb.initial.nanos = (cfg.grpc_client_producer_backoff_initial_millis % 1000) * 1_000_000
            eb.max.seconds = cfg.grpc_client_producer_backoff_max_millis // 1000
            eb.max.nanos = (cfg.grpc_client_producer_backoff_max_millis % 1000) * 1_000_000
            eb.multiplier = float(cfg.grpc_client_producer_backoff_multiplier)
            merged.publishing.max_body_size = cfg.max_message_size
            merged.publishing.validate_message_type = cfg.enable_topic_message_type_check
        elif settings.HasField("subscription") or ct in (
            pb.ClientType.PUSH_CONSUMER, pb.ClientType.SIMPLE_CONSUMER, pb.ClientType.PULL_CONSUMER
        ):
            group = settings.subscription.group.name
            v.validate_group(group)
            gc = await self._group_config(group)
            sub = merged.subscription
            sub.fifo = bool(gc and gc.consume_message_orderly)
            sub.receive_batch_size = cfg.grpc_client_consumer_long_polling_batch_size
            lp = cfg.grpc_client_consumer_max_long_polling_timeout_millis
            sub.long_polling_timeout.seconds = lp // 1000
            sub.long_polling_timeout.nanos = (lp % 1000) * 1_000_000
            bp = merged.backoff_policy
            bp.Clear()
            bp.max_attempts = (gc.retry_max_times if gc else 16) + 1
            for s in CUSTOMIZED_BACKOFF_S:
                bp.customized_backoff.next.add(seconds=s)
        else:
            raise ProxyError(C.UNRECOGNIZED_CLIENT_TYPE, f"unrecognized client type {ct}")
        merged.metric.on = False
        merged.metric.ClearField("endpoints")
        sess = self.sessions.update_settings(cid, merged)
        if sess.client_type == pb.ClientType.PRODUCER:
            for topic in sess.topics:
                try:
                    await self.backend.register_producer(cid, topic)
                except Exception as e:  # check-back registration is best effort
                    log.debug("register_producer %s %s: %s", cid, topic, e)
        return spb.TelemetryCommand(status=OK_STATUS, settings=merged)

    async def on_transaction_check(self, producer_group: str, msg: MessageExt, transaction_id: str) -> None:
        """Backend hook: forward a broker's check-back to one producer's Telemetry stream."""
        candidates = self.sessions.producers_for(producer_group) or self.sessions.producers_for(msg.topic)
        if not candidates:
            log.info("no producer online for transaction check of group %s", producer_group)
            return
        s = candidates[next(self._rr) % len(candidates)]
        cmd = spb.TelemetryCommand()
        cmd.recover_orphaned_transaction_command.transaction_id = transaction_id
        real_topic = msg.properties.get(MessageConst.REAL_TOPIC) or msg.topic
        cmd.recover_orphaned_transaction_command.message.CopyFrom(to_pb_message(msg, real_topic))
        log.info("transaction check of %s (group %s, tx %s) sent to producer %s",
                 cmd.recover_orphaned_transaction_command.message.system_properties.message_id,
                 producer_group, transaction_id, s.client_id)
        s.streams[0].put_nowait(cmd)

    # -- admin requests for a consumer (Local mode: mqadmin consumerStatus, consume directly) --------
    async def ask_client(self, client_id: str, cmd: spb.TelemetryCommand, nonce: str,
                         timeout: float = 3.0) -> spb.TelemetryCommand | None:
        """Send ``cmd`` on the client's Telemetry stream and await its answer carrying ``nonce``; None when
        the client has no stream here. TimeoutError when it does not answer."""
        s = self.sessions.get(client_id)
        if s is None or not s.streams:
            return None
        fut: asyncio.Future[spb.TelemetryCommand] = asyncio.get_running_loop().create_future()
        self._client_answers[nonce] = fut
        try:
            s.streams[0].put_nowait(cmd)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._client_answers.pop(nonce, None)

    async def thread_stack_trace(self, client_id: str) -> str | None:
        cmd = spb.TelemetryCommand()
        nonce = cmd.print_thread_stack_trace_command.nonce = uuid.uuid4().hex
        answer = await self.ask_client(client_id, cmd, nonce)
        if answer is None:
            return None
        if answer.status.code != C.OK:
            raise ProxyError(answer.status.code, f"the client could not print its threads: {answer.status.message}")
        return answer.thread_stack_trace.thread_stack_trace

    async def verify_message(self, client_id: str, msg: MessageExt) -> int | None:
        cmd = spb.TelemetryCommand()
        nonce = cmd.verify_message_command.nonce = uuid.uuid4().hex
        cmd.verify_message_command.message.CopyFrom(to_pb_message(msg, msg.topic))
        answer = await self.ask_client(client_id, cmd, nonce, timeout=10.0)
        return None if answer is None else int(answer.status.code)

    # -- SendMessage -------------------------------------------------------------------------------
    async def SendMessage(self, request: spb.SendMessageRequest, context: Any) -> spb.SendMessageResponse:
        try:
            _client_id(context)
            msgs = request.messages
            if not msgs:
                raise ProxyError(C.MESSAGE_CORRUPTED, "no message to send")
            topic = msgs[0].topic.name
            v.validate_topic(topic)
            cfg = self.config
            c = await self._topic(topic)
            if not c.write_queues:
                raise ProxyError(C.FORBIDDEN, f"topic {topic} has no writable queue")
            topic_type = c.config.message_type if (c.config and cfg.enable_topic_message_type_check) else None
            born_host = self.peer_of(context)
            wq = c.write_queues
            n = len(wq)
            rr_slot = wq[next(self._rr) % n]
            batches: dict[tuple[str, int], list[int]] = {}
            converted = []
            expected = None
            if topic_type is not None and topic_type is not TopicMessageType.MIXED:
                expected = _ACCEPT_TYPES.get(topic_type, (_MT_NORMAL,))[0]
            validate = self._validate_message
            for i, m in enumerate(msgs):
                if m.topic.name != topic:
                    raise ProxyError(C.MESSAGE_CORRUPTED, "messages of one request must share a topic")
                sp = m.system_properties
                group = validate(m, sp, expected, topic_type)
                slot = wq[java_hash(group) % n] if group is not None else rr_slot
                converted.append(to_message(m, topic, slot[1], born_host, topic))
                if slot in batches:
                    batches[slot].append(i)
                else:
                    batches[slot] = [i]
            timeout = _timeout(context)
            results: list[SendResult | BaseException | None] = [None] * len(msgs)

            async def send(slot: tuple[str, int], idx: list[int]) -> None:
                try:
                    res = await self.backend.send_message(slot[0], [converted[i] for i in idx], timeout)
                    for i, r in zip(idx, res, strict=False):
                        results[i] = r
                except Exception as e:
                    for i in idx:
                        results[i] = e

            if len(batches) == 1:
                ((slot, idx),) = batches.items()
                await send(slot, idx)
            else:
                await asyncio.gather(*(send(s, i) for s, i in batches.items()))
            resp = spb.SendMessageResponse()
            add = resp.entries.add
            send_ok = SendStatus.SEND_OK
            for m, r in zip(msgs, results, strict=True):
                # (setting the entry's status fields costs half of passing a Status to add())
                if isinstance(r, SendResult):
                    e = add(message_id=r.msg_id or m.system_properties.message_id, offset=r.queue_offset)
                    if r.status is send_ok:
                        est = e.status
                        est.code = _OK
                        est.message = "OK"
                    else:
                        e.status.CopyFrom(status(*_SEND_STATUS[r.status]))
                    if r.recall_handle:
                        e.recall_handle = r.recall_handle
                    if m.system_properties.message_type == _MT_TRANSACTION:
                        e.transaction_id = r.transaction_id or r.offset_msg_id
                else:
                    e = add(message_id=m.system_properties.message_id)
                    e.status.CopyFrom(error_status(r) if r is not None
                                      else status(C.INTERNAL_SERVER_ERROR, "no result"))
            resp.status.CopyFrom(_overall_status(resp.entries))
            return resp
        except Exception as e:
            return spb.SendMessageResponse(status=error_status(e))

    def _validate_message(self, m: pb.Message, sp: Any, expected: int | None,
                          topic_type: TopicMessageType | None) -> str | None:
        """Validate one message; returns its message group (or None)."""
        cfg = self.config
        if not sp.message_id or not sp.message_id.strip():
            raise ProxyError(C.ILLEGAL_MESSAGE_ID, "message id cannot be empty")
        body_len = len(m.body)
        if body_len == 0 or body_len > cfg.max_message_size:
            v.validate_body(m.body, cfg)
        if sp.tag:
            v.validate_tag(sp.tag)
        if sp.keys:
            for k in sp.keys:
                v.validate_key(k)
        if m.user_properties:
            v.validate_user_properties(m.user_properties, cfg)
        mtype = sp.message_type or _MT_NORMAL
        group = None
        if sp.message_group:  # empty: no group, as RocketMQ takes it
            group = sp.message_group
            v.validate_message_group(group, cfg)
        if sp.HasField("delivery_timestamp"):
            v.validate_delivery_time(ts_to_ms(sp.delivery_timestamp), cfg)
        if mtype == _MT_TRANSACTION and sp.HasField("orphaned_transaction_recovery_duration"):
            if sp.orphaned_transaction_recovery_duration.seconds > cfg.max_transaction_recovery_second:
                raise ProxyError(C.BAD_REQUEST, "orphaned transaction recovery duration is too long")
        if expected is not None and mtype != expected:
            raise ProxyError(
                C.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE,
                f"current message type {_enum_name(MT, mtype)} not match with topic accept "
                f"message types {topic_type.value if topic_type else ''}",
            )
        return group

    # -- ReceiveMessage ----------------------------------------------------------------------------
    async def ReceiveMessage(self, request: spb.ReceiveMessageRequest,
                             context: Any) -> AsyncIterator[spb.ReceiveMessageResponse]:
        try:
            cid = _client_id(context)
            group = request.group.name
            v.validate_group(group)
            topic = request.message_queue.topic.name
            v.validate_topic(topic)
            broker = request.message_queue.broker.name
            cfg = self.config
            fe = request.filter_expression
            if fe.type == pb.FilterType.SQL:
                exp_type, expression = "SQL92", fe.expression
                if not expression.strip():
                    raise ProxyError(C.ILLEGAL_FILTER_EXPRESSION, "SQL expression cannot be empty")
            else:
                exp_type, expression = "TAG", (fe.expression.strip() or "*")
            auto_renew = request.auto_renew and cfg.enable_proxy_auto_renew
            if auto_renew:
                invisible = cfg.default_invisible_time_mills
            elif request.HasField("invisible_duration"):
                invisible = duration_to_ms(request.invisible_duration)
                v.validate_invisible_time(invisible, cfg)
            else:
                raise ProxyError(C.ILLEGAL_INVISIBLE_TIME, "invisible duration is required")
            remaining = context.time_remaining()
            lo = cfg.grpc_client_consumer_min_long_polling_timeout_millis
            hi = cfg.grpc_client_consumer_max_long_polling_timeout_millis
            reserve = cfg.long_polling_reserve_time_in_millis
            if request.HasField("long_polling_timeout"):
                poll = duration_to_ms(request.long_polling_timeout)
            elif remaining is not None:
                poll = int(remaining * 1000) - reserve
            else:
                poll = hi
            poll = min(max(poll, lo), hi)
            if remaining is not None and poll > remaining * 1000 - reserve:
                poll = int(remaining * 1000) - reserve
                if poll <= 0:
                    raise ProxyError(C.ILLEGAL_POLLING_TIME, "the deadline leaves no time for polling")
            batch = request.batch_size or cfg.grpc_client_consumer_long_polling_batch_size
            batch = min(max(batch, 1), 32)
            if not broker:
                c = await self._topic(topic)
                names = sorted({qd.broker_name for qd in c.route.queue_datas if Perm.readable(qd.perm)})
                if not names:
                    raise ProxyError(C.FORBIDDEN, f"topic {topic} has no readable queue")
                broker = names[next(self._rr) % len(names)]
            gc = await self._group_config(group)
            order = bool(gc and gc.consume_message_orderly)
            preq = PopRequest(
                group=group, topic=topic, queue_id=-1, max_msg_nums=batch, invisible_time_ms=invisible,
                poll_time_ms=poll, expression_type=exp_type, expression=expression, order=order,
                attempt_id=request.attempt_id if request.HasField("attempt_id") else "",
            )
            timeout = (remaining - 0.02) if remaining is not None else poll / 1000.0 + 5.0
            result = await self.backend.pop_message(broker, preq, max(timeout, 0.05))
        except Exception as e:
            yield spb.ReceiveMessageResponse(status=error_status(e))
            return
        messages = result.messages
        if not messages:
            yield spb.ReceiveMessageResponse(status=status(C.MESSAGE_NOT_FOUND, "no new message"))
            return
        yield spb.ReceiveMessageResponse(status=OK_STATUS)
        pop_ck = MessageConst.POP_CK
        new_response = spb.ReceiveMessageResponse
        now = int(time.time() * 1000)
        for m in messages:
            extra = m.properties.get(pop_ck, "")
            handle = f"{extra} {m.commitlog_offset}" if extra else ""
            out_topic = topic if m.topic.startswith(RETRY_GROUP_TOPIC_PREFIX) else m.topic
            r = new_response()
            to_pb_message(m, out_topic, handle, invisible, r.message)
            if auto_renew and handle:
                self._renewals[handle] = _Renewal(handle, group, topic, cid, now + invisible,
                                                  now + cfg.renew_max_time_millis)
            yield r
        # the delivery timestamp closes the batch (the SDKs use it for consume-lag metrics)
        done = spb.ReceiveMessageResponse()
        ms = int(time.time() * 1000)
        done.delivery_timestamp.seconds = ms // 1000
        done.delivery_timestamp.nanos = (ms % 1000) * 1_000_000
        yield done

    # -- Ack / ChangeInvisibleDuration / DLQ -------------------------------------------------------
    def _current_handle(self, handle: str, forget: bool) -> str:
        r = self._renewals.pop(handle, None) if forget else self._renewals.get(handle)
        return r.current if r is not None else handle

    async def AckMessage(self, request: spb.AckMessageRequest, context: Any) -> spb.AckMessageResponse:
        try:
            _client_id(context)
            group, topic = request.group.name, request.topic.name
            v.validate_group(group)
            v.validate_topic(topic)
            entries = request.entries
            if not entries:
                raise ProxyError(C.BAD_REQUEST, "no entry to ack")
            resp = spb.AckMessageResponse()

            async def ack(entry: Any, out: Any) -> None:
                out.message_id = entry.message_id
                out.receipt_handle = entry.receipt_handle
                try:
                    h = rh.decode(self._current_handle(entry.receipt_handle, True))
                    await self.backend.ack_message(h.broker_name, group, topic, h.extra_info)
                    out.status.CopyFrom(OK_STATUS)
                except Exception as e:
                    out.status.CopyFrom(_ack_error_status(e))

            outs = [resp.entries.add() for _ in entries]
            if len(entries) == 1:
                await ack(entries[0], outs[0])
            else:
                batch_ack = getattr(self.backend, "ack_messages", None)
                if batch_ack is not None:
                    await self._batch_ack(batch_ack, group, topic, entries, outs)
                else:
                    # a few lanes ack in order: concurrency for remote brokers without a task per entry
                    lanes = min(ACK_LANES, len(entries))
                    pairs = list(zip(entries, outs, strict=True))

                    async def lane(k: int) -> None:
                        for e, o in pairs[k::lanes]:
                            await ack(e, o)

                    await asyncio.gather(*(lane(k) for k in range(lanes)))
            resp.status.CopyFrom(_overall_status(outs))
            return resp
        except Exception as e:
            return spb.AckMessageResponse(status=error_status(e))

    async def _batch_ack(self, batch_ack: Any, group: str, topic: str, entries: Any, outs: list[Any]) -> None:
        """Backends offering ``ack_messages(broker, group, topic, [extra_info]) -> [error or None]`` get
        one call per broker (RocketMQ's BATCH_ACK_MESSAGE)."""
        by_broker: dict[str, list[tuple[str, Any]]] = {}
        for e, o in zip(entries, outs, strict=True):
            o.message_id = e.message_id
            o.receipt_handle = e.receipt_handle
            try:
                h = rh.decode(self._current_handle(e.receipt_handle, True))
            except ProxyError as err:
                o.status.CopyFrom(status(err.code, err.message))
                continue
            by_broker.setdefault(h.broker_name, []).append((h.extra_info, o))
        for broker, items in by_broker.items():
            try:
                errors = await batch_ack(broker, group, topic, [x for x, _ in items])
            except Exception as exc:
                errors = [exc] * len(items)
            for (_, o), failure in zip(items, errors or [None] * len(items), strict=False):
                o.status.CopyFrom(OK_STATUS if failure is None else _ack_error_status(failure))

    async def ChangeInvisibleDuration(self, request: spb.ChangeInvisibleDurationRequest,
                                      context: Any) -> spb.ChangeInvisibleDurationResponse:
        try:
            _client_id(context)
            group, topic = request.group.name, request.topic.name
            v.validate_group(group)
            v.validate_topic(topic)
            ms = duration_to_ms(request.invisible_duration)
            v.validate_invisible_time(ms, self.config, min_ms=0)
            h = rh.decode(self._current_handle(request.receipt_handle, True))
            if h.is_expired(int(time.time() * 1000)):
                raise ProxyError(C.INVALID_RECEIPT_HANDLE, "receipt handle has expired")
            try:
                new_extra = await self.backend.change_invisible_time(h.broker_name, group, topic, h.extra_info, ms)
            except BackendError as e:
                if e.code in (ResponseCode.NO_MESSAGE, ResponseCode.INVALID_PARAMETER):
                    raise ProxyError(C.INVALID_RECEIPT_HANDLE, e.message) from None
                raise
            return spb.ChangeInvisibleDurationResponse(
                status=OK_STATUS, receipt_handle=rh.encode(new_extra, h.commit_log_offset)
            )
        except Exception as e:
            return spb.ChangeInvisibleDurationResponse(status=error_status(e))

    async def ForwardMessageToDeadLetterQueue(
        self, request: spb.ForwardMessageToDeadLetterQueueRequest, context: Any
    ) -> spb.ForwardMessageToDeadLetterQueueResponse:
        try:
            _client_id(context)
            group, topic = request.group.name, request.topic.name
            v.validate_group(group)
            v.validate_topic(topic)
            h = rh.decode(self._current_handle(request.receipt_handle, True))
            await self.backend.forward_to_dead_letter_queue(
                h.broker_name, group, topic, h.extra_info, request.max_delivery_attempts
            )
            return spb.ForwardMessageToDeadLetterQueueResponse(status=OK_STATUS)
        except Exception as e:
            return spb.ForwardMessageToDeadLetterQueueResponse(status=error_status(e))

    async def _renew_loop(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(1.0)
            if not self._renewals:
                continue
            now = int(time.time() * 1000)
            for key, r in list(self._renewals.items()):
                if r.next_visible - now > cfg.renew_ahead_time_millis:
                    continue
                if now >= r.give_up_at or self.sessions.get(r.client_id) is None:
                    self._renewals.pop(key, None)
                    continue
                try:
                    h = rh.decode(r.current)
                    # each renewal extends by renewSliceTimeMillis (RocketMQ 5.0's proxy)
                    new_extra = await self.backend.change_invisible_time(
                        h.broker_name, r.group, r.topic, h.extra_info, cfg.renew_slice_time_millis
                    )
                    if key in self._renewals:
                        r.current = rh.encode(new_extra, h.commit_log_offset)
                        r.next_visible = int(time.time() * 1000) + cfg.renew_slice_time_millis
                except Exception as e:
                    log.info("auto renew of %s failed: %s", key, e)
                    self._renewals.pop(key, None)

    # -- QueryAssignment ---------------------------------------------------------------------------
    async def QueryAssignment(self, request: spb.QueryAssignmentRequest,
                              context: Any) -> spb.QueryAssignmentResponse:
        try:
            _client_id(context)
            topic, group = request.topic.name, request.group.name
            v.validate_topic(topic)
            v.validate_group(group)
            c = await self._topic(topic)
            gc = await self._group_config(group)
            fifo = bool(gc and gc.consume_message_orderly)
            eps = self._endpoints(request.endpoints if request.HasField("endpoints") else None)
            masters = {b.broker_name for b in c.route.broker_datas if b.master_addr}
            resp = spb.QueryAssignmentResponse(status=OK_STATUS)
            for qd in sorted(c.route.queue_datas, key=lambda q: q.broker_name):
                if qd.broker_name not in masters or not Perm.readable(qd.perm) or qd.read_queue_nums <= 0:
                    continue
                broker = pb.Broker(name=qd.broker_name, id=0, endpoints=eps)
                ids = range(qd.read_queue_nums) if fifo else (-1,)
                for qid in ids:
                    resp.assignments.add().message_queue.CopyFrom(pb.MessageQueue(
                        topic=request.topic, id=qid, permission=pb.Permission.READ_WRITE, broker=broker,
                    ))
            if not resp.assignments:
                return spb.QueryAssignmentResponse(
                    status=status(C.FORBIDDEN, f"no readable queue of topic {topic} for group {group}")
                )
            return resp
        except Exception as e:
            return spb.QueryAssignmentResponse(status=error_status(e))

    # -- Transactions / recall ---------------------------------------------------------------------
    async def _broker_of_offset_id(self, topic: str, msg_id: str) -> str:
        c = await self._topic(topic)
        brokers = [b for b in c.route.broker_datas if b.master_addr]
        # The backends' transaction ids are "rawId commitLogOffset tranStateTableOffset brokerName".
        parts = msg_id.split(" ")
        if len(parts) == 4 and any(b.broker_name == parts[3] for b in brokers):
            return parts[3]
        try:
            (host, port), _ = decode_offset_msg_id(msg_id)
            for b in brokers:
                addr = b.master_addr or ""
                if addr.rsplit(":", 1)[-1] == str(port) and (addr.startswith(host + ":") or len(brokers) == 1):
                    return b.broker_name
            for b in brokers:
                if (b.master_addr or "").endswith(f":{port}"):
                    return b.broker_name
        except ValueError:
            pass
        if len(brokers) == 1:
            return brokers[0].broker_name
        raise ProxyError(C.INVALID_TRANSACTION_ID, f"cannot find the broker of transaction {msg_id}")

    async def EndTransaction(self, request: spb.EndTransactionRequest,
                             context: Any) -> spb.EndTransactionResponse:
        try:
            _client_id(context)
            topic = request.topic.name
            v.validate_topic(topic)
            if not request.transaction_id.strip():
                raise ProxyError(C.INVALID_TRANSACTION_ID, "transaction id cannot be empty")
            if not request.message_id.strip():
                raise ProxyError(C.ILLEGAL_MESSAGE_ID, "message id cannot be empty")
            if request.resolution not in (pb.TransactionResolution.COMMIT, pb.TransactionResolution.ROLLBACK):
                # UNKNOWN, as RocketMQ's proxy takes it: the half message stays and is checked again later
                # (the Go SDK sends TRANSACTION_RESOLUTION_UNSPECIFIED when its checker answers UNKNOWN)
                return spb.EndTransactionResponse(status=OK_STATUS)
            broker = await self._broker_of_offset_id(topic, request.transaction_id)
            await self.backend.end_transaction(
                broker, topic, topic, request.message_id, request.transaction_id,
                request.resolution == pb.TransactionResolution.COMMIT,
                request.source == pb.TransactionSource.SOURCE_SERVER_CHECK,
            )
            return spb.EndTransactionResponse(status=OK_STATUS)
        except Exception as e:
            st = error_status(e)
            log.info("EndTransaction %s of %s failed: %s %s", request.transaction_id, request.topic.name,
                     st.code, st.message)
            return spb.EndTransactionResponse(status=st)

    async def RecallMessage(self, request: spb.RecallMessageRequest,
                            context: Any) -> spb.RecallMessageResponse:
        try:
            _client_id(context)
            topic = request.topic.name
            v.validate_topic(topic)
            handle = request.recall_handle
            if not handle.strip():
                raise ProxyError(C.BAD_REQUEST, "recall handle cannot be empty")
            broker = _broker_of_recall_handle(handle)
            if broker is None:
                c = await self._topic(topic)
                names = sorted({b.broker_name for b in c.route.broker_datas if b.master_addr})
                if len(names) != 1:
                    raise ProxyError(C.BAD_REQUEST, "recall handle is invalid")
                broker = names[0]
            try:
                msg_id = await self.backend.recall_message(broker, topic, handle)
            except BackendError as e:
                if e.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED:
                    raise ProxyError(C.UNSUPPORTED, "recall is not supported") from None
                raise
            return spb.RecallMessageResponse(status=OK_STATUS, message_id=msg_id)
        except Exception as e:
            return spb.RecallMessageResponse(status=error_status(e))

    # -- Pull / offsets ----------------------------------------------------------------------------
    async def PullMessage(self, request: spb.PullMessageRequest,
                          context: Any) -> AsyncIterator[spb.PullMessageResponse]:
        try:
            _client_id(context)
            group = request.group.name
            v.validate_group(group)
            mq = request.message_queue
            v.validate_topic(mq.topic.name)
            if request.offset < 0:
                raise ProxyError(C.ILLEGAL_OFFSET, "offset cannot be negative")
            fe = request.filter_expression
            exp_type = "SQL92" if fe.type == pb.FilterType.SQL else "TAG"
            expression = fe.expression.strip() or "*"
            cfg = self.config
            poll = duration_to_ms(request.long_polling_timeout) if request.HasField("long_polling_timeout") else 0
            poll = min(max(poll, 0), cfg.grpc_client_consumer_max_long_polling_timeout_millis)
            remaining = context.time_remaining()
            if remaining is not None:
                poll = max(0, min(poll, int(remaining * 1000) - cfg.long_polling_reserve_time_in_millis))
            timeout = (remaining - 0.02) if remaining is not None else poll / 1000.0 + 5.0
            batch = min(max(request.batch_size or 32, 1), 32)
            result = await self.backend.pull_message(
                mq.broker.name, group, mq.topic.name, mq.id, request.offset, batch, exp_type, expression,
                poll, max(timeout, 0.05),
            )
        except Exception as e:
            yield spb.PullMessageResponse(status=error_status(e))
            return
        if result.status is PullStatus.OFFSET_ILLEGAL:
            yield spb.PullMessageResponse(status=status(C.ILLEGAL_OFFSET, "offset is illegal"))
        elif not result.messages:
            yield spb.PullMessageResponse(status=status(C.MESSAGE_NOT_FOUND, "no new message"))
        else:
            yield spb.PullMessageResponse(status=OK_STATUS)
            for m in result.messages:
                yield spb.PullMessageResponse(message=to_pb_message(m))
        yield spb.PullMessageResponse(next_offset=result.next_begin_offset)

    async def UpdateOffset(self, request: spb.UpdateOffsetRequest, context: Any) -> spb.UpdateOffsetResponse:
        try:
            _client_id(context)
            v.validate_group(request.group.name)
            mq = request.message_queue
            v.validate_topic(mq.topic.name)
            if request.offset < 0:
                raise ProxyError(C.ILLEGAL_OFFSET, "offset cannot be negative")
            await self.backend.update_consumer_offset(
                mq.broker.name, request.group.name, mq.topic.name, mq.id, request.offset
            )
            return spb.UpdateOffsetResponse(status=OK_STATUS)
        except Exception as e:
            return spb.UpdateOffsetResponse(status=error_status(e))

    async def GetOffset(self, request: spb.GetOffsetRequest, context: Any) -> spb.GetOffsetResponse:
        try:
            _client_id(context)
            v.validate_group(request.group.name)
            mq = request.message_queue
            v.validate_topic(mq.topic.name)
            try:
                off = await self.backend.query_consumer_offset(mq.broker.name, request.group.name, mq.topic.name, mq.id)
            except BackendError as e:
                if e.code == ResponseCode.QUERY_NOT_FOUND:
                    raise ProxyError(C.OFFSET_NOT_FOUND, e.message) from None
                raise
            if off < 0:
                raise ProxyError(C.OFFSET_NOT_FOUND, "the group has no committed offset for this queue")
            return spb.GetOffsetResponse(status=OK_STATUS, offset=off)
        except Exception as e:
            return spb.GetOffsetResponse(status=error_status(e))

    async def QueryOffset(self, request: spb.QueryOffsetRequest, context: Any) -> spb.QueryOffsetResponse:
        try:
            _client_id(context)
            mq = request.message_queue
            v.validate_topic(mq.topic.name)
            b, t, q = mq.broker.name, mq.topic.name, mq.id
            policy = request.query_offset_policy
            if policy == pb.QueryOffsetPolicy.BEGINNING:
                off = await self.backend.get_min_offset(b, t, q)
            elif policy == pb.QueryOffsetPolicy.END:
                off = await self.backend.get_max_offset(b, t, q)
            else:
                if not request.HasField("timestamp"):
                    raise ProxyError(C.BAD_REQUEST, "timestamp is required for the TIMESTAMP policy")
                off = await self.backend.search_offset(b, t, q, ts_to_ms(request.timestamp))
            return spb.QueryOffsetResponse(status=OK_STATUS, offset=off)
        except Exception as e:
            return spb.QueryOffsetResponse(status=error_status(e))


    async def SyncLiteSubscription(self, request: Any, context: Any) -> Any:
        """Lite topics (newer than RocketMQ 5.3.3) are not supported: a clean UNSUPPORTED."""
        return spb.SyncLiteSubscriptionResponse(status=status(C.UNSUPPORTED, "lite topics are not supported"))


_SCHEMES = {"ipv4": pb.AddressScheme.IPv4, "ipv6": pb.AddressScheme.IPv6, "domain": pb.AddressScheme.DOMAIN_NAME}


def _scheme_of(host: str) -> int:
    return _SCHEMES[address_kind(host)]


def _broker_of_recall_handle(handle: str) -> str | None:
    """RocketMQ's recall handle (RecallMessageHandle.HandleV1, as the broker's timer builds it):
    base64url("v1 topic brokerName timestamp messageId"), padding optional."""
    import base64

    text = handle.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except Exception:
        return None
    parts = raw.split(" ")
    return parts[2] if len(parts) >= 5 and parts[0] == "v1" and parts[2] else None

