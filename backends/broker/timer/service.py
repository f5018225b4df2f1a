"""TimerMessageService: delay-level (4.x) and timed (5.x) messages, and RecallMessage.

How it works (facts from RocketMQ's HookUtils/TimerMessageStore; the wheel is replaced by a heap):

* **Put path** -- the broker calls :meth:`TimerMessageService.intercept` on every message before the
  store (after ``TransactionalMessageService.prepare``; order does not matter, both skip what is not
  theirs). A message whose delivery time is in the future is rewritten *in place*: topic
  ``rmq_sys_wheel_timer`` queue 0, properties ``REAL_TOPIC``, ``REAL_QID`` and ``TIMER_OUT_MS`` (the
  exact due time in ms; RocketMQ rounds it down to the wheel precision, we never deliver early).
  Half (prepared) messages are only validated here; their commit is timed when it is re-put.
  Sources of the delivery time, first match wins: ``DELAY`` level 1..N (``messageDelayLevel``; above N
  means N; the timer properties are then dropped, as RocketMQ does), ``TIMER_DELAY_SEC``,
  ``TIMER_DELAY_MS``, ``TIMER_DELIVER_MS`` (absolute). Due now or earlier -> unchanged. Prepared
  transaction messages and messages already on the timer topic are left alone. DELAY levels also go
  through this timer (not SCHEDULE_TOPIC_XXXX as in 4.x).
  :class:`TimerMessageError` (``code`` = MESSAGE_ILLEGAL 13) for an unparsable value or a delivery more
  than ``timer_max_delay_sec`` ahead.
* **Delivery** -- a background task keeps a heap of ``(due ms, queue offset, commitlog offset, size)``
  (no bodies), fed by reading the timer topic's consume queue from where it last read; it is woken by
  the store's arrival listener for the timer topic and sleeps until the next due time otherwise. Due
  messages are read back from the commitlog and re-put through ``broker.put_messages`` to their real
  topic/queue with ``REAL_*``, ``TIMER_OUT_MS``, ``TIMER_DELAY_*`` and ``DELAY`` removed,
  ``TIMER_DELIVER_MS`` kept (the proxy shows it as the delivery timestamp), ``TIMER_ENQUEUE_MS`` /
  ``TIMER_DEQUEUE_MS`` added, and the original ``UNIQ_KEY`` kept.
* **Progress** -- ``<storePathRootDir>/config/timerProgress.json`` holds the first queue offset not yet
  handled plus the handled ranges beyond it (delivery order differs from enqueue order). At start the
  heap is rebuilt by scanning the timer queue from that offset, skipping handled ranges. Written at
  most every ``persist_interval_ms`` and at shutdown: a crash redelivers at most that window
  (at-least-once), nothing is lost. Written with ``atomic_write_json`` (fsync, ``.bak``) on the config
  writer thread, not on the event loop (:class:`~backends.broker.config_manager.CoalescingPersister`);
  a missing or corrupt file is read from its ``.bak``.
* **Recall** -- :meth:`recall` decodes the handle (see :mod:`.recall_handle`), finds the pending
  message (same topic, UNIQ_KEY and due time), cancels it and writes a delete marker (a timer-topic
  record with ``TIMER_DEL_UNIQKEY`` = ``"<topic>+<uniqKey>"``, as RocketMQ) so a restart honours it.
  :class:`RecallError` (``code`` = ILLEGAL_OPERATION 604) for a bad handle, a wrong topic/broker, or a
  message that is unknown or already delivered. :meth:`recall_handle_for` builds the handle the send
  path returns (``SendResult.recall_handle``) for a message that :meth:`intercept` delayed.

Broker wiring::

    self.timer_service = TimerMessageService(self)   # after message_store exists; registers
                                                     # self.intercept via broker.add_put_message_hook
    await self.timer_service.start()                 # after message_store.start()
    ...put path: msg = hook(msg)  raises TimerMessageError (a BackendError, code MESSAGE_ILLEGAL)
    ...send result: broker.recall_handle_for(msg) -> timer_service.recall_handle_for(msg)
    ...RECALL_MESSAGE 370 / Backend.recall_message: msg_id = await self.timer_service.recall(topic, handle)
    await self.timer_service.shutdown()              # before message_store.shutdown()
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from backends.api import BackendError
from backends.broker.config_manager import CoalescingPersister
from backends.broker.timer.recall_handle import RecallHandleError, build_handle, decode_handle
from backends.model import (
    TIMER_TOPIC,
    Message,
    MessageConst,
    MessageExt,
    SysFlag,
    string_to_properties,
)
from backends.remoting.codes import ResponseCode
from backends.store import config_file
from backends.store.record import RecordError, check_record

log = logging.getLogger("RocketmqTimer")

TIMER_QUEUE_ID = 0
DELIVER_BATCH = 256
SCAN_BATCH = 256
PUT_RETRY_MS = 1000
MAX_SLEEP_S = 10.0
DEFAULT_DELAY_LEVELS_MS = [
    1000, 5000, 10000, 30000, 60000, 120000, 180000, 240000, 300000, 360000, 420000, 480000, 540000,
    600000, 1200000, 1800000, 3600000, 7200000,
]

_DROP_ON_DELIVERY = (
    MessageConst.REAL_TOPIC,
    MessageConst.REAL_QUEUE_ID,
    MessageConst.TIMER_OUT_MS,
    MessageConst.TIMER_DELAY_SEC,
    MessageConst.TIMER_DELAY_MS,
    MessageConst.DELAY_TIME_LEVEL,
)


class TimerMessageError(BackendError):
    """A timed/delayed message the broker must refuse: ``code`` MESSAGE_ILLEGAL (13)."""

    def __init__(self, message: str) -> None:
        super().__init__(ResponseCode.MESSAGE_ILLEGAL, message)

    def __str__(self) -> str:
        return self.message


class RecallError(BackendError):
    """RecallMessage failed: ``code`` ILLEGAL_OPERATION (604) unless given; ``str()`` is the remark."""

    def __init__(self, message: str, code: int = ResponseCode.ILLEGAL_OPERATION) -> None:
        super().__init__(code, message)

    def __str__(self) -> str:
        return self.message


def build_delete_key(real_topic: str, uniq_key: str) -> str:
    return f"{real_topic}+{uniq_key}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def parse_delay_levels(spec: str) -> list[int]:
    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    out: list[int] = []
    for item in (spec or "").split():
        try:
            out.append(int(item[:-1]) * units[item[-1]])
        except (KeyError, ValueError):
            log.warning("bad messageDelayLevel entry %r ignored", item)
    return out


class TimerProgress:
    """The handled part of the timer queue: everything below ``offset`` plus ``done`` above it."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.offset = -1  # -1: nothing persisted yet (start at the queue's min offset)
        self.done: set[int] = set()
        self.dirty = False
        self._writer = CoalescingPersister(lambda: self.path or "", self.encode,
                                           name="timerProgress.json")

    def load(self) -> None:
        if not self.path:
            return
        try:
            data = config_file.read_json(self.path)  # the file, else its .bak (a crash between renames)
            if data is None:
                return
            self.offset = int(data.get("offset", -1))
            for a, b in data.get("done", []):
                self.done.update(range(int(a), int(b) + 1))
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.error("cannot read timer progress %s (%s); rescanning the timer queue", self.path, e)
            self.offset, self.done = -1, set()

    def mark(self, queue_offset: int) -> None:
        if queue_offset >= self.offset:
            self.done.add(queue_offset)
            self.dirty = True

    def advance(self) -> None:
        done = self.done
        o = self.offset
        while o in done:
            done.discard(o)
            o += 1
        if o != self.offset:
            self.offset = o
            self.dirty = True

    def ranges(self) -> list[list[int]]:
        out: list[list[int]] = []
        for o in sorted(self.done):
            if out and out[-1][1] == o - 1:
                out[-1][1] = o
            else:
                out.append([o, o])
        return out

    def encode(self) -> dict[str, Any]:
        return {"offset": self.offset, "done": self.ranges()}

    def persist(self) -> None:
        """Write the progress now, on this thread."""
        if not self.path:
            self.dirty = False
            return
        if self._writer.persist_now():
            self.dirty = False

    def persist_soon(self) -> None:
        """Write the progress off the event loop (coalesced; at once when no loop runs). A failed
        write is logged; the next change writes again."""
        self.dirty = False
        if self.path:
            self._writer.request()

    async def flush(self) -> None:
        """Write the progress off the loop and wait for it."""
        if not self.path:
            self.dirty = False
            return
        self.dirty = False
        await self._writer.flush()


