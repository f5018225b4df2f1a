"""PopMessageService: POP consumption (RocketMQ's PopMessageProcessor, AckMessageProcessor,
ChangeInvisibleTimeProcessor and PopReviveService in one place).

State, per (group, topic, queue):

* ``next_offset``: the next queue offset never handed out to the group;
* ``inflight``: offset -> :class:`InFlight` (pop time, invisible time, delivery attempt) for messages
  handed out and neither acked nor expired; an expiry heap orders them by visibility deadline;
* ``pending``: expired in-flight messages waiting to be handed out again (served before new ones);
* the committed consumer offset is the lowest offset still in flight or pending (else ``next_offset``),
  pushed to the consumer offset manager whenever it moves, so a restart never skips an unacked message.

Redelivery is in place: an expired message is read again from its own queue and offset with delivery
attempt + 1 (``reconsume_times``); when the next attempt would exceed ``retryMaxTimes + 1`` it is put
to ``%DLQ%<group>`` instead. FIFO (``order``) pops skip a queue while one of its messages is in flight.

Durability: every change is a small JSON record appended to the commitlog under the revive topic
``rmq_sys_REVIVE_LOG_<cluster>`` queue 0 (:mod:`backends.broker.pop.state_log`): one checkpoint record
per pop (per queue touched: the offsets handed out with pop time, invisible time and attempt), one ack
record per ack call, a checkpoint per change of invisible time. A pop answers only after its checkpoint
is durable, an ack only after its record is. Every so often (and at shutdown) the whole state is
written as a snapshot and the snapshot's position is committed as the offset of the system group
``CID_RMQ_SYS_POP_STATE`` on the revive queue; :meth:`start` replays the log from there.

Handles (extra info, see :mod:`backends.broker.pop.extra_info`) are self-contained; one names one
delivery of one message: (queueId, queueOffset, popTime, invisibleTime). Answers to ack, change of
invisible time and forward to DLQ:

* malformed extra info -> BackendError(INVALID_PARAMETER) (the proxy answers INVALID_RECEIPT_HANDLE);
* unknown topic -> TOPIC_NOT_EXIST; queueId beyond the topic's read queues -> MESSAGE_ILLEGAL;
* offset outside the queue, or never handed out to the group -> NO_MESSAGE;
* ack with the handle of the current delivery or of an older one (the message expired and was handed
  out again, or its invisible time was changed since) -> the message is acked: the consumer did
  process it (RocketMQ ignores such an ack and delivers the message once more: a duplicate);
* change of invisible time or forward to DLQ with an older handle -> NO_MESSAGE (stale: another
  delivery, maybe to another consumer, is current);
* expired but not handed out again yet -> accepted;
* already acked (or moved to the DLQ) -> ack succeeds again (idempotent); change of invisible time and
  forward to DLQ answer NO_MESSAGE.

An offset committed by someone else (mqadmin resetOffsetByTime) restarts the queue at that offset.
Groups without an offset start at the latest offset (RocketMQ 5's initMode MAX) unless the subscription
group's attributes say ``consumeFromWhere`` = EARLIEST or TIMESTAMP (with ``consumeTimestamp`` in ms),
or a remoting POP asks initMode MIN.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from backends.api import BackendError, PopRequest, PopResult, PopStatus
from backends.broker.pop import extra_info as xi
from backends.broker.pop.filtering import MessageFilter, build_message_filter
from backends.broker.pop.state_log import PopStateLog
from backends.model import (
    DLQ_GROUP_TOPIC_PREFIX,
    REVIVE_TOPIC_PREFIX,
    ConsumeInitMode,
    GetMessageStatus,
    Message,
    MessageConst,
    MessageExt,
    Perm,
    SubscriptionGroupConfig,
    SysFlag,
    TopicConfig,
    dlq_topic,
)
from backends.remoting.codes import ResponseCode
from backends.store.record import RecordError, decode_record

log = logging.getLogger("rocketmq.broker.pop")

Clock = Callable[[], int]

MAX_MSG_NUMS = 32
REVIVE_QUEUE_ID = 0
POLLING_MAX_WAITERS = 100_000
SNAPSHOT_EVERY_RECORDS = 20_000
SNAPSHOT_EVERY_SECONDS = 600.0
SNAPSHOT_CHUNK_BYTES = 512 * 1024
DLQ_IN_PROGRESS_MS = 60_000
ATTEMPT_CACHE_SIZE = 4096
# Properties that must not follow a message into the DLQ (they would delay or re-wrap it).
_DLQ_DROP_PROPS = (
    MessageConst.POP_CK, MessageConst.DELAY_TIME_LEVEL, MessageConst.TIMER_DELIVER_MS,
    MessageConst.TIMER_DELAY_SEC, MessageConst.TIMER_DELAY_MS, MessageConst.TRANSACTION_PREPARED,
    MessageConst.TIMER_OUT_MS, MessageConst.TIMER_ENQUEUE_MS, MessageConst.TIMER_DEQUEUE_MS,
    MessageConst.TIMER_ROLL_TIMES,
)


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class InFlight:
    pop_time: int
    invisible_time: int
    attempt: int  # delivery attempt of this delivery, 1 for the first
    ck_offset: int  # ckQueueOffset of the handle (first offset of the pop batch on this queue)

    @property
    def deadline(self) -> int:
        return self.pop_time + self.invisible_time


QueueKey = tuple[str, str, int]  # (group, topic, queue_id)
WaiterKey = tuple[str, str, str]  # a long-polling subscription: (group, filter type, filter expression)


@dataclass(slots=True)
class QueueState:
    group: str
    topic: str
    queue_id: int
    next_offset: int
    inflight: dict[int, InFlight] = field(default_factory=dict)
    pending: dict[int, InFlight] = field(default_factory=dict)  # expired, waiting to be handed out again
    expiry: list[tuple[int, int, int]] = field(default_factory=list)  # (deadline, offset, pop_time), lazy
    outstanding: list[int] = field(default_factory=list)  # min-heap of offsets in inflight|pending, lazy
    committed: int = -1  # last committed consumer offset pushed to the offset manager

    @property
    def key(self) -> QueueKey:
        return (self.group, self.topic, self.queue_id)

    def entry(self, offset: int) -> InFlight | None:
        e = self.inflight.get(offset)
        return e if e is not None else self.pending.get(offset)

    def lowest_unacked(self) -> int:
        h = self.outstanding
        while h and h[0] not in self.inflight and h[0] not in self.pending:
            heapq.heappop(h)
        return h[0] if h else self.next_offset

    def put_inflight(self, offset: int, e: InFlight, new: bool) -> None:
        self.pending.pop(offset, None)
        self.inflight[offset] = e
        heapq.heappush(self.expiry, (e.deadline, offset, e.pop_time))
        if new:
            heapq.heappush(self.outstanding, offset)

    def remove(self, offset: int) -> InFlight | None:
        e = self.inflight.pop(offset, None)
        if e is None:
            e = self.pending.pop(offset, None)
        self._compact()
        return e

    def _compact(self) -> None:
        """Drop the lazily deleted heap entries once they outnumber the live ones (memory stays
        proportional to what is in flight even when acked messages had long invisible times)."""
        live = len(self.inflight) + len(self.pending)
        if len(self.expiry) > 2 * len(self.inflight) + 1024:
            self.expiry = [(e.deadline, off, e.pop_time) for off, e in self.inflight.items()]
            heapq.heapify(self.expiry)
        if len(self.outstanding) > 2 * live + 1024:
            self.outstanding = list(self.inflight.keys()) + list(self.pending.keys())
            heapq.heapify(self.outstanding)

    def expire(self, now: int) -> int:
        """Move in-flight messages whose deadline passed to ``pending``; returns how many moved."""
        moved = 0
        h = self.expiry
        while h and h[0][0] <= now:
            _, off, pt = heapq.heappop(h)
            e = self.inflight.get(off)
            if e is not None and e.pop_time == pt and e.deadline <= now:
                del self.inflight[off]
                self.pending[off] = e
                moved += 1
        if not self.inflight:
            h.clear()
        return moved

    def next_deadline(self) -> int | None:
        h = self.expiry
        while h:
            d, off, pt = h[0]
            e = self.inflight.get(off)
            if e is not None and e.pop_time == pt:
                return d
            heapq.heappop(h)
        return None


class PopMessageService:
    """POP for one broker. ``broker`` is a BrokerController (duck-typed: config, message_store,
    topic_config_manager, subscription_group_manager, consumer_offset_manager, put_messages)."""

    def __init__(self, broker: Any, clock: Clock | None = None) -> None:
        self.broker = broker
        self.clock: Clock = clock or wall_clock_ms
        cfg = getattr(broker, "config", None)
        self.broker_name: str = str(getattr(cfg, "broker_name", "broker-a"))
        cluster = str(getattr(cfg, "broker_cluster_name", "DefaultCluster"))
        self.revive_topic = REVIVE_TOPIC_PREFIX + cluster
        self.states: dict[QueueKey, QueueState] = {}
        self.state_log = PopStateLog(broker, self.revive_topic, REVIVE_QUEUE_ID)
        # long-polling pops: topic -> subscription (group, filter) -> futures in arrival order
        self._waiters: dict[str, dict[WaiterKey, dict[asyncio.Future[None], None]]] = {}
        self._waiter_count = 0
        self._rr: dict[tuple[str, str], int] = {}
        self._filters: OrderedDict[tuple[str, str], MessageFilter | None] = OrderedDict()
        self._attempts: OrderedDict[tuple[str, str, str], list[tuple[QueueKey, int, int]]] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._revive_task: asyncio.Task[None] | None = None
        self._revive_wakeup: asyncio.Event | None = None
        self._started = False
        self._listener_added = False
        self._background: set[asyncio.Future[None]] = set()
        self._last_cleanup = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Replay the POP state log and start the revive (expiry/DLQ) task."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._ensure_revive_topic()
        records = await self.state_log.replay(self._apply_record)
        for qs in self.states.values():
            self._commit_offset(qs)
        if records:
            log.info("POP state rebuilt from %d log records: %d queues, %d in flight", records,
                     len(self.states), sum(len(q.inflight) for q in self.states.values()))
        # Always start from a fresh snapshot: replay then never depends on a position that a crash may
        # have left pointing past the end of the recovered log.
        await self.snapshot()
        store = self.broker.message_store
        if not self._listener_added:
            store.add_arrival_listener(self._on_arrival)
            self._listener_added = True
        self._revive_wakeup = asyncio.Event()
        self._started = True
        self._revive_task = asyncio.create_task(self._revive_loop(), name="PopReviveService")

    async def shutdown(self) -> None:
        self._started = False
        if self._revive_wakeup is not None:
            self._revive_wakeup.set()
        if self._revive_task is not None:
            self._revive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._revive_task
            self._revive_task = None
        for subs in self._waiters.values():
            for futs in subs.values():
                for f in futs:
                    if not f.done():
                        f.set_result(None)
        with contextlib.suppress(Exception):
            await self.snapshot()
        await self.state_log.close()

    async def reload(self) -> None:
        """The commitlog was cut back (a deposed master rejoining as a slave): nothing past the new end of a
        queue stays handed out or counted as handed out (the new master's messages will take those offsets)."""
        store = self.broker.message_store
        for qs in self.states.values():
            end = max(store.get_max_offset_in_queue(qs.topic, qs.queue_id), 0)
            qs.next_offset = min(qs.next_offset, end)
            for off in [o for o in (*qs.inflight, *qs.pending) if o >= end]:
                qs.remove(off)
        await self.snapshot()

    def _ensure_revive_topic(self) -> None:
        tcm = self.broker.topic_config_manager
        if tcm.select_topic_config(self.revive_topic) is None:
            with contextlib.suppress(Exception):
                tcm.create_topic_if_absent(self.revive_topic, 8, 8, perm=Perm.READ_WRITE)

    # ------------------------------------------------------------------ state log

    def _apply_record(self, rec: dict[str, Any]) -> None:
        """Replay one state-log record (see state_log for the shapes)."""
        kind = rec.get("k")
        if kind == "S":
            if rec.get("first") is True:  # a complete snapshot is the whole state
                self.states.clear()
            for g, t, q, nxt, entries in rec.get("qs", ()):
                qs = QueueState(str(g), str(t), int(q), int(nxt))
                for off, pt, it, att, ck in entries:
                    qs.put_inflight(int(off), InFlight(int(pt), int(it), int(att), int(ck)), True)
                self.states[qs.key] = qs
            return
        key = (str(rec["g"]), str(rec["t"]), int(rec["q"]))
        qs_opt = self.states.get(key)
        if kind == "C":
            if qs_opt is None:
                qs_opt = QueueState(key[0], key[1], key[2], int(rec["n"]))
                self.states[key] = qs_opt
            qs_opt.next_offset = max(qs_opt.next_offset, int(rec["n"]))
            for off, pt, it, att, ck in rec.get("e", ()):
                off = int(off)
                new = qs_opt.entry(off) is None
                qs_opt.put_inflight(off, InFlight(int(pt), int(it), int(att), int(ck)), new)
        elif kind == "A":
            if qs_opt is None:
                return
            for a in rec.get("e", ()):
                e = qs_opt.entry(int(a[0]))
                if e is not None and e.pop_time == int(a[1]) and (len(a) < 3 or e.invisible_time == int(a[2])):
                    qs_opt.remove(int(a[0]))

    def _snapshot_records(self) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        cur: list[list[Any]] = []
        size = 0
        for qs in self.states.values():
            entries = [[off, e.pop_time, e.invisible_time, e.attempt, e.ck_offset]
                       for d in (qs.inflight, qs.pending) for off, e in d.items()]
            cur.append([qs.group, qs.topic, qs.queue_id, qs.next_offset, entries])
            size += 64 + len(qs.group) + len(qs.topic) + 48 * len(entries)
            if size > SNAPSHOT_CHUNK_BYTES:
                chunks.append({"k": "S", "qs": cur})
                cur, size = [], 0
        if cur or not chunks:
            chunks.append({"k": "S", "qs": cur})
        return chunks

    async def snapshot(self) -> None:
        """Write the whole state to the log and make replay start there."""
        await self.state_log.append_snapshot(self._snapshot_records())

    # ------------------------------------------------------------------ helpers

    def _topic_config(self, topic: str) -> TopicConfig:
        tc = self.broker.topic_config_manager.select_topic_config(topic)
        if tc is None:
            raise BackendError(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist, apply first please!")
        return tc

    def _group_config(self, group: str) -> SubscriptionGroupConfig:
        cfg = self.broker.subscription_group_manager.find_subscription_group_config(group)
        if cfg is None:
            raise BackendError(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                               f"subscription group [{group}] does not exist")
        return cfg

    def _max_attempts(self, group: str) -> int:
        try:
            cfg = self.broker.subscription_group_manager.find_subscription_group_config(group)
        except Exception:  # noqa: BLE001 - a broken manager must not stop redelivery
            cfg = None
        retry_max = cfg.retry_max_times if cfg is not None else 16
        return max(1, retry_max + 1)

    def _initial_offset(self, group: str, topic: str, queue_id: int, init_mode: str | None = None) -> int:
        store = self.broker.message_store
        min_off = store.get_min_offset_in_queue(topic, queue_id)
        max_off = store.get_max_offset_in_queue(topic, queue_id)
        committed = self.broker.consumer_offset_manager.query_offset(group, topic, queue_id)
        if committed is not None and committed >= 0:
            return max(min_off, min(committed, max_off))
        cfg = None
        with contextlib.suppress(Exception):
            cfg = self.broker.subscription_group_manager.find_subscription_group_config(group)
        mode, ts = cfg.consume_from() if cfg is not None else (None, 0)
        if init_mode:
            mode = ConsumeInitMode.parse(init_mode)
        if topic.startswith(DLQ_GROUP_TOPIC_PREFIX) or topic.startswith("%RETRY%"):
            mode = ConsumeInitMode.EARLIEST
        if mode is ConsumeInitMode.EARLIEST:
            return min_off
        if mode is ConsumeInitMode.TIMESTAMP:
            return max(min_off, min(store.get_offset_in_queue_by_time(topic, queue_id, ts), max_off))
        return max_off

    def _state(self, group: str, topic: str, queue_id: int, pending_writes: list[asyncio.Future[int]],
               init_mode: str | None = None) -> QueueState:
        key = (group, topic, queue_id)
        qs = self.states.get(key)
        if qs is None:
            qs = QueueState(group, topic, queue_id, self._initial_offset(group, topic, queue_id, init_mode))
            self.states[key] = qs
            # Record where the group starts so a restart before its first message does not skip it.
            pending_writes.append(self.state_log.append(
                {"k": "C", "g": group, "t": topic, "q": queue_id, "n": qs.next_offset, "e": []}))
            self._commit_offset(qs)
        return qs

    def _check_reset(self, qs: QueueState, pending_writes: list[asyncio.Future[int]]) -> None:
        """An offset committed by someone else (mqadmin resetOffsetByTime, UPDATE_CONSUMER_OFFSET)
        restarts the queue there: in-flight state is dropped (its handles then ack harmlessly)."""
        try:
            cur = self.broker.consumer_offset_manager.query_offset(qs.group, qs.topic, qs.queue_id)
        except Exception:  # noqa: BLE001
            return
        if cur is None or cur < 0 or qs.committed < 0 or cur == qs.committed:
            return
        log.info("consumer offset of %s was reset from %d to %d: POP restarts there", qs.key, qs.committed, cur)
        qs.inflight.clear()
        qs.pending.clear()
        qs.expiry.clear()
        qs.outstanding.clear()
        qs.next_offset = cur
        qs.committed = cur
        pending_writes.append(self.state_log.append(
            {"k": "S", "qs": [[qs.group, qs.topic, qs.queue_id, cur, []]]}))

    def _commit_offset(self, qs: QueueState) -> None:
        off = qs.lowest_unacked()
        if off != qs.committed:
            try:
                self.broker.consumer_offset_manager.commit_offset("POP", qs.group, qs.topic, qs.queue_id, off)
            except Exception as e:  # noqa: BLE001
                log.warning("commit offset %s failed: %s", qs.key, e)
                return
            qs.committed = off

    def _filter(self, expression_type: str, expression: str) -> MessageFilter | None:
        key = (expression_type or "TAG", expression or "*")
        if key in self._filters:
            self._filters.move_to_end(key)
            return self._filters[key]
        f = build_message_filter(key[0], key[1])  # raises BackendError(SUBSCRIPTION_PARSE_FAILED)
        self._filters[key] = f
        if len(self._filters) > 1024:
            self._filters.popitem(last=False)
        return f

    def _read(self, topic: str, queue_id: int, offset: int) -> MessageExt | None:
        res = self.broker.message_store.get_messages(topic, queue_id, offset, 1)
        if res.status is not GetMessageStatus.FOUND:
            return None
        for rec, qoff in zip(res.records, res.queue_offsets, strict=False):
            if qoff == offset:
                try:
                    return decode_record(rec, check_crc=False)
                except RecordError as e:
                    log.error("undecodable record %s-%d@%d: %s", topic, queue_id, offset, e)
                    return None
        return None

    def _handle(self, qs: QueueState, off: int, e: InFlight) -> str:
        return xi.build(e.ck_offset, e.pop_time, e.invisible_time, REVIVE_QUEUE_ID, xi.topic_type_of(qs.topic),
                        self.broker_name, qs.queue_id, off)

    @staticmethod
    def _matches(e: InFlight, info: xi.ExtraInfo) -> bool:
        """A handle names the current delivery when its pop time and invisible time match it."""
        return e.pop_time == info.pop_time and e.invisible_time == info.invisible_time

    @staticmethod
    def _decorate(msg: MessageExt, handle: str, e: InFlight) -> MessageExt:
        msg.properties[MessageConst.POP_CK] = handle
        msg.reconsume_times = e.attempt - 1
        return msg

    # ------------------------------------------------------------------ pop

    async def pop(self, request: PopRequest, timeout: float, init_mode: str | None = None) -> PopResult:
        """Hand out up to ``max_msg_nums`` messages; long-poll up to ``poll_time_ms`` when none.

        ``init_mode`` (LATEST|EARLIEST) overrides where a group without an offset starts (remoting
        initMode); by default the group's ``consumeFromWhere`` attribute decides, else LATEST."""
        if not request.group or not request.topic:
            raise BackendError(ResponseCode.INVALID_PARAMETER, "consumerGroup and topic are required")
        if request.max_msg_nums <= 0 or request.max_msg_nums > MAX_MSG_NUMS:
            raise BackendError(ResponseCode.INVALID_PARAMETER,
                               f"maxMsgNums must be in [1, {MAX_MSG_NUMS}], got {request.max_msg_nums}")
        if request.invisible_time_ms <= 0:
            raise BackendError(ResponseCode.INVALID_PARAMETER, "invisibleTime must be positive")
        tc = self._topic_config(request.topic)
        gc = self._group_config(request.group)
        if not gc.consume_enable:
            raise BackendError(ResponseCode.NO_PERMISSION, f"subscription group [{request.group}] no permission")
        if not Perm.readable(tc.perm):
            raise BackendError(ResponseCode.NO_PERMISSION, f"the topic[{request.topic}] peeking message is forbidden")
        if request.queue_id >= tc.read_queue_nums or request.queue_id < -1:
            raise BackendError(ResponseCode.INVALID_PARAMETER,
                               f"queueId[{request.queue_id}] is illegal, topic:[{request.topic}] "
                               f"topicConfig.readQueueNums:[{tc.read_queue_nums}]")
        if (request.expression_type or "").upper() in ("SQL92", "SQL") and not getattr(
                self.broker.config, "enable_property_filter", True):
            raise BackendError(ResponseCode.SYSTEM_ERROR,
                               "The broker does not support consumer to filter message by SQL92 "
                               "(set enablePropertyFilter=true)")
        mfilter = self._filter(request.expression_type, request.expression)
        loop_time = asyncio.get_running_loop().time
        poll_s = max(0.0, min(request.poll_time_ms / 1000.0, timeout if timeout > 0 else 0.0))
        end = loop_time() + poll_s
        wkey: WaiterKey = (request.group, request.expression_type or "", request.expression or "")
        while True:
            fut: asyncio.Future[None] | None = None
            if poll_s > 0:
                if self._waiter_count >= POLLING_MAX_WAITERS:
                    return PopResult(PopStatus.POLLING_FULL)
                fut = self._add_waiter(request.topic, wkey)
            try:
                result = await self._pop_once(request, tc, mfilter, init_mode)
                if len(result.messages) >= request.max_msg_nums:
                    # a full batch: more may be waiting, so pass the arrival on to the next waiter
                    self._wake_one(request.topic, wkey)
                if result.messages or fut is None:
                    return result
                remaining = end - loop_time()
                if remaining <= 0:
                    result.status = PopStatus.POLLING_NOT_FOUND
                    return result
                await asyncio.wait((fut,), timeout=remaining)
                if not fut.done() or not self._started:
                    result.status = PopStatus.POLLING_NOT_FOUND
                    return result
            finally:
                if fut is not None:
                    self._remove_waiter(request.topic, wkey, fut)

    async def _pop_once(self, req: PopRequest, tc: TopicConfig, mfilter: MessageFilter | None,
                        init_mode: str | None = None) -> PopResult:
        now = self.clock()
        writes: list[asyncio.Future[int]] = []
        if req.attempt_id:
            again = self._replay_attempt(req, now)
            if again is not None:
                return again
        if req.queue_id >= 0:
            queues = [req.queue_id]
        else:
            n = tc.read_queue_nums
            start = self._rr.get((req.group, req.topic), 0) % max(1, n)
            self._rr[(req.group, req.topic)] = start + 1
            queues = [(start + i) % n for i in range(n)]
        max_attempts = self._max_attempts(req.group)
        out: list[MessageExt] = []
        handed: list[tuple[QueueKey, int, int]] = []
        to_dlq: list[tuple[QueueState, int, MessageExt, InFlight]] = []
        rest = 0
        pop_time = now
        store = self.broker.message_store
        for q in queues:
            qs = self._state(req.group, req.topic, q, writes, init_mode)
            self._check_reset(qs, writes)
            qs.expire(now)
            budget = req.max_msg_nums - len(out)
            if budget <= 0 or (req.order and qs.inflight):
                rest += max(0, store.get_max_offset_in_queue(req.topic, q) - qs.next_offset) + len(qs.pending)
                continue
            entries: list[list[int]] = []
            ck = -1
            # 1. expired messages, oldest offset first (so FIFO redelivers the unacked one first)
            if qs.pending:
                for off in sorted(qs.pending):
                    if budget <= 0:
                        break
                    old = qs.pending[off]
                    msg = self._read(req.topic, q, off)
                    if msg is None:  # gone from the store (retention): nothing left to deliver
                        qs.remove(off)
                        continue
                    if old.attempt + 1 > max_attempts:
                        e = InFlight(max(now, old.pop_time), DLQ_IN_PROGRESS_MS, old.attempt, old.ck_offset)
                        qs.put_inflight(off, e, False)
                        to_dlq.append((qs, off, msg, e))
                        continue
                    if ck < 0:
                        ck = off
                    e = InFlight(max(pop_time, old.pop_time), req.invisible_time_ms, old.attempt + 1, ck)
                    qs.put_inflight(off, e, False)
                    out.append(self._decorate(msg, self._handle(qs, off, e), e))
                    entries.append([off, e.pop_time, e.invisible_time, e.attempt, e.ck_offset])
                    handed.append((qs.key, off, e.pop_time))
                    budget -= 1
            # 2. new messages
            if budget > 0:
                res = store.get_messages(req.topic, q, qs.next_offset, budget,
                                         mfilter.store_filter if mfilter is not None else None)
                if res.status is GetMessageStatus.OFFSET_TOO_SMALL or (
                        res.status is GetMessageStatus.OFFSET_OVERFLOW_BADLY and not qs.inflight
                        and not qs.pending):
                    qs.next_offset = res.next_begin_offset
                    res = store.get_messages(req.topic, q, qs.next_offset, budget,
                                             mfilter.store_filter if mfilter is not None else None)
                for rec, off in zip(res.records, res.queue_offsets, strict=False):
                    if off < qs.next_offset or qs.entry(off) is not None:
                        continue
                    try:
                        msg = decode_record(rec, check_crc=False)
                    except RecordError as err:
                        log.error("undecodable record %s-%d@%d skipped: %s", req.topic, q, off, err)
                        continue
                    if mfilter is not None and not mfilter.exact_in_store and not mfilter.accept(msg):
                        continue
                    if ck < 0:
                        ck = off
                    e = InFlight(pop_time, req.invisible_time_ms, 1, ck)
                    qs.put_inflight(off, e, True)
                    out.append(self._decorate(msg, self._handle(qs, off, e), e))
                    entries.append([off, e.pop_time, e.invisible_time, e.attempt, e.ck_offset])
                    handed.append((qs.key, off, e.pop_time))
                if res.status not in (GetMessageStatus.OFFSET_OVERFLOW_BADLY, GetMessageStatus.OFFSET_TOO_SMALL):
                    qs.next_offset = max(qs.next_offset, res.next_begin_offset)
                elif res.records:
                    qs.next_offset = max(qs.next_offset, res.queue_offsets[-1] + 1)
                rest += max(0, res.max_offset - qs.next_offset)
            if entries:
                writes.append(self.state_log.append(
                    {"k": "C", "g": qs.group, "t": qs.topic, "q": q, "n": qs.next_offset, "e": entries}))
            self._commit_offset(qs)
        if req.attempt_id and handed:
            self._remember_attempt(req, handed)
        # The checkpoint must be durable before the handles leave the broker.
        if writes:
            await asyncio.gather(*writes)
        for qs, off, msg, e in to_dlq:
            task = asyncio.ensure_future(self._dlq_and_ack(qs, off, msg, e))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if out:
            self.broker.stats.add_out(req.topic, req.group, len(out), sum(len(m.body) for m in out))
        status = PopStatus.FOUND if out else PopStatus.NO_NEW_MSG
        return PopResult(status, out, pop_time=pop_time, invisible_time=req.invisible_time_ms, rest_num=rest)

    def _remember_attempt(self, req: PopRequest, handed: list[tuple[QueueKey, int, int]]) -> None:
        k = (req.group, req.topic, req.attempt_id)
        self._attempts[k] = handed
        self._attempts.move_to_end(k)
        while len(self._attempts) > ATTEMPT_CACHE_SIZE:
            self._attempts.popitem(last=False)

    def _replay_attempt(self, req: PopRequest, now: int) -> PopResult | None:
        """A retried receive with the same attempt id gets the same messages while they are in flight."""
        handed = self._attempts.get((req.group, req.topic, req.attempt_id))
        if not handed:
            return None
        out: list[MessageExt] = []
        for key, off, pt in handed:
            qs = self.states.get(key)
            e = qs.inflight.get(off) if qs is not None else None
            if qs is None or e is None or e.pop_time != pt or e.deadline <= now:
                return None
            msg = self._read(qs.topic, qs.queue_id, off)
            if msg is None:
                return None
            out.append(self._decorate(msg, self._handle(qs, off, e), e))
        first = out[0]
        return PopResult(PopStatus.FOUND, out, pop_time=handed[0][2],
                         invisible_time=int(first.properties[MessageConst.POP_CK].split(" ")[2]))

    # ------------------------------------------------------------------ long polling

    def _add_waiter(self, topic: str, key: WaiterKey) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(topic, {}).setdefault(key, {})[fut] = None
        self._waiter_count += 1
        return fut

    def _remove_waiter(self, topic: str, key: WaiterKey, fut: asyncio.Future[None]) -> None:
        subs = self._waiters.get(topic)
        futs = subs.get(key) if subs is not None else None
        if subs is not None and futs is not None and fut in futs:
            del futs[fut]
            self._waiter_count -= 1
            if not futs:
                del subs[key]
                if not subs:
                    del self._waiters[topic]

    def _wake(self, topic: str) -> None:
        """Wake every long-polling pop of ``topic`` (state changes: an ack unblocking a FIFO queue, a
        message made visible again, shutdown)."""
        for futs in self._waiters.get(topic, {}).values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)

    def _wake_one(self, topic: str, only: WaiterKey | None = None) -> None:
        """New messages: wake the longest-waiting pop of each subscription (group and filter) of
        ``topic`` rather than all of them, so one consumer takes the batch instead of several racing
        for a share of it (RocketMQ's PopLongPollingService wakes one request per arrival too). A pop
        that returns a full batch passes the wake on to the next waiter."""
        subs = self._waiters.get(topic)
        if not subs:
            return
        for key, futs in subs.items():
            if only is not None and key != only:
                continue
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)
                    break

    def _on_arrival(self, topic: str, queue_id: int, max_offset: int) -> None:
        """Store arrival listener: wake long-polling pops of ``topic`` (thread-safe)."""
        if topic not in self._waiters:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self._loop:
            self._wake_one(topic)
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_one, topic)

    def notify_message_arriving(self, topic: str) -> None:
        """Wake long-polling pops of ``topic`` (e.g. from NOTIFICATION or a retry put)."""
        self._wake(topic)

    def has_message(self, group: str, topic: str, queue_id: int) -> bool:
        """Whether a pop of ``group`` would find something now (NOTIFICATION)."""
        tc = self.broker.topic_config_manager.select_topic_config(topic)
        if tc is None:
            return False
        now = self.clock()
        store = self.broker.message_store
        queues = [queue_id] if queue_id >= 0 else list(range(tc.read_queue_nums))
        for q in queues:
            qs = self.states.get((group, topic, q))
            if qs is None:
                # a new group starts at the latest offset: nothing yet unless configured otherwise
                if self._initial_offset(group, topic, q) < store.get_max_offset_in_queue(topic, q):
                    return True
                continue
            qs.expire(now)
            if qs.pending or store.get_max_offset_in_queue(topic, q) > qs.next_offset:
                return True
        return False

    async def wait_for_message(self, group: str, topic: str, queue_id: int, poll_time_ms: int) -> bool:
        """NOTIFICATION: True as soon as a message is available, False after ``poll_time_ms``."""
        loop_time = asyncio.get_running_loop().time
        end = loop_time() + max(0, poll_time_ms) / 1000.0
        while True:
            fut = self._add_waiter(topic, (group, "", ""))
            try:
                if self.has_message(group, topic, queue_id):
                    return True
                remaining = end - loop_time()
                if remaining <= 0:
                    return False
                await asyncio.wait((fut,), timeout=remaining)
                if not fut.done() or not self._started:
                    return self.has_message(group, topic, queue_id)
            finally:
                self._remove_waiter(topic, (group, "", ""), fut)

    # ------------------------------------------------------------------ ack

    def _locate(self, group: str, topic: str, extra_info: str) -> tuple[xi.ExtraInfo, str, QueueKey]:
        try:
            info = xi.parse(extra_info)
        except xi.ExtraInfoError as e:
            raise BackendError(ResponseCode.INVALID_PARAMETER, f"illegal extra info: {e}") from None
        real = info.real_topic(topic, group)
        tc = self._topic_config(real)
        if info.queue_id >= tc.read_queue_nums:
            raise BackendError(ResponseCode.MESSAGE_ILLEGAL,
                               f"queueId[{info.queue_id}] is illegal, topic:[{real}] "
                               f"topicConfig.readQueueNums:[{tc.read_queue_nums}]")
        return info, real, (group, real, info.queue_id)

    def _no_longer_in_flight(self, info: xi.ExtraInfo, real: str, key: QueueKey) -> BackendError | None:
        """Why a handle that matches no in-flight message cannot be acked, or None if it was acked."""
        store = self.broker.message_store
        min_off = store.get_min_offset_in_queue(real, info.queue_id)
        max_off = store.get_max_offset_in_queue(real, info.queue_id)
        if info.queue_offset < min_off or info.queue_offset >= max_off:
            return BackendError(ResponseCode.NO_MESSAGE,
                                f"offset is illegal, key:{real}@{info.queue_id}, offset:{info.queue_offset}, "
                                f"store:{min_off}~{max_off}")
        qs = self.states.get(key)
        handed_limit = qs.next_offset if qs is not None else self.broker.consumer_offset_manager.query_offset(
            key[0], real, info.queue_id)
        if handed_limit is None or info.queue_offset >= handed_limit:
            return BackendError(ResponseCode.NO_MESSAGE,
                                f"message {real}@{info.queue_id}:{info.queue_offset} was never popped by "
                                f"group {key[0]}")
        return None  # below every outstanding delivery: already acked (ack is idempotent)

    def _ack_one(self, group: str, topic: str, extra_info: str) -> tuple[QueueState, int, int, int] | None:
        """Validate and apply an ack in memory. Returns what to log, None for a repeated ack."""
        info, real, key = self._locate(group, topic, extra_info)
        qs = self.states.get(key)
        e = qs.entry(info.queue_offset) if qs is not None else None
        if qs is not None and e is not None:
            if info.pop_time > e.pop_time:
                raise BackendError(ResponseCode.NO_MESSAGE,
                                   "receipt handle names no delivery of this message")
            # The current delivery, or an older one (the message expired and was handed out again, or
            # its invisible time was changed): the consumer did process the message, so it is acked
            # for the group (RocketMQ would ignore such an ack and deliver the message once more).
            qs.remove(info.queue_offset)
            return qs, info.queue_offset, e.pop_time, e.invisible_time
        err = self._no_longer_in_flight(info, real, key)
        if err is not None:
            raise err
        return None

    async def ack(self, group: str, topic: str, extra_info: str) -> None:
        done = self._ack_one(group, topic, extra_info)
        if done is None:
            return
        qs, off, pt, it = done
        self._commit_offset(qs)
        if not qs.inflight:  # a FIFO queue may be unblocked: long-polling pops look again
            self._wake(qs.topic)
        await self.state_log.append({"k": "A", "g": qs.group, "t": qs.topic, "q": qs.queue_id,
                                     "e": [[off, pt, it]]})
        self._maybe_snapshot()

    async def batch_ack(self, group: str, topic: str, extra_infos: list[str]) -> list[BackendError | None]:
        results: list[BackendError | None] = []
        per_queue: dict[QueueKey, tuple[QueueState, list[list[int]]]] = {}
        for extra in extra_infos:
            try:
                done = self._ack_one(group, topic, extra)
            except BackendError as e:
                results.append(e)
                continue
            results.append(None)
            if done is not None:
                qs, off, pt, it = done
                per_queue.setdefault(qs.key, (qs, []))[1].append([off, pt, it])
        writes = []
        for qs, entries in per_queue.values():
            self._commit_offset(qs)
            if not qs.inflight:
                self._wake(qs.topic)
            writes.append(self.state_log.append(
                {"k": "A", "g": qs.group, "t": qs.topic, "q": qs.queue_id, "e": entries}))
        if writes:
            await asyncio.gather(*writes)
            self._maybe_snapshot()
        return results

    # ------------------------------------------------------------------ change invisible time

    async def change_invisible_time(self, group: str, topic: str, extra_info: str, invisible_time_ms: int) -> str:
        """Make the message invisible for ``invisible_time_ms`` from now; returns the new extra info.
        The old handle stops working (ack with it answers NO_MESSAGE)."""
        if invisible_time_ms < 0:
            raise BackendError(ResponseCode.INVALID_PARAMETER, "invisibleTime must not be negative")
        info, real, key = self._locate(group, topic, extra_info)
        qs = self.states.get(key)
        e = qs.entry(info.queue_offset) if qs is not None else None
        if qs is None or e is None:
            err = self._no_longer_in_flight(info, real, key)
            raise err or BackendError(ResponseCode.NO_MESSAGE, "the message was already acked")
        if not self._matches(e, info):
            raise BackendError(ResponseCode.NO_MESSAGE,
                               "receipt handle is stale: the message was handed out again or its invisible "
                               "time changed; use the newest receipt handle")
        now = self.clock()
        ne = InFlight(max(now, e.pop_time), invisible_time_ms, e.attempt, e.ck_offset)
        qs.put_inflight(info.queue_offset, ne, False)
        qs._compact()
        await self.state_log.append({"k": "C", "g": qs.group, "t": qs.topic, "q": qs.queue_id, "n": qs.next_offset,
                                     "e": [[info.queue_offset, ne.pop_time, ne.invisible_time, ne.attempt,
                                            ne.ck_offset]]})
        if self._revive_wakeup is not None:  # the new deadline may come before the revive task's next wake
            self._revive_wakeup.set()
        return self._handle(qs, info.queue_offset, ne)

    # ------------------------------------------------------------------ dead letter queue

    async def forward_to_dlq(self, group: str, topic: str, extra_info: str, max_reconsume_times: int) -> None:
        """Put the popped message to %DLQ%<group> now and ack it."""
        info, real, key = self._locate(group, topic, extra_info)
        qs = self.states.get(key)
        e = qs.entry(info.queue_offset) if qs is not None else None
        if qs is None or e is None or not self._matches(e, info):
            err = None if (qs is not None and e is not None) else self._no_longer_in_flight(info, real, key)
            raise err or BackendError(ResponseCode.NO_MESSAGE, "the message is no longer in flight for this handle")
        msg = self._read(real, info.queue_id, info.queue_offset)
        if msg is None:
            raise BackendError(ResponseCode.NO_MESSAGE, f"message {real}@{info.queue_id}:{info.queue_offset} is gone")
        # hold the message (no redelivery, its handle no longer acks) while the DLQ put runs
        hold = InFlight(max(self.clock(), e.pop_time), DLQ_IN_PROGRESS_MS, e.attempt, e.ck_offset)
        qs.put_inflight(info.queue_offset, hold, False)
        await self._dlq_and_ack(qs, info.queue_offset, msg, hold, raise_errors=True)

    async def _put_dlq(self, group: str, msg: MessageExt, attempts: int) -> None:
        dlq = dlq_topic(group)
        self.broker.topic_config_manager.create_topic_if_absent(dlq, 1, 1, perm=Perm.READ_WRITE)
        props = dict(msg.properties)
        for k in _DLQ_DROP_PROPS:
            props.pop(k, None)
        props[MessageConst.DLQ_ORIGIN_TOPIC] = msg.topic
        props[MessageConst.DLQ_ORIGIN_MESSAGE_ID] = msg.msg_id
        props.setdefault(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX, msg.msg_id)
        props[MessageConst.RECONSUME_TIME] = str(attempts)
        m = Message(topic=dlq, body=msg.body, properties=props, flag=msg.flag, queue_id=0,
                    sys_flag=msg.sys_flag & ~SysFlag.TRANSACTION_MASK, born_timestamp=msg.born_timestamp,
                    born_host=msg.born_host, reconsume_times=attempts)
        res = await self.broker.put_messages([m])
        if not res.ok:
            raise BackendError(ResponseCode.SYSTEM_ERROR, f"put to {dlq} failed: {res.status.name} {res.error}")
        self.broker.stats.add_dlq(msg.topic, group)
        log.info("message %s of %s moved to %s after %d deliveries", msg.msg_id, msg.topic, dlq, attempts)

    async def _dlq_and_ack(self, qs: QueueState, off: int, msg: MessageExt, e: InFlight,
                           raise_errors: bool = False) -> None:
        try:
            await self._put_dlq(qs.group, msg, e.attempt)
        except Exception as err:  # noqa: BLE001 - retried when the DLQ hold expires
            log.error("DLQ put of %s failed, will retry: %s", qs.key, err)
            if raise_errors:
                raise
            return
        cur = qs.entry(off)
        if cur is not None and cur.pop_time == e.pop_time and cur.invisible_time == e.invisible_time:
            qs.remove(off)
            self._commit_offset(qs)
            if not qs.inflight:
                self._wake(qs.topic)
            with contextlib.suppress(Exception):
                await self.state_log.append({"k": "A", "g": qs.group, "t": qs.topic, "q": qs.queue_id,
                                             "e": [[off, e.pop_time, e.invisible_time]]})

    # ------------------------------------------------------------------ revive

    async def revive_once(self) -> int:
        """Expire in-flight messages past their deadline (wakes pollers), and move those out of
        attempts to the DLQ. Returns how many expired. Called by the revive task; tests call it."""
        now = self.clock()
        moved = 0
        woken: set[str] = set()
        dlq: list[tuple[QueueState, int, MessageExt, InFlight]] = []
        for qs in list(self.states.values()):
            if not qs.expiry:
                continue
            n = qs.expire(now)
            if n:
                moved += n
                woken.add(qs.topic)
            if qs.pending:
                max_attempts = self._max_attempts(qs.group)
                for off, old in list(qs.pending.items()):
                    if old.attempt + 1 <= max_attempts:
                        continue
                    msg = self._read(qs.topic, qs.queue_id, off)
                    if msg is None:
                        qs.remove(off)
                        self._commit_offset(qs)
                        continue
                    e = InFlight(max(now, old.pop_time), DLQ_IN_PROGRESS_MS, old.attempt, old.ck_offset)
                    qs.put_inflight(off, e, False)
                    dlq.append((qs, off, msg, e))
        for topic in woken:
            self._wake(topic)
        self._forget_deleted_topics()
        for qs, off, msg, e in dlq:
            await self._dlq_and_ack(qs, off, msg, e)
        self._maybe_snapshot()
        return moved

    def _forget_deleted_topics(self) -> None:
        """Drop the state of topics deleted from the broker (checked at most once a minute)."""
        mono = time.monotonic()
        if mono - self._last_cleanup < 60.0:
            return
        self._last_cleanup = mono
        tcm = self.broker.topic_config_manager
        gone = [k for k in self.states if tcm.select_topic_config(k[1]) is None]
        for k in gone:
            del self.states[k]
        if gone:
            log.info("POP state of %d queues of deleted topics dropped", len(gone))

    def _next_deadline(self) -> int | None:
        best: int | None = None
        for qs in self.states.values():
            d = qs.next_deadline()
            if d is not None and (best is None or d < best):
                best = d
        return best

    async def _revive_loop(self) -> None:
        wakeup = self._revive_wakeup
        assert wakeup is not None
        while self._started:
            wakeup.clear()  # a set() from here on (a changed deadline) shortens the wait below
            try:
                await self.revive_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("POP revive failed")
            nd = self._next_deadline()
            delay = 1.0 if nd is None else min(1.0, max(0.005, (nd - self.clock()) / 1000.0))
            # asyncio.wait (not wait_for, which can swallow a cancellation on 3.11)
            waiter = asyncio.ensure_future(wakeup.wait())
            try:
                await asyncio.wait((waiter,), timeout=delay)
            finally:
                waiter.cancel()

    def _maybe_snapshot(self) -> None:
        sl = self.state_log
        due = sl.records_since_snapshot >= SNAPSHOT_EVERY_RECORDS or (
            sl.records_since_snapshot > 0 and time.monotonic() - sl.last_snapshot >= SNAPSHOT_EVERY_SECONDS)
        if due and not sl.snapshot_running:
            self.state_log.snapshot_running = True
            self.state_log.append_snapshot(self._snapshot_records())

    # ------------------------------------------------------------------ introspection

    def inflight_count(self, group: str | None = None) -> int:
        return sum(len(qs.inflight) + len(qs.pending) for qs in self.states.values()
                   if group is None or qs.group == group)

    def queue_states(self, group: str, topic: str) -> Iterable[QueueState]:
        return [qs for qs in self.states.values() if qs.group == group and qs.topic == topic]
