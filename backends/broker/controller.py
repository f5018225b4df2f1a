"""BrokerController: assembles one broker (RocketMQ's BrokerController).

It owns the store, the topic / subscription-group / consumer-offset managers, the client managers,
long polling, NameServer registration and the remoting server, and exposes the typed internal API
(send, pull, offsets, admin) that both the remoting processors (thin translators) and the in-process
LocalBackend call: one code path for both.

Typed API (raises backends.api.BackendError with the remoting code): send_messages, put_messages (the raw
write path, with the put hooks), pull_message -> PullOutcome, query/update_consumer_offset,
get_max/min_offset, search_offset, consumer_send_msg_back, create/delete_topic,
update/delete_subscription_group, register_consumer_client, check_transaction_state,
add_local_transaction_checker, add_put_message_hook, recall_handle_for, runtime_info.
Services: pop_service / timer_service / transaction_service are constructed in start() from
backends.broker.{pop,timer,transaction} (each registers its own put hook / remoting processors).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from backends.api import BackendError
from backends.broker.broker_outer_api import BrokerOuterAPI
from backends.broker.client_manager import ClientChannelInfo, ConsumerManager, ProducerManager
from backends.broker.consumer_offset_manager import ConsumerOffsetManager
from backends.broker.metrics import BrokerStats
from backends.broker.metrics import register as register_metrics
from backends.broker.pull_filter import MessageFilterFn
from backends.broker.pull_service import PullOutcome, PullRequestHoldService
from backends.broker.rebalance_lock_manager import RebalanceLockManager
from backends.broker.replicas_manager import ReplicasManager
from backends.broker.slave_synchronize import SlaveSynchronize
from backends.broker.subscription_group_manager import SubscriptionGroupManager
from backends.broker.topic_config_manager import TopicConfigManager, validate_topic_name
from backends.metrics import MetricsManager
from backends.model import (
    RETRY_GROUP_TOPIC_PREFIX,
    SCHEDULE_TOPIC,
    TIMER_TOPIC,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    ConsumeInitMode,
    Message,
    MessageConst,
    MessageExt,
    Perm,
    PutMessageResult,
    PutMessageStatus,
    SubscriptionGroupConfig,
    TopicConfig,
    dlq_topic,
    is_system_topic,
    retry_topic,
)
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import VERSION, RemotingCommand
from backends.remoting.version import version_desc
from backends.store.ha import HAClient, HAService
from backends.store.message_store import MessageStore

if TYPE_CHECKING:
    from backends.broker.broker_config import BrokerConfig
    from backends.remoting.server import RemotingServer

log = logging.getLogger("rocketmq.broker")

# Topics a producer may not send to directly (RocketMQ's TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET).
NOT_ALLOWED_SEND_TOPICS = frozenset(
    {SCHEDULE_TOPIC, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC, TIMER_TOPIC, "TRANS_CHECK_MAX_TIME_TOPIC",
     "rmq_sys_SYNC_BROKER_MEMBER"}
)

CHANNEL_EXPIRED_SECONDS = 120.0

# (group, client id, request) -> the consumer's answer, or None when this relay does not serve it
LocalConsumerRelay = Callable[[str, str, RemotingCommand], Awaitable[RemotingCommand | None]]
CALL_CONSUMER_TIMEOUT_S = 10.0

# A hook may rewrite a message before it is stored (timer/transaction interception) and return it.
PutMessageHook = Callable[[Message], Message]

_PUT_STATUS_CODE = {
    PutMessageStatus.PUT_OK: ResponseCode.SUCCESS,
    PutMessageStatus.FLUSH_DISK_TIMEOUT: ResponseCode.FLUSH_DISK_TIMEOUT,
    PutMessageStatus.FLUSH_SLAVE_TIMEOUT: ResponseCode.FLUSH_SLAVE_TIMEOUT,
    PutMessageStatus.SLAVE_NOT_AVAILABLE: ResponseCode.SLAVE_NOT_AVAILABLE,
    PutMessageStatus.SERVICE_NOT_AVAILABLE: ResponseCode.SERVICE_NOT_AVAILABLE,
    PutMessageStatus.MESSAGE_ILLEGAL: ResponseCode.MESSAGE_ILLEGAL,
    PutMessageStatus.PROPERTIES_SIZE_EXCEEDED: ResponseCode.MESSAGE_ILLEGAL,
    PutMessageStatus.OS_PAGE_CACHE_BUSY: ResponseCode.SYSTEM_BUSY,
}


def put_status_code(result: PutMessageResult) -> tuple[int, str]:
    """Remoting response code and remark for a store result (soft failures keep the results)."""
    code = _PUT_STATUS_CODE.get(result.status, ResponseCode.SYSTEM_ERROR)
    remark = ""
    if code != ResponseCode.SUCCESS:
        remark = result.error or f"put message failed: {result.status.name}"
    return code, remark


class BrokerController:
    config: BrokerConfig
    message_store: MessageStore
    topic_config_manager: TopicConfigManager
    subscription_group_manager: SubscriptionGroupManager
    consumer_offset_manager: ConsumerOffsetManager
    consumer_manager: ConsumerManager
    producer_manager: ProducerManager
    pull_hold_service: PullRequestHoldService
    pop_service: Any  # backends.broker.pop: PopMessageService (pop, ack, change_invisible_time, ...)
    timer_service: Any  # backends.broker.timer: TimerMessageService
    transaction_service: Any  # backends.broker.transaction: TransactionalMessageService
    remoting_server: RemotingServer | None

    def __init__(self, config: BrokerConfig, enable_remoting: bool = True,
                 message_store: MessageStore | None = None) -> None:
        self.config = config
        self.enable_remoting = enable_remoting
        self._store_injected = message_store is not None
        self.message_store = message_store if message_store is not None else MessageStore(config.store_config())
        self.topic_config_manager = TopicConfigManager(config)
        self.subscription_group_manager = SubscriptionGroupManager(config)
        self.consumer_offset_manager = ConsumerOffsetManager(config)
        self.consumer_manager = ConsumerManager()
        self.producer_manager = ProducerManager()
        self.pull_hold_service = PullRequestHoldService(self.message_store)
        self.rebalance_lock_manager = RebalanceLockManager()
        self.broker_outer_api = BrokerOuterAPI(self)
        self.pop_service = None
        self.timer_service = None
        self.transaction_service = None
        self.remoting_server = None
        self.ha_service: HAService | None = None  # a master's: pushes the commitlog to its slaves
        self.ha_client: HAClient | None = None  # a slave's: takes the commitlog of its master
        self.slave_synchronize = SlaveSynchronize(self)
        self.replicas_manager: ReplicasManager | None = None
        if config.enable_controller_mode:
            config.broker_role = "SLAVE"  # no writes until the controller names this broker master
            self.replicas_manager = ReplicasManager(self)
        self.stats = BrokerStats()
        self.metrics = MetricsManager(config, node_type="broker",
                                      cluster=config.broker_cluster_name, node_id=config.broker_name)
        register_metrics(self.metrics, self)
        self.put_message_hooks: list[PutMessageHook] = []
        self._local_checkers: list[Callable[[str, MessageExt, str], Awaitable[None]]] = []
        self._local_consumer_relays: list[LocalConsumerRelay] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._ha_ephemeral = False
        self._store_started = False
        self._shutting_down = False
        self.boot_timestamp = int(time.time() * 1000)
        self.topic_config_manager.on_change = self._on_topic_change

    # ------------------------------------------------------------------ lifecycle
    @property
    def broker_addr(self) -> str:
        """"brokerIP1:listenPort" as registered with the NameServer."""
        port = self.config.listen_port
        if self.remoting_server is not None:
            port = self.remoting_server.port
        return f"{self.config.broker_ip1}:{port}"

    @property
    def broker_name(self) -> str:
        return self.config.broker_name

    async def start(self) -> None:
        self.topic_config_manager.load()
        self.subscription_group_manager.load()
        self.consumer_offset_manager.load()
        listening = False
        if self.enable_remoting:
            from backends.broker.processor import register_all
            from backends.remoting.server import RemotingServer

            self.remoting_server = RemotingServer("0.0.0.0", self.config.listen_port)
            if self.metrics.enabled:
                self.remoting_server.rpc_latency = self.metrics.rpc_latency
            if self.config.acl_enable:
                from backends.acl import open_plain_acl
                from backends.broker.acl import RemotingAccessValidator

                self.remoting_server.access_check = RemotingAccessValidator(open_plain_acl()).check
            register_all(self.remoting_server, self)
            self.remoting_server.add_close_listener(self._on_connection_closed)
            if self.config.listen_port == 0:
                # An ephemeral port (tests): bind first, so that the store host in every record (and
                # so every offset message id) carries the real port.
                await self.remoting_server.start()
                listening = True
                self.config.listen_port = self.remoting_server.port
                if not self._store_injected:
                    self.message_store = MessageStore(self.config.store_config())
                    self.pull_hold_service.store = self.message_store
        await self.message_store.start()
        self._store_started = True
        self.message_store.add_arrival_listener(self.pull_hold_service.notify_message_arriving)
        self._init_services()
        for svc in (self.timer_service, self.transaction_service, self.pop_service):
            start = getattr(svc, "start", None)
            if start is not None:
                # a slave keeps the timer and transaction state but delivers and checks nothing (its
                # master does; the slave's log is a copy of the master's)
                res = start(run_loop=False) if self.config.is_slave and svc is not self.pop_service else start()
                if asyncio.iscoroutine(res):
                    await res
        if self.remoting_server is not None and not listening:
            await self.remoting_server.start()
        self._ha_ephemeral = listening
        if self.replicas_manager is not None:
            await self.replicas_manager.start()
        elif self.remoting_server is not None:
            await self._start_ha()
        self.topic_config_manager.persist()
        self.subscription_group_manager.persist()
        await self.metrics.start()
        self._started = True
        self._tasks.append(asyncio.create_task(self._persist_offsets_loop()))
        self._tasks.append(asyncio.create_task(self._housekeeping_loop()))
        await self.broker_outer_api.start()

    async def _start_ha(self) -> None:
        """A master listens for slaves on haListenPort (default listenPort + 1); a slave connects to the
        master the NameServer names in its register answer."""
        if self.config.is_slave:
            self.start_ha_client()
            self.slave_synchronize.start()
            return
        await self.start_ha_service()

    def start_ha_client(self, broker_id: int = -1) -> HAClient:
        """The slave's HA client (started once; ``broker_id``: controller mode names it to the master)."""
        if self.ha_client is None:
            c = self.config
            self.ha_client = HAClient(self.message_store, heartbeat_interval=c.ha_send_heartbeat_interval / 1000,
                                      housekeeping_interval=c.ha_housekeeping_interval / 1000, broker_id=broker_id)
            self.ha_client.start()
        return self.ha_client

    async def start_ha_service(self) -> None:
        c = self.config
        port = c.ha_listen_port or (0 if self._ha_ephemeral else c.listen_port + 1)
        ha = HAService(self.message_store, "0.0.0.0", port, transfer_batch_size=c.ha_transfer_batch_size,
                       heartbeat_interval=c.ha_send_heartbeat_interval / 1000,
                       housekeeping_interval=c.ha_housekeeping_interval / 1000,
                       max_gap_not_in_sync=c.ha_max_gap_not_in_sync)
        try:
            await ha.start()
        except OSError as e:
            log.error("HAService: cannot listen on port %d (%s); no slave can replicate from this broker",
                      port, e.strerror or e)
            return
        c.ha_listen_port = ha.port
        self.ha_service = ha

    def set_services_running(self, on: bool) -> None:
        """Timer delivery and transaction checks run on a master only (controller mode switches roles)."""
        for svc in (self.timer_service, self.transaction_service):
            switch = getattr(svc, "set_running", None)
            if switch is not None:
                switch(on)

    async def reload_services(self) -> None:
        """After the commitlog was cut back: the timer, transaction and POP services forget what was cut."""
        for svc in (self.timer_service, self.transaction_service, self.pop_service):
            reload = getattr(svc, "reload", None)
            if reload is not None:
                await reload()

    def on_register_result(self, ha_server_addr: str, master_addr: str) -> None:
        """The NameServer's answer to a slave's registration names its master (and the master's HA port)."""
        if self.replicas_manager is not None:
            return  # the controller names the master
        if self.ha_client is not None and ha_server_addr:
            self.ha_client.update_master(ha_server_addr)
        if self.config.is_slave and master_addr:
            self.slave_synchronize.set_master_addr(master_addr)

    def _init_services(self) -> None:
        """Wire the POP, timer and transaction services when their packages are present."""
        try:
            from backends.broker.pop.service import PopMessageService  # type: ignore[import-not-found]

            self.pop_service = PopMessageService(self)
        except ImportError:
            log.info("POP service not available (backends.broker.pop missing)")  # TODO(pop): wire when landed
        try:
            from backends.broker.timer.service import TimerMessageService  # type: ignore[import-not-found]

            self.timer_service = TimerMessageService(self)
        except ImportError:
            log.info("timer service not available")  # TODO(timer): wire when landed
        try:
            from backends.broker.transaction.service import (  # type: ignore[import-not-found]
                TransactionalMessageService,
            )

            self.transaction_service = TransactionalMessageService(self)
        except ImportError:
            log.info("transaction service not available")  # TODO(transaction): wire when landed
        if self.remoting_server is not None:
            for mod in ("backends.broker.pop.processor", "backends.broker.transaction.processor"):
                try:
                    module = __import__(mod, fromlist=["register"])
                except ImportError:
                    continue
                module.register(self.remoting_server, self)

    async def shutdown(self) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        try:
            await self.broker_outer_api.shutdown()
        except Exception as e:  # noqa: BLE001
            log.warning("unregister from name servers failed: %s", e)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self.pull_hold_service.wake_all()
        if self.replicas_manager is not None:
            await self.replicas_manager.shutdown()
        await self.slave_synchronize.shutdown()
        for ha in (self.ha_client, self.ha_service):
            if ha is not None:
                await ha.shutdown()
        for svc in (self.pop_service, self.transaction_service, self.timer_service):
            stop = getattr(svc, "shutdown", None)
            if stop is not None:
                try:
                    res = stop()
                    if asyncio.iscoroutine(res):
                        await res
                except Exception as e:  # noqa: BLE001
                    log.warning("service shutdown failed: %s", e)
        if self.remoting_server is not None:
            await self.remoting_server.shutdown()
        await self.metrics.shutdown()
        if not self._store_started:
            return
        # the last tables, written off the loop after any write still in flight
        for mgr in (self.consumer_offset_manager, self.topic_config_manager, self.subscription_group_manager):
            try:
                await mgr.flush(timeout=30.0)
            except TimeoutError:
                log.error("persist %s timed out at shutdown", mgr.path)
        await self.message_store.shutdown()

    async def _persist_offsets_loop(self) -> None:
        interval = max(0.1, self.config.flush_consumer_offset_interval / 1000.0)
        while True:
            await asyncio.sleep(interval)
            try:
                self.consumer_offset_manager.persist_if_dirty()
            except Exception:
                log.exception("persist consumer offsets failed")

    async def _housekeeping_loop(self) -> None:
        """RocketMQ's ClientHousekeepingService: forget clients without a heartbeat for 120 s."""
        while True:
            await asyncio.sleep(10)
            try:
                for group in self.consumer_manager.scan_not_active(CHANNEL_EXPIRED_SECONDS):
                    self.notify_consumer_ids_changed(group)
                self.producer_manager.scan_not_active(CHANNEL_EXPIRED_SECONDS)
            except Exception:
                log.exception("client housekeeping failed")

    def _on_topic_change(self, tc: TopicConfig | None) -> None:
        if self._started:
            self.broker_outer_api.register_soon()

    def _on_connection_closed(self, conn: Any) -> None:
        for group in self.consumer_manager.connection_closed(conn):
            self.notify_consumer_ids_changed(group)
        self.producer_manager.connection_closed(conn)

    # ------------------------------------------------------------------ write path
    def add_put_message_hook(self, hook: PutMessageHook) -> None:
        self.put_message_hooks.append(hook)

    async def put_messages(self, messages: list[Message]) -> PutMessageResult:
        """The one write path: transaction half / timer interception, then message_store.put_messages."""
        if self.config.is_slave:
            return PutMessageResult(PutMessageStatus.SERVICE_NOT_AVAILABLE,
                                    error="the broker is a SLAVE and does not accept writes")
        # The transaction service (prepare: half messages) and the timer service (intercept: delayed
        # messages) join this path through add_put_message_hook when they are constructed.
        if self.put_message_hooks:
            out = []
            try:
                for m in messages:
                    for hook in self.put_message_hooks:
                        m = hook(m)
                    out.append(m)
            except Exception as e:  # noqa: BLE001 -- TimerMessageError etc. carry a remoting code
                code = getattr(e, "code", None)
                if code is None:
                    raise
                status = PutMessageStatus.MESSAGE_ILLEGAL if code == ResponseCode.MESSAGE_ILLEGAL \
                    else PutMessageStatus.UNKNOWN_ERROR
                return PutMessageResult(status, error=str(e))
            messages = out
        result = await self.message_store.put_messages(messages)
        if self.config.broker_role == "SYNC_MASTER" and result.results and (
                result.status is PutMessageStatus.PUT_OK or result.status is PutMessageStatus.FLUSH_DISK_TIMEOUT):
            result = await self._wait_for_slave(result)
        return result

    async def _wait_for_slave(self, result: PutMessageResult) -> PutMessageResult:
        """SYNC_MASTER: answer once a slave holds the messages too (RocketMQ's GroupTransferService)."""
        last = result.results[-1]
        end = last.commitlog_offset + last.store_size
        ha = self.ha_service
        if ha is None or not ha.is_slave_ok(end):
            return PutMessageResult(PutMessageStatus.SLAVE_NOT_AVAILABLE, result.results,
                                    error="no slave in sync with this SYNC_MASTER: the message is stored on the master only")
        if not await ha.wait_for_slave(end, self.config.sync_flush_timeout / 1000):
            return PutMessageResult(PutMessageStatus.FLUSH_SLAVE_TIMEOUT, result.results,
                                    error=f"no slave acknowledged the message within {self.config.sync_flush_timeout} ms")
        return result

    def recall_handle_for(self, msg: Message) -> str:
        """The recall handle of a message the timer service delayed ("" otherwise)."""
        make = getattr(self.timer_service, "recall_handle_for", None)
        if make is None:
            return ""
        try:
            return str(make(msg) or "")
        except Exception:  # noqa: BLE001
            return ""

    def check_topic_for_send(self, topic: str, default_queue_nums: int = 0) -> TopicConfig:
        """RocketMQ's msgCheck: legal name, allowed, exists (or auto-created), writable."""
        if not Perm.writeable(self.config.broker_permission) or self.config.is_slave:
            raise BackendError(ResponseCode.NO_PERMISSION if not self.config.is_slave
                               else ResponseCode.SERVICE_NOT_AVAILABLE,
                               f"the broker[{self.config.broker_name}] sending message is forbidden")
        why = validate_topic_name(topic)
        if why:
            raise BackendError(ResponseCode.MESSAGE_ILLEGAL, why)
        if topic in NOT_ALLOWED_SEND_TOPICS:
            raise BackendError(ResponseCode.NO_PERMISSION, f"Sending message to topic[{topic}] is forbidden.")
        tc = self.topic_config_manager.select_topic_config(topic)
        if tc is None:
            if topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
                tc = self.topic_config_manager.create_topic_if_absent(topic, 1, 1, Perm.READ_WRITE)
            else:
                tc = self.topic_config_manager.create_topic_in_send_message_method(
                    topic, default_queue_nums or self.config.default_topic_queue_nums)
            if tc is None:
                raise BackendError(
                    ResponseCode.TOPIC_NOT_EXIST,
                    f"topic[{topic}] not exist, apply first please!",
                )
        if not Perm.writeable(tc.perm):
            raise BackendError(ResponseCode.NO_PERMISSION, f"the topic[{topic}] sending message is forbidden")
        return tc

    async def send_messages(self, messages: list[Message], default_queue_nums: int = 0) -> PutMessageResult:
        """Validate and store messages of one topic and queue (the SEND_MESSAGE* processors and
        LocalBackend.send_message). Raises BackendError for a refused request; a store failure comes back
        in the result (map with :func:`put_status_code`)."""
        if not messages:
            raise BackendError(ResponseCode.MESSAGE_ILLEGAL, "no message to send")
        topic = messages[0].topic
        tc = self.check_topic_for_send(topic, default_queue_nums)
        queue_id = messages[0].queue_id
        if queue_id < 0:
            queue_id = random.randrange(tc.write_queue_nums) if tc.write_queue_nums > 0 else 0
        if queue_id >= max(tc.write_queue_nums, tc.read_queue_nums):
            raise BackendError(
                ResponseCode.SYSTEM_ERROR,
                f"request queueId[{queue_id}] is illegal, {tc.topic_name} Producer: {tc.write_queue_nums}",
            )
        max_size = self.config.max_message_size
        for m in messages:
            if m.topic != topic:
                raise BackendError(ResponseCode.MESSAGE_ILLEGAL, "messages of a batch must share one topic")
            if len(m.body) > max_size:
                raise BackendError(ResponseCode.MESSAGE_ILLEGAL,
                                   f"the message body size over max value, MAX: {max_size}")
            m.queue_id = queue_id
            if (self.config.reject_transaction_message
                    and m.properties.get(MessageConst.TRANSACTION_PREPARED) == "true"):
                raise BackendError(ResponseCode.NO_PERMISSION,
                                   f"the broker[{self.config.broker_name}] sending transaction message is forbidden")
        if topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
            self._handle_retry_and_dlq(messages)
        counted = self.stats.count_in(messages)  # before the timer/transaction hooks move them
        result = await self.put_messages(messages)
        if result.results:  # stored (also when the flush or the slave wait timed out)
            self.stats.commit_in(counted)
        return result

    def _handle_retry_and_dlq(self, messages: list[Message]) -> None:
        """A message sent to %RETRY%group past its max reconsume times goes to %DLQ%group."""
        for m in messages:
            group = m.topic[len(RETRY_GROUP_TOPIC_PREFIX):]
            max_times = int(m.properties.get(MessageConst.MAX_RECONSUME_TIMES, "0") or 0)
            if not max_times:
                sg = self.subscription_group_manager.get(group)
                max_times = sg.retry_max_times if sg else self.config.max_reconsume_times
            if m.reconsume_times > max_times:
                self.stats.add_dlq(m.properties.get(MessageConst.RETRY_TOPIC) or m.topic, group)
                dlq = dlq_topic(group)
                self.topic_config_manager.create_topic_if_absent(dlq, 1, 1, Perm.READ_WRITE)
                m.topic = dlq
                m.queue_id = 0

    # ------------------------------------------------------------------ pull
    async def pull_message(
        self,
        group: str,
        topic: str,
        queue_id: int,
        offset: int,
        max_nums: int,
        message_filter: MessageFilterFn | None = None,
        suspend_ms: int = 0,
        commit_offset: int | None = None,
        client_host: str = "",
    ) -> PullOutcome:
        """PULL_MESSAGE: permission checks, optional offset commit, read with long polling."""
        if not Perm.readable(self.config.broker_permission):
            raise BackendError(ResponseCode.NO_PERMISSION,
                               f"the broker[{self.config.broker_name}] pulling message is forbidden")
        sg = self.subscription_group_manager.find_subscription_group_config(group)
        if sg is None:
            raise BackendError(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                               f"subscription group [{group}] does not exist")
        if not sg.consume_enable:
            raise BackendError(ResponseCode.NO_PERMISSION, f"subscription group no permission, {group}")
        tc = self.topic_config_manager.select_topic_config(topic)
        if tc is None:
            raise BackendError(ResponseCode.TOPIC_NOT_EXIST,
                               f"topic[{topic}] not exist, apply first please!")
        if not Perm.readable(tc.perm):
            raise BackendError(ResponseCode.NO_PERMISSION, f"the topic[{topic}] pulling message is forbidden")
        if queue_id < 0 or queue_id >= tc.read_queue_nums:
            raise BackendError(
                ResponseCode.SYSTEM_ERROR,
                f"queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:"
                f"[{tc.read_queue_nums}] consumer:[{client_host}]",
            )
        if commit_offset is not None and commit_offset >= 0:
            self.consumer_offset_manager.commit_offset(client_host, group, topic, queue_id, commit_offset)
        max_nums = max(1, min(max_nums, self.config.max_transfer_count_on_message_in_memory or 32))
        if not self.config.long_polling_enable and suspend_ms > 0:
            suspend_ms = min(suspend_ms, self.config.short_polling_time_mills)
        out = await self.pull_hold_service.pull(topic, queue_id, offset, max_nums, message_filter, suspend_ms)
        if out.records:
            self.stats.add_out(topic, group, len(out.records), sum(len(r) for r in out.records))
        return out

    # ------------------------------------------------------------------ offsets
    def query_consumer_offset(self, group: str, topic: str, queue_id: int, zero_if_not_found: bool = False) -> int:
        """Committed offset, -1 when the group has none for this queue.

        With ``zero_if_not_found`` (QUERY_CONSUMER_OFFSET without ``setZeroIfNotFound=false``, as 4.x
        clients send it) a group that never consumed this queue starts from its first message when that
        is still the queue's offset 0 and in memory (RocketMQ's rule: a new group on a young topic reads it
        all); a group created with ``consumeFromWhere=EARLIEST|LATEST|TIMESTAMP`` starts there."""
        off = self.consumer_offset_manager.query_offset(group, topic, queue_id)
        if off >= 0 or not zero_if_not_found:
            return off
        store = self.message_store
        cfg = self.subscription_group_manager.get(group)
        mode, ts = cfg.consume_from() if cfg is not None else (None, 0)
        if mode is ConsumeInitMode.EARLIEST:
            return store.get_min_offset_in_queue(topic, queue_id)
        if mode is ConsumeInitMode.LATEST:
            return -1  # the client then starts at the queue's end
        if mode is ConsumeInitMode.TIMESTAMP:
            return store.get_offset_in_queue_by_time(topic, queue_id, ts)
        if store.get_min_offset_in_queue(topic, queue_id) <= 0 and store.check_in_mem_by_consume_offset(
                topic, queue_id, 0):
            return 0
        return -1

    def update_consumer_offset(self, group: str, topic: str, queue_id: int, offset: int,
                               client_host: str = "") -> None:
        tc = self.topic_config_manager.select_topic_config(topic)
        if tc is None:
            raise BackendError(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        if queue_id < 0 or queue_id >= max(tc.read_queue_nums, tc.write_queue_nums):
            raise BackendError(ResponseCode.SYSTEM_ERROR, f"queueId[{queue_id}] is illegal for topic {topic}")
        self.consumer_offset_manager.commit_offset(client_host, group, topic, queue_id, offset)

    def get_max_offset(self, topic: str, queue_id: int) -> int:
        return self.message_store.get_max_offset_in_queue(topic, queue_id)

    def get_min_offset(self, topic: str, queue_id: int) -> int:
        return self.message_store.get_min_offset_in_queue(topic, queue_id)

    def search_offset(self, topic: str, queue_id: int, timestamp_ms: int) -> int:
        return self.message_store.get_offset_in_queue_by_time(topic, queue_id, timestamp_ms)

    # ------------------------------------------------------------------ retry / DLQ
    async def consumer_send_msg_back(
        self,
        group: str,
        commitlog_offset: int,
        delay_level: int,
        origin_msg_id: str = "",
        origin_topic: str = "",
        max_reconsume_times: int | None = None,
    ) -> PutMessageResult:
        """CONSUMER_SEND_MSG_BACK: the consumed message goes to %RETRY%group with a delay (level
        3 + reconsumeTimes unless given) or to %DLQ%group past its max reconsume times."""
        sg = self.subscription_group_manager.find_subscription_group_config(group)
        if sg is None:
            raise BackendError(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                               f"subscription group not exist, {group}")
        msg = self.message_store.look_message_by_offset(commitlog_offset)
        if msg is None:
            raise BackendError(ResponseCode.SYSTEM_ERROR, f"look message by offset failed, {commitlog_offset}")
        props = dict(msg.properties)
        retry_of = props.get(MessageConst.RETRY_TOPIC)
        if not retry_of:
            props[MessageConst.RETRY_TOPIC] = msg.topic
        max_times = max_reconsume_times if max_reconsume_times is not None and max_reconsume_times >= 0 \
            else sg.retry_max_times
        reconsume = msg.reconsume_times
        if delay_level < 0 or reconsume >= max_times:
            topic = dlq_topic(group)
            tc = self.topic_config_manager.create_topic_if_absent(topic, 1, 1, Perm.READ_WRITE)
            props.pop(MessageConst.DELAY_TIME_LEVEL, None)
            queue_id = 0
        else:
            topic = retry_topic(group)
            tc = self.topic_config_manager.create_topic_if_absent(topic, sg.retry_queue_nums, sg.retry_queue_nums,
                                                                  Perm.READ_WRITE)
            level = delay_level if delay_level > 0 else 3 + reconsume
            props[MessageConst.DELAY_TIME_LEVEL] = str(level)
            queue_id = random.randrange(max(1, tc.write_queue_nums))
        if not Perm.writeable(tc.perm):
            raise BackendError(ResponseCode.NO_PERMISSION, f"the topic[{topic}] sending message is forbidden")
        props.setdefault(MessageConst.ORIGIN_MESSAGE_ID, origin_msg_id or msg.msg_id)
        new = Message(
            topic=topic,
            body=msg.body,
            properties=props,
            flag=msg.flag,
            queue_id=queue_id,
            sys_flag=msg.sys_flag,
            born_timestamp=msg.born_timestamp,
            born_host=msg.born_host,
            reconsume_times=reconsume + 1,
        )
        return await self.put_messages([new])

    # ------------------------------------------------------------------ admin
    def create_topic(self, tc: TopicConfig) -> None:
        why = validate_topic_name(tc.topic_name)
        if why:
            raise BackendError(ResponseCode.INVALID_PARAMETER, why)
        if is_system_topic(tc.topic_name) and tc.topic_name in self.topic_config_manager.topic_config_table:
            raise BackendError(ResponseCode.INVALID_PARAMETER,
                               f"The topic[{tc.topic_name}] is conflict with system topic.")
        try:
            self.topic_config_manager.update_topic_config(tc)
        except ValueError as e:
            raise BackendError(ResponseCode.INVALID_PARAMETER, str(e)) from None

    def delete_topic(self, topic: str) -> None:
        if is_system_topic(topic):
            raise BackendError(ResponseCode.INVALID_PARAMETER, f"The topic[{topic}] is conflict with system topic.")
        self.topic_config_manager.delete_topic(topic)
        self.consumer_offset_manager.remove_topic(topic)
        try:
            self.message_store.delete_topics({topic})
        except NotImplementedError:
            pass

    def update_subscription_group(self, cfg: SubscriptionGroupConfig) -> None:
        self.subscription_group_manager.update_subscription_group_config(cfg)

    def delete_subscription_group(self, group: str, clean_offset: bool = False) -> None:
        self.subscription_group_manager.delete_subscription_group_config(group)
        if clean_offset:
            self.consumer_offset_manager.remove_group(group)

    # ------------------------------------------------------------------ clients
    def register_consumer_client(self, group: str, info: ClientChannelInfo, consume_type: str,
                                 message_model: str, consume_from_where: str, subscriptions: list[Any]) -> None:
        sg = self.subscription_group_manager.find_subscription_group_config(group)
        if sg is not None:
            self.topic_config_manager.create_topic_if_absent(
                retry_topic(group), sg.retry_queue_nums, sg.retry_queue_nums, Perm.READ_WRITE)
        changed = self.consumer_manager.register_consumer(
            group, info, consume_type, message_model, consume_from_where, subscriptions)
        if changed and (sg is None or sg.notify_consumer_ids_changed_enable):
            self.notify_consumer_ids_changed(group)

    def notify_consumer_ids_changed(self, group: str) -> None:
        g = self.consumer_manager.get(group)
        if g is None:
            return
        for ch in list(g.channels.values()):
            conn = ch.conn
            if conn is None or getattr(conn, "closed", False):
                continue
            req = RemotingCommand.request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, {"consumerGroup": group})
            asyncio.ensure_future(_quiet(conn.invoke_oneway(req)))

    # ------------------------------------------------------------------ transactions
    async def check_transaction_state(self, producer_group: str, msg: MessageExt, transaction_id: str) -> bool:
        """Ask one live producer of ``producer_group`` (remoting CHECK_TRANSACTION_STATE or an in-process
        listener registered by a Local-mode proxy) about a half message; False when none is online."""
        channels = self.producer_manager.available_channels(producer_group)
        if channels:
            from backends.store.record import encode_record

            ch = random.choice(channels)
            header = {
                "tranStateTableOffset": str(msg.queue_offset),
                "commitLogOffset": str(msg.commitlog_offset),
                "msgId": msg.uniq_key or msg.offset_msg_id,
                "transactionId": transaction_id,
                "offsetMsgId": msg.offset_msg_id,
                "bname": self.config.broker_name,
                "brokerName": self.config.broker_name,
            }
            body = encode_record(msg, msg.queue_offset, msg.commitlog_offset, msg.store_timestamp,
                                 msg.store_host)
            req = RemotingCommand.request(RequestCode.CHECK_TRANSACTION_STATE, header, body)
            try:
                await ch.conn.invoke_oneway(req)
                return True
            except Exception as e:  # noqa: BLE001
                log.warning("check transaction state on %s failed: %s", ch.client_addr, e)
        if self._local_checkers:
            checker = random.choice(self._local_checkers)
            try:
                await checker(producer_group, msg, transaction_id)
                return True
            except Exception as e:  # noqa: BLE001
                log.warning("local transaction checker failed: %s", e)
        return False

    async def call_consumer(self, request: RemotingCommand, group: str, client_id: str) -> RemotingCommand:
        """Pass an admin request for one consumer (GET_CONSUMER_RUNNING_INFO, CONSUME_MESSAGE_DIRECTLY) to
        it (RocketMQ's AdminBrokerProcessor.callConsumer): over its connection, or to the Local-mode
        proxy that serves it; its answer is the admin's answer."""
        g = self.consumer_manager.get(group)
        ch = next((c for c in g.channels.values() if c.client_id == client_id), None) if g else None
        if ch is None:
            return request.response(ResponseCode.SYSTEM_ERROR, f"The Consumer <{group}> <{client_id}> not online")
        ask = RemotingCommand.request(request.code, dict(request.ext_fields), request.body)
        try:
            if ch.conn is not None:
                answer = await ch.conn.invoke(ask, CALL_CONSUMER_TIMEOUT_S)
            else:
                answer = None
                for relay in self._local_consumer_relays:
                    answer = await asyncio.wait_for(relay(group, client_id, ask), CALL_CONSUMER_TIMEOUT_S)
                    if answer is not None:
                        break
                if answer is None:
                    return request.response(ResponseCode.SYSTEM_ERROR,
                                            f"The Consumer <{group}> <{client_id}> cannot be reached")
        except TimeoutError as e:
            return request.response(ResponseCode.CONSUME_MSG_TIMEOUT,
                                    f"consumer <{group}> <{client_id}> Timeout: {e or 'no answer'}")
        except Exception as e:  # noqa: BLE001 - the connection broke
            return request.response(ResponseCode.SYSTEM_ERROR, f"consumer <{group}> <{client_id}> failed: {e}")
        return request.response(answer.code, answer.remark, answer.ext_fields, answer.body)

    def add_local_consumer_relay(self, relay: LocalConsumerRelay) -> None:
        """A Local-mode proxy answers call_consumer for the gRPC consumers it serves."""
        self._local_consumer_relays.append(relay)

    def add_local_transaction_checker(
        self, checker: Callable[[str, MessageExt, str], Awaitable[None]]
    ) -> None:
        """A Local-mode proxy registers itself as a producer-side checker."""
        self._local_checkers.append(checker)

    # ------------------------------------------------------------------ info
    def runtime_info(self) -> dict[str, str]:
        store = self.message_store
        info = {
            "brokerVersion": str(VERSION),
            "brokerVersionDesc": version_desc(VERSION),
            "msgPutTotalTodayNow": "0",
            "msgGetTotalTodayNow": "0",
            "bootTimestamp": str(self.boot_timestamp),
            "brokerActive": "true",
            "brokerRole": self.config.broker_role,
            "earliestMessageTimeStamp": "0",
            "commitLogMaxOffset": "0",
            "commitLogMinOffset": "0",
            "runtime": f"[ {int(time.time() - self.boot_timestamp / 1000)} s ]",
        }
        try:
            info["commitLogMaxOffset"] = str(store.get_max_phy_offset())
            info["commitLogMinOffset"] = str(store.get_min_phy_offset())
        except NotImplementedError:
            pass
        return info


async def _quiet(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:  # noqa: BLE001
        pass