class TimerMessageService:
    def __init__(
        self,
        broker: Any,
        clock: Callable[[], int] | None = None,
        persist_interval_ms: int = 1000,
    ) -> None:
        self.broker = broker
        self.store = broker.message_store
        self.clock: Callable[[], int] = clock or _now_ms
        self.persist_interval_ms = persist_interval_ms
        cfg = broker.config
        levels = getattr(cfg, "delay_levels_ms", None)
        if levels is None:
            levels = parse_delay_levels(getattr(cfg, "message_delay_level", ""))
        self.delay_levels_ms: list[int] = list(levels) or list(DEFAULT_DELAY_LEVELS_MS)
        root = getattr(cfg, "store_path_root_dir", None)
        path = os.path.join(root, "config", "timerProgress.json") if root else None
        self.progress = TimerProgress(path)
        # (due ms, queue offset, commitlog offset, size) of every pending timer message
        self._heap: list[tuple[int, int, int, int]] = []
        self._scan_offset = 0
        # delete keys ("topic+uniqKey") of recalled messages still pending -> due ms
        self._cancelled: dict[str, int] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._last_persist = 0.0
        self._retry_at_ms = 0
        self._started = False
        self.delivered_count = 0
        self.cancelled_count = 0
        # Join the broker's put path (BrokerController.add_put_message_hook) when it offers one.
        add_hook = getattr(broker, "add_put_message_hook", None)
        if callable(add_hook):
            add_hook(self.intercept)

    # -- config helpers ------------------------------------------------------------------------------

    @property
    def max_delay_ms(self) -> int:
        return int(getattr(self.broker.config, "timer_max_delay_sec", 259200)) * 1000

    @property
    def broker_name(self) -> str:
        return str(getattr(self.broker.config, "broker_name", "broker-a"))

    @property
    def pending_count(self) -> int:
        return len(self._heap)

    def next_due_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    # -- put path ------------------------------------------------------------------------------------

    def deliver_time_of(self, msg: Message, now: int | None = None) -> int | None:
        """The absolute delivery time ``msg`` asks for, or None when it is not a delayed message.
        Raises :class:`TimerMessageError` for unparsable values or a delivery too far ahead."""
        props = msg.properties
        if now is None:
            now = self.clock()
        level_s = props.get(MessageConst.DELAY_TIME_LEVEL)
        if level_s is not None:
            try:
                level = int(level_s)
            except ValueError as e:
                raise TimerMessageError(f"illegal delay level {level_s!r}") from e
            if level > 0:
                for k in (MessageConst.TIMER_DELIVER_MS, MessageConst.TIMER_DELAY_SEC, MessageConst.TIMER_DELAY_MS):
                    props.pop(k, None)
                level = min(level, len(self.delay_levels_ms))
                return now + self.delay_levels_ms[level - 1]
        if not getattr(self.broker.config, "timer_wheel_enable", True) and (
            MessageConst.TIMER_DELAY_SEC in props
            or MessageConst.TIMER_DELAY_MS in props
            or MessageConst.TIMER_DELIVER_MS in props
        ):
            raise TimerMessageError("accurate timer message is not enabled, timerWheelEnable is false")
        try:
            if (v := props.get(MessageConst.TIMER_DELAY_SEC)) is not None:
                deliver = now + int(v) * 1000
            elif (v := props.get(MessageConst.TIMER_DELAY_MS)) is not None:
                deliver = now + int(v)
            elif (v := props.get(MessageConst.TIMER_DELIVER_MS)) is not None:
                deliver = int(v)
            else:
                return None
        except ValueError as e:
            raise TimerMessageError(f"illegal timer property value {v!r}") from e
        if deliver - now > self.max_delay_ms:
            raise TimerMessageError(
                f"the delivery time {deliver} is more than timerMaxDelaySec "
                f"({self.max_delay_ms // 1000} s) ahead"
            )
        return deliver

    def intercept(self, msg: Message) -> Message:
        """Put-path hook: route a future-due message to the timer topic (in place); returns ``msg``."""
        if msg.topic == TIMER_TOPIC:
            return msg
        tran = msg.sys_flag & SysFlag.TRANSACTION_MASK
        props = msg.properties
        if tran == SysFlag.TRANSACTION_PREPARED_TYPE or (
            tran == SysFlag.TRANSACTION_NOT_TYPE and props.get(MessageConst.TRANSACTION_PREPARED) == "true"
        ):
            # a half message is stored as is and timed when committed; refuse a bad delivery time now
            self.deliver_time_of(msg)
            return msg
        if tran != SysFlag.TRANSACTION_NOT_TYPE and tran != SysFlag.TRANSACTION_COMMIT_TYPE:
            return msg
        if MessageConst.TIMER_OUT_MS in props:
            return msg
        now = self.clock()
        deliver = self.deliver_time_of(msg, now)
        if deliver is None or deliver <= now:
            return msg
        props[MessageConst.TIMER_OUT_MS] = str(deliver)
        props[MessageConst.REAL_TOPIC] = msg.topic
        props[MessageConst.REAL_QUEUE_ID] = str(msg.queue_id)
        msg.topic = TIMER_TOPIC
        msg.queue_id = TIMER_QUEUE_ID
        return msg

    def recall_handle_for(self, msg: Message, deliver_ms: int | None = None) -> str:
        """The recall handle the send path returns for a message :meth:`intercept` delayed
        (``deliver_ms`` defaults to its ``TIMER_OUT_MS``); "" when it is not a delayed message."""
        props = msg.properties
        if deliver_ms is None:
            out = props.get(MessageConst.TIMER_OUT_MS)
            if out is None:
                return ""
            deliver_ms = int(out)
        topic = props.get(MessageConst.REAL_TOPIC, msg.topic)
        uniq = props.get(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        if not uniq:
            return ""
        return build_handle(topic, self.broker_name, str(deliver_ms), uniq)

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self, run_loop: bool = True) -> None:
        """Load progress, rebuild the heap from the timer queue, start the delivery task."""
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.progress.load()
        min_off = self.store.get_min_offset_in_queue(TIMER_TOPIC, TIMER_QUEUE_ID)
        if self.progress.offset < min_off:
            self.progress.offset = max(min_off, 0)
            self.progress.done = {o for o in self.progress.done if o >= self.progress.offset}
        self._scan_offset = self.progress.offset
        try:
            self.store.add_arrival_listener(self._on_arrival)
        except NotImplementedError:  # pragma: no cover - a store without listeners: rely on wake()
            log.warning("message store has no arrival listener; timer relies on explicit wake()")
        await self._scan(yield_every=SCAN_BATCH)
        self.progress.advance()
        log.info(
            "timer service started: %d pending, progress offset %d, scanned to %d",
            len(self._heap), self.progress.offset, self._scan_offset,
        )
        if run_loop:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="timer-service")

    async def reload(self) -> None:
        """The commitlog was cut back (a deposed master rejoining as a slave): read the timer queue
        again from the progress, forgetting what was read past the cut."""
        end = self.store.get_max_offset_in_queue(TIMER_TOPIC, TIMER_QUEUE_ID)
        p = self.progress
        p.offset = max(min(p.offset, end), self.store.get_min_offset_in_queue(TIMER_TOPIC, TIMER_QUEUE_ID), 0)
        p.done = {o for o in p.done if p.offset <= o < end}
        p.dirty = True
        self._heap, self._cancelled = [], {}
        self._scan_offset = p.offset
        await self._scan()

    def set_running(self, on: bool) -> None:
        """Deliver due messages (a master) or not (a slave: its log is its master's copy)."""
        if on and self._task is None and self._started:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="timer-service")
        elif not on and self._task is not None:
            self._task.cancel()
            self._task = None

    async def shutdown(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5.0)
            except TimeoutError:
                self._task.cancel()
            except Exception:  # pragma: no cover
                log.exception("timer task failed")
            self._task = None
        self.progress.advance()
        await self.progress.flush()

    def wake(self) -> None:
        """Re-evaluate now (new timer messages, or a test clock moved)."""
        if self._wake is None:
            return
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def _on_arrival(self, topic: str, queue_id: int, max_offset: int) -> None:
        if topic == TIMER_TOPIC:
            self.wake()

    # -- the loop ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer delivery round failed")
                self._retry_at_ms = self.clock() + PUT_RETRY_MS
            if self._stopping:
                break
            now = self.clock()
            if self._heap and self._heap[0][0] <= now and self._retry_at_ms <= now:
                await asyncio.sleep(0)
                continue
            due = self._heap[0][0] if self._heap else None
            if due is not None and self._retry_at_ms > due:
                due = self._retry_at_ms
            # sleep until the next due time (capped, so a wall-clock jump is noticed) or a wake()
            timeout = None if due is None else min(MAX_SLEEP_S, max(0.0, (due - now) / 1000.0))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """One round: read new timer entries, deliver what is due; returns messages delivered."""
        await self._scan()
        if getattr(self.broker.config, "is_slave", False):  # a slave re-puts nothing; look again later
            self._retry_at_ms = self.clock() + PUT_RETRY_MS
            return 0
        delivered = 0
        if self.clock() >= self._retry_at_ms:
            while self._heap and self._heap[0][0] <= self.clock():
                n, ok = await self._deliver_batch()
                delivered += n
                if not ok:
                    self._retry_at_ms = self.clock() + PUT_RETRY_MS
                    break
        self.progress.advance()
        self._maybe_persist()
        if self._cancelled:
            self._purge_stale_cancels()
        return delivered

    def _purge_stale_cancels(self) -> None:
        """Forget recall markers no pending message can match any more (every entry due at or before
        the marker's time has been handled)."""
        low = self._heap[0][0] if self._heap else None
        for key in [k for k, due in self._cancelled.items() if low is None or due < low]:
            del self._cancelled[key]

    def _maybe_persist(self, force: bool = False) -> None:
        if not self.progress.dirty:
            return
        t = time.monotonic()
        if force or (t - self._last_persist) * 1000 >= self.persist_interval_ms:
            self.progress.persist_soon()  # the fsync runs off the event loop
            self._last_persist = t

    async def _scan(self, yield_every: int = 0) -> None:
        """Read timer-queue entries from ``_scan_offset`` to the end into the heap."""
        store = self.store
        n = 0
        while True:
            max_off = store.get_max_offset_in_queue(TIMER_TOPIC, TIMER_QUEUE_ID)
            if self._scan_offset >= max_off:
                return
            res = store.get_messages(TIMER_TOPIC, TIMER_QUEUE_ID, self._scan_offset, SCAN_BATCH)
            if not res.records:
                if res.next_begin_offset > self._scan_offset:
                    log.warning(
                        "timer queue offsets %d..%d unreadable (%s); skipped",
                        self._scan_offset, res.next_begin_offset - 1, res.status.name,
                    )
                    for o in range(self._scan_offset, res.next_begin_offset):
                        self.progress.mark(o)
                    self._scan_offset = res.next_begin_offset
                    continue
                return
            for record, qoff in zip(res.records, res.queue_offsets, strict=False):
                if qoff < self._scan_offset:
                    continue
                try:
                    view = check_record(record, 0, check_crc=False)
                    props = string_to_properties(view.properties)
                    due = int(props[MessageConst.TIMER_OUT_MS])
                except (RecordError, KeyError, ValueError) as e:
                    log.error("timer queue entry %d is not a timer message (%s); skipped", qoff, e)
                    self.progress.mark(qoff)
                    continue
                del_key = props.get(MessageConst.TIMER_DEL_UNIQKEY)
                if del_key is not None:
                    self._cancelled[del_key] = due
                    self.progress.mark(qoff)
                elif qoff not in self.progress.done:
                    heapq.heappush(self._heap, (due, qoff, view.physical_offset, view.total_size))
                n += 1
            self._scan_offset = max(self._scan_offset, res.queue_offsets[-1] + 1)
            if yield_every and n >= yield_every:
                n = 0
                await asyncio.sleep(0)

    async def _deliver_batch(self) -> tuple[int, bool]:
        now = self.clock()
        entries: list[tuple[int, int, int, int]] = []
        while self._heap and self._heap[0][0] <= now and len(entries) < DELIVER_BATCH:
            entries.append(heapq.heappop(self._heap))
        by_topic: dict[str, list[tuple[tuple[int, int, int, int], Message]]] = {}
        for entry in entries:
            ext = self.store.look_message_by_offset(entry[2], entry[3])
            if ext is None:
                log.error("timer message at commitlog offset %d is gone; skipped", entry[2])
                self.progress.mark(entry[1])
                continue
            msg = self._to_real_message(ext, now)
            if msg is None:
                self.progress.mark(entry[1])
                continue
            by_topic.setdefault(msg.topic, []).append((entry, msg))
        delivered = 0
        ok = True
        for items in by_topic.values():
            if not ok:
                for entry, _ in items:
                    heapq.heappush(self._heap, entry)
                continue
            try:
                result = await self.broker.put_messages([m for _, m in items])
                ok = bool(result.ok)
                err = "" if ok else f"{result.status.name} {result.error}"
            except Exception as e:  # keep the entries; retry later
                ok, err = False, f"{type(e).__name__}: {e}"
            if ok:
                for entry, _ in items:
                    self.progress.mark(entry[1])
                delivered += len(items)
            else:
                log.error("re-putting %d due timer messages failed (%s); retrying", len(items), err)
                for entry, _ in items:
                    heapq.heappush(self._heap, entry)
        self.delivered_count += delivered
        return delivered, ok

    def _to_real_message(self, ext: MessageExt, now: int) -> Message | None:
        props = dict(ext.properties)
        real_topic = props.get(MessageConst.REAL_TOPIC)
        uniq = props.get(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "")
        if not real_topic:
            log.error("timer message %s has no REAL_TOPIC; dropped", ext.msg_id)
            return None
        key = build_delete_key(real_topic, uniq)
        if uniq and key in self._cancelled:
            del self._cancelled[key]
            self.cancelled_count += 1
            log.info("timer message %s of topic %s was recalled; not delivered", uniq, real_topic)
            return None
        try:
            real_qid = int(props.get(MessageConst.REAL_QUEUE_ID, "0"))
        except ValueError:
            real_qid = 0
        for k in _DROP_ON_DELIVERY:
            props.pop(k, None)
        props[MessageConst.TIMER_ENQUEUE_MS] = str(ext.store_timestamp)
        props[MessageConst.TIMER_DEQUEUE_MS] = str(now)
        return Message(
            topic=real_topic,
            body=ext.body,
            properties=props,
            flag=ext.flag,
            queue_id=real_qid,
            sys_flag=ext.sys_flag,
            born_timestamp=ext.born_timestamp,
            born_host=ext.born_host,
            reconsume_times=ext.reconsume_times,
            prepared_transaction_offset=ext.prepared_transaction_offset,
        )

    # -- recall --------------------------------------------------------------------------------------

    async def recall(self, topic: str, recall_handle: str) -> str:
        """Cancel a pending timed message; returns its message id (UNIQ_KEY)."""
        try:
            handle = decode_handle(recall_handle)
        except RecallHandleError as e:
            raise RecallError(str(e)) from e
        if handle.topic != topic:
            raise RecallError("recall failed, topic not match")
        if handle.broker_name != self.broker_name:
            raise RecallError("recall failed, broker service not available")
        try:
            due = int(handle.timestamp_str)
        except ValueError as e:
            raise RecallError("recall failed, timestamp invalid") from e
        now = self.clock()
        if due <= now or due - now >= self.max_delay_ms:
            raise RecallError("recall failed, timestamp invalid (already delivered or too far ahead)")
        await self._scan()  # a message put a moment ago may not be in the heap yet
        key = build_delete_key(topic, handle.message_id)
        if key in self._cancelled:
            raise RecallError("recall failed, message already recalled")
        found: tuple[int, int, int, int] | None = None
        for entry in self._heap:
            if entry[0] != due:
                continue
            ext = self.store.look_message_by_offset(entry[2], entry[3])
            if ext is None:
                continue
            p = ext.properties
            if (
                p.get(MessageConst.REAL_TOPIC) == topic
                and p.get(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == handle.message_id
            ):
                found = entry
                break
        if found is None:
            raise RecallError("recall failed, message not found or already delivered")
        # cancel before the first await so a delivery round starting now skips it
        self._cancelled[key] = due
        marker = Message(
            topic=TIMER_TOPIC,
            body=b"0",
            properties={
                MessageConst.TAGS: "_RECALL_TAG_",
                MessageConst.TIMER_DEL_UNIQKEY: key,
                MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX: handle.message_id,
                MessageConst.TIMER_DELIVER_MS: str(due),
                MessageConst.TIMER_OUT_MS: str(due),
                MessageConst.REAL_TOPIC: topic,
                MessageConst.REAL_QUEUE_ID: "0",
            },
            queue_id=TIMER_QUEUE_ID,
            born_timestamp=now,
        )
        try:
            result = await self.store.put_messages([marker])
        except Exception as e:
            self._cancelled.pop(key, None)
            raise RecallError(f"recall failed, execute error: {e}", ResponseCode.SYSTEM_ERROR) from e
        if not result.ok:
            self._cancelled.pop(key, None)
            raise RecallError(f"recall failed, execute error: {result.status.name}", ResponseCode.SYSTEM_ERROR)
        return handle.message_id

    # -- introspection (admin / tests) ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "pending": len(self._heap),
            "nextDueMs": self.next_due_ms(),
            "progressOffset": self.progress.offset,
            "scanOffset": self._scan_offset,
            "delivered": self.delivered_count,
            "cancelled": self.cancelled_count,
        }
