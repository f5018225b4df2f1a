"""TransactionalMessageService: half messages, commit/rollback, check-back (RocketMQ's
TransactionalMessageServiceImpl / TransactionalMessageBridge / EndTransactionProcessor, re-thought).

* **Prepare** -- :meth:`prepare` is a put-path hook (registered through
  ``broker.add_put_message_hook`` when the broker offers it): a message with ``TRAN_MSG=true`` is
  rewritten *in place* to ``RMQ_SYS_TRANS_HALF_TOPIC`` queue 0, ``REAL_TOPIC``/``REAL_QID`` set, sysFlag
  TRANSACTION_PREPARED_TYPE. Consumers never see it.
* **End** -- :meth:`end_transaction` (END_TRANSACTION 37, ``Backend.end_transaction``) finds the half
  message by its commitlog offset (or, when that is unknown/-1, by message id among the pending ones),
  checks the producer group and the queue offset, and on COMMIT re-puts the real message through
  ``broker.put_messages`` (sysFlag COMMIT, ``TRAN_MSG``/``REAL_*`` removed, UNIQ_KEY kept,
  preparedTransactionOffset = the half's commitlog offset; a timed transaction message then goes
  through the timer), then writes an op record (``RMQ_SYS_TRANS_OP_HALF_TOPIC``, tag ``d``, body = the
  half's queue offset). ROLLBACK writes only the op record. Ending a half message twice, or one that
  does not exist, raises :class:`TransactionError` (a BackendError, code SYSTEM_ERROR).
* **Check-back** -- every ``transaction_check_interval`` ms, :meth:`check_once` asks the producer group
  about each unresolved half message older than its immunity (``CHECK_IMMUNITY_TIME_IN_SECONDS`` or
  ``transaction_time_out``), via ``await broker.check_transaction_state(group, msg, transaction_id)``
  (``msg`` carries the real topic/queue, the half's offsets and ``TRANSACTION_CHECK_TIMES``). The answer
  arrives as a normal ``end_transaction(from_check=True)``. After ``transaction_check_max`` checks the
  half message is copied to ``TRANS_CHECK_MAX_TIME_TOPIC``, resolved with an op record, and logged.
* **State** -- half and op records live in the commitlog. ``<storePathRootDir>/config/
  transactionProgress.json`` holds the first unresolved half-queue offset, an op-queue offset from which
  every op that matters can be re-read, and the check counts; the pending set is rebuilt from the two
  queues at start, so a restart keeps pending half messages. That file is written with
  ``atomic_write_json`` (fsync, ``.bak``) off the event loop after each check round and at shutdown
  (:class:`~backends.broker.config_manager.CoalescingPersister`), and read from its ``.bak`` when
  missing or corrupt.

Broker wiring::

    self.transaction_service = TransactionalMessageService(self)  # registers prepare as a put hook
    await self.transaction_service.start()        # after message_store.start(); starts the check loop
    await self.transaction_service.end_transaction(producer_group=..., commitlog_offset=..., msg_id=...,
        transaction_id=..., commit=True|False, from_check=..., topic=..., tran_state_table_offset=...)
    await self.transaction_service.shutdown()
    remoting: backends.broker.transaction.processor.register(server, broker)  (END_TRANSACTION 37)
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backends.api import BackendError
from backends.broker.config_manager import CoalescingPersister
from backends.model import (
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    Message,
    MessageConst,
    MessageExt,
    SysFlag,
    string_to_properties,
)
from backends.remoting.codes import ResponseCode
from backends.store import config_file
from backends.store.record import RecordError, check_record, decode_record

log = logging.getLogger("RocketmqTransaction")

TRANS_CHECK_MAX_TIME_TOPIC = "TRANS_CHECK_MAX_TIME_TOPIC"
REMOVE_TAG = "d"
HALF_QUEUE_ID = 0
OP_QUEUE_ID = 0
SCAN_BATCH = 256


class TransactionError(BackendError):
    """END_TRANSACTION refused (unknown or already ended half message, wrong group/offset)."""

    def __init__(self, message: str, code: int = ResponseCode.SYSTEM_ERROR) -> None:
        super().__init__(code, message)

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class HalfInfo:
    commitlog_offset: int
    size: int
    born_timestamp: int
    uniq_key: str
    producer_group: str
    immunity_ms: int  # -1: use transaction_time_out


def _now_ms() -> int:
    return int(time.time() * 1000)


class TransactionalMessageService:
    def __init__(
        self,
        broker: Any,
        clock: Callable[[], int] | None = None,
        check_interval_ms: int | None = None,
    ) -> None:
        self.broker = broker
        self.store = broker.message_store
        self.clock: Callable[[], int] = clock or _now_ms
        self._check_interval_ms = check_interval_ms
        root = getattr(broker.config, "store_path_root_dir", None)
        self.path = os.path.join(root, "config", "transactionProgress.json") if root else None
        self._writer = CoalescingPersister(lambda: self.path or "", self._encode,
                                           name="transactionProgress.json")
        self.half_offset = 0  # first half-queue offset not yet resolved
        self._half_scan = 0  # next half-queue offset to read
        self._op_scan = 0  # next op-queue offset to read
        self.pending: dict[int, HalfInfo] = {}  # half queue offset -> info (scanned, unresolved)
        self._by_uniq: dict[str, int] = {}
        self.resolved: dict[int, int] = {}  # half queue offset (>= half_offset) -> op queue offset
        self._resolving: set[int] = set()
        self.check_times: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._started = False
        self.discarded_count = 0
        add_hook = getattr(broker, "add_put_message_hook", None)
        if callable(add_hook):
            add_hook(self.prepare)

    # -- config --------------------------------------------------------------------------------------

    def _cfg(self, name: str, default: int) -> int:
        return int(getattr(self.broker.config, name, default))

    @property
    def transaction_timeout_ms(self) -> int:
        return self._cfg("transaction_time_out", self._cfg("transaction_timeout", 6000))

    @property
    def check_interval_ms(self) -> int:
        if self._check_interval_ms is not None:
            return self._check_interval_ms
        return self._cfg("transaction_check_interval", 30000)

    @property
    def check_max(self) -> int:
        return self._cfg("transaction_check_max", 15)

    # -- put path ------------------------------------------------------------------------------------

    def prepare(self, msg: Message) -> Message:
        """Put-path hook: a ``TRAN_MSG=true`` message becomes a half message (in place)."""
        if msg.properties.get(MessageConst.TRANSACTION_PREPARED) != "true" or msg.topic == TRANS_HALF_TOPIC:
            return msg
        tran = msg.sys_flag & SysFlag.TRANSACTION_MASK
        if tran in (SysFlag.TRANSACTION_COMMIT_TYPE, SysFlag.TRANSACTION_ROLLBACK_TYPE):
            return msg
        msg.properties[MessageConst.REAL_TOPIC] = msg.topic
        msg.properties[MessageConst.REAL_QUEUE_ID] = str(msg.queue_id)
        msg.sys_flag = (msg.sys_flag & ~SysFlag.TRANSACTION_MASK) | SysFlag.TRANSACTION_PREPARED_TYPE
        msg.topic = TRANS_HALF_TOPIC
        msg.queue_id = HALF_QUEUE_ID
        return msg

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self, run_loop: bool = True) -> None:
        if self._started:
            return
        self._started = True
        self._load()
        min_half = self.store.get_min_offset_in_queue(TRANS_HALF_TOPIC, HALF_QUEUE_ID)
        self.half_offset = max(self.half_offset, min_half)
        self._half_scan = self.half_offset
        min_op = self.store.get_min_offset_in_queue(TRANS_OP_HALF_TOPIC, OP_QUEUE_ID)
        self._op_scan = max(self._op_scan, min_op)
        await self._scan_ops()
        await self._scan_halves()
        self._advance()
        log.info(
            "transaction service started: %d pending half messages, half offset %d, op offset %d",
            len(self.pending), self.half_offset, self._op_scan,
        )
        if run_loop:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="transaction-check")

    async def reload(self) -> None:
        """The commitlog was cut back (a deposed master rejoining as a slave): read the half and op queues
        again, forgetting what was read past the cut."""
        end = self.store.get_max_offset_in_queue(TRANS_HALF_TOPIC, HALF_QUEUE_ID)
        self.half_offset = max(min(self.half_offset, end),
                               self.store.get_min_offset_in_queue(TRANS_HALF_TOPIC, HALF_QUEUE_ID))
        self._half_scan = self.half_offset
        self._op_scan = self.store.get_min_offset_in_queue(TRANS_OP_HALF_TOPIC, OP_QUEUE_ID)
        self.pending, self._by_uniq, self.resolved, self._resolving = {}, {}, {}, set()
        await self._scan_ops()
        await self._scan_halves()
        self._advance()

    def set_running(self, on: bool) -> None:
        """Check orphaned half messages (a master) or not (a slave)."""
        if on and self._task is None and self._started:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="transaction-check")
        elif not on and self._task is not None:
            self._task.cancel()
            self._task = None

    async def shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5.0)
            except TimeoutError:
                self._task.cancel()
            except Exception:  # pragma: no cover
                log.exception("transaction check task failed")
            self._task = None
        if self._started:
            self._advance()
            if self.path:
                await self._writer.flush()

    async def _run(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.check_interval_ms / 1000.0)
                return
            except TimeoutError:
                pass
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("transaction check round failed")

    # -- persistence ---------------------------------------------------------------------------------

    def _load(self) -> None:
        if not self.path:
            return
        try:
            data = config_file.read_json(self.path)  # the file, else its .bak (a crash between renames)
            if data is None:
                return
            self.half_offset = int(data.get("halfOffset", 0))
            self._op_scan = int(data.get("opOffset", 0))
            self.check_times = {int(k): int(v) for k, v in (data.get("checkTimes") or {}).items()}
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.error("cannot read %s (%s); rescanning the transaction queues", self.path, e)
            self.half_offset, self._op_scan, self.check_times = 0, 0, {}

    def _encode(self) -> dict[str, Any]:
        op_from = min(self.resolved.values(), default=self._op_scan)
        return {
            "halfOffset": self.half_offset,
            "opOffset": min(op_from, self._op_scan),
            "checkTimes": {str(k): v for k, v in self.check_times.items() if k >= self.half_offset},
        }

    def _persist(self) -> None:
        """Write the progress: off the event loop when one runs (coalesced), else at once. A failed
        write is logged; the next round writes again."""
        if self.path:
            self._writer.request()

    # -- scanning ------------------------------------------------------------------------------------

    async def _read_queue(self, topic: str, start: int) -> tuple[list[tuple[int, bytes]], int]:
        out: list[tuple[int, bytes]] = []
        off = start
        n = 0
        while True:
            if off >= self.store.get_max_offset_in_queue(topic, 0):
                return out, off
            res = self.store.get_messages(topic, 0, off, SCAN_BATCH)
            if not res.records:
                if res.next_begin_offset > off:
                    log.warning("%s offsets %d..%d unreadable (%s); skipped", topic, off,
                                res.next_begin_offset - 1, res.status.name)
                    off = res.next_begin_offset
                    continue
                return out, off
            for rec, qoff in zip(res.records, res.queue_offsets, strict=False):
                if qoff >= off:
                    out.append((qoff, rec))
            off = max(off, res.queue_offsets[-1] + 1)
            n += len(res.records)
            if n >= SCAN_BATCH:
                n = 0
                await asyncio.sleep(0)

    async def _scan_ops(self) -> None:
        records, self._op_scan = await self._read_queue(TRANS_OP_HALF_TOPIC, self._op_scan)
        for op_off, rec in records:
            try:
                half_off = int(decode_record(rec, check_crc=False).body.decode().strip())
            except (RecordError, ValueError, UnicodeDecodeError) as e:
                log.warning("op record %d unreadable (%s); ignored", op_off, e)
                continue
            if half_off >= self.half_offset:
                self.resolved.setdefault(half_off, op_off)
                info = self.pending.pop(half_off, None)
                if info is not None:
                    self._by_uniq.pop(info.uniq_key, None)

    async def _scan_halves(self) -> None:
        records, self._half_scan = await self._read_queue(TRANS_HALF_TOPIC, self._half_scan)
        for half_off, rec in records:
            if half_off in self.resolved or half_off in self.pending:
                continue
            try:
                view = check_record(rec, 0, check_crc=False)
                born = int.from_bytes(rec[40:48], "big", signed=True)  # bornTimestamp i64 at 40
                if born <= 0:
                    born = view.store_timestamp
            except (RecordError, ValueError) as e:
                log.error("half message %d unreadable (%s); treated as resolved", half_off, e)
                self.resolved[half_off] = self._op_scan
                continue
            props = string_to_properties(view.properties)
            try:
                immunity = int(props.get(MessageConst.CHECK_IMMUNITY_TIME_IN_SECONDS, "-1")) * 1000
            except ValueError:
                immunity = -1
            if immunity < 0:
                immunity = -1
            info = HalfInfo(
                commitlog_offset=view.physical_offset,
                size=view.total_size,
                born_timestamp=born,
                uniq_key=props.get(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX, ""),
                producer_group=props.get(MessageConst.PRODUCER_GROUP, ""),
                immunity_ms=immunity,
            )
            self.pending[half_off] = info
            if info.uniq_key:
                self._by_uniq[info.uniq_key] = half_off
            ct = props.get(MessageConst.TRANSACTION_CHECK_TIMES)
            if ct is not None and half_off not in self.check_times:
                try:
                    self.check_times[half_off] = int(ct)
                except ValueError:
                    pass

    def _advance(self) -> None:
        low = min(self.pending, default=self._half_scan)
        low = min(low, self._half_scan)
        if self._resolving:
            low = min(low, min(self._resolving))
        if low > self.half_offset:
            self.half_offset = low
            for k in [k for k in self.resolved if k < low]:
                del self.resolved[k]
            for k in [k for k in self.check_times if k < low]:
                del self.check_times[k]

    # -- end transaction -----------------------------------------------------------------------------

    async def _find_half(self, commitlog_offset: int, msg_id: str) -> MessageExt:
        ext: MessageExt | None = None
        if commitlog_offset is not None and commitlog_offset >= 0:
            try:
                ext = self.store.look_message_by_offset(commitlog_offset)
            except Exception as e:  # noqa: BLE001 - a bad offset from a client
                log.warning("look up half message at %d failed: %s", commitlog_offset, e)
                ext = None
        elif msg_id:
            half_off = self._by_uniq.get(msg_id)
            if half_off is None:  # sent a moment ago: read the queues up to now
                await self._scan_ops()
                await self._scan_halves()
                half_off = self._by_uniq.get(msg_id)
            if half_off is not None:
                info = self.pending[half_off]
                ext = self.store.look_message_by_offset(info.commitlog_offset, info.size)
        if ext is None or ext.topic != TRANS_HALF_TOPIC:
            raise TransactionError("Find prepared transaction message failed")
        return ext

    async def end_transaction(
        self,
        producer_group: str,
        commitlog_offset: int,
        msg_id: str,
        transaction_id: str,
        commit: bool,
        from_check: bool,
        topic: str = "",
        tran_state_table_offset: int = -1,
    ) -> None:
        """Commit or roll back the half message at ``commitlog_offset`` (or, if that is -1, the pending
        half message whose UNIQ_KEY is ``msg_id``)."""
        ext = await self._find_half(commitlog_offset, msg_id)
        half_off = ext.queue_offset
        props = ext.properties
        pgroup = props.get(MessageConst.PRODUCER_GROUP, "")
        if producer_group and pgroup and pgroup != producer_group:
            raise TransactionError("The producer group wrong")
        if tran_state_table_offset is not None and tran_state_table_offset >= 0 and tran_state_table_offset != half_off:
            raise TransactionError("The transaction state table offset wrong")
        if topic and props.get(MessageConst.REAL_TOPIC) not in (None, topic):
            raise TransactionError("The topic of the half message does not match")
        if half_off < self.half_offset or half_off in self.resolved or half_off in self._resolving:
            raise TransactionError(f"The transaction of message {msg_id or ext.msg_id} has already ended")
        self._resolving.add(half_off)
        try:
            if commit:
                real = self._real_message(ext)
                result = await self.broker.put_messages([real])
                if not result.ok:
                    raise TransactionError(
                        f"commit of transaction message failed: {result.status.name} {result.error}".strip()
                    )
            await self._write_op(half_off)
        finally:
            self._resolving.discard(half_off)
        log.debug(
            "transaction %s of %s %s%s", transaction_id or msg_id, pgroup,
            "committed" if commit else "rolled back", " (from check)" if from_check else "",
        )

    def _real_message(self, ext: MessageExt) -> Message:
        props = dict(ext.properties)
        topic = props.pop(MessageConst.REAL_TOPIC, "")
        try:
            qid = int(props.pop(MessageConst.REAL_QUEUE_ID, "0"))
        except ValueError:
            qid = 0
        props.pop(MessageConst.TRANSACTION_PREPARED, None)
        props.pop(MessageConst.TRANSACTION_CHECK_TIMES, None)
        if not topic:
            raise TransactionError("the half message has no REAL_TOPIC")
        return Message(
            topic=topic,
            body=ext.body,
            properties=props,
            flag=ext.flag,
            queue_id=qid,
            sys_flag=(ext.sys_flag & ~SysFlag.TRANSACTION_MASK) | SysFlag.TRANSACTION_COMMIT_TYPE,
            born_timestamp=ext.born_timestamp,
            born_host=ext.born_host,
            reconsume_times=ext.reconsume_times,
            prepared_transaction_offset=ext.commitlog_offset,
        )

    async def _write_op(self, half_off: int) -> None:
        op = Message(
            topic=TRANS_OP_HALF_TOPIC,
            body=str(half_off).encode(),
            properties={MessageConst.TAGS: REMOVE_TAG},
            queue_id=OP_QUEUE_ID,
            born_timestamp=self.clock(),
        )
        result = await self.store.put_messages([op])
        if not result.ok:
            raise TransactionError(f"writing the transaction op record failed: {result.status.name}")
        op_off = result.results[0].queue_offset if result.results else self._op_scan
        self.resolved[half_off] = op_off
        info = self.pending.pop(half_off, None)
        if info is not None:
            self._by_uniq.pop(info.uniq_key, None)
        self._advance()

    # -- check-back ----------------------------------------------------------------------------------

    async def check_once(self) -> int:
        """One check round; returns how many producers were asked."""
        await self._scan_ops()
        await self._scan_halves()
        if getattr(self.broker.config, "is_slave", False):
            return 0
        now = self.clock()
        asked = 0
        for half_off in sorted(self.pending):
            info = self.pending.get(half_off)
            if info is None or half_off in self._resolving:
                continue
            immunity = info.immunity_ms if info.immunity_ms >= 0 else self.transaction_timeout_ms
            if now - info.born_timestamp < immunity:
                continue
            ext = self.store.look_message_by_offset(info.commitlog_offset, info.size)
            if ext is None:
                log.error("half message %d is gone from the commitlog; resolved", half_off)
                await self._write_op(half_off)
                continue
            times = self.check_times.get(half_off, 0)
            if times >= self.check_max:
                await self._discard(half_off, ext, times)
                continue
            times += 1
            self.check_times[half_off] = times
            check_msg = self._check_message(ext, times)
            tid = ext.properties.get(MessageConst.TRANSACTION_ID) or info.uniq_key
            try:
                await self.broker.check_transaction_state(info.producer_group, check_msg, tid)
                asked += 1
            except Exception as e:  # noqa: BLE001
                log.warning("check transaction state of %s in %s failed: %s", tid, info.producer_group, e)
        self._advance()
        self._persist()
        return asked

    def _check_message(self, ext: MessageExt, times: int) -> MessageExt:
        props = dict(ext.properties)
        props[MessageConst.TRANSACTION_CHECK_TIMES] = str(times)
        try:
            qid = int(props.get(MessageConst.REAL_QUEUE_ID, "0"))
        except ValueError:
            qid = 0
        return MessageExt(
            topic=props.get(MessageConst.REAL_TOPIC, ext.topic),
            body=ext.body,
            properties=props,
            flag=ext.flag,
            queue_id=qid,
            sys_flag=ext.sys_flag,
            born_timestamp=ext.born_timestamp,
            born_host=ext.born_host,
            reconsume_times=ext.reconsume_times,
            prepared_transaction_offset=ext.prepared_transaction_offset,
            queue_offset=ext.queue_offset,
            commitlog_offset=ext.commitlog_offset,
            store_size=ext.store_size,
            store_timestamp=ext.store_timestamp,
            store_host=ext.store_host,
            body_crc=ext.body_crc,
        )

    async def _discard(self, half_off: int, ext: MessageExt, times: int) -> None:
        log.warning(
            "half message %s (producer group %s) checked %d times without an answer; discarded to %s",
            ext.properties.get(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX, ext.msg_id),
            ext.properties.get(MessageConst.PRODUCER_GROUP, ""), times, TRANS_CHECK_MAX_TIME_TOPIC,
        )
        props = dict(ext.properties)
        props[MessageConst.TRANSACTION_CHECK_TIMES] = str(times)
        copy = Message(
            topic=TRANS_CHECK_MAX_TIME_TOPIC,
            body=ext.body,
            properties=props,
            flag=ext.flag,
            queue_id=0,
            sys_flag=ext.sys_flag & ~SysFlag.TRANSACTION_MASK,
            born_timestamp=ext.born_timestamp,
            born_host=ext.born_host,
        )
        result = await self.store.put_messages([copy])
        if not result.ok:
            log.error("putting half message to %s failed: %s", TRANS_CHECK_MAX_TIME_TOPIC, result.status.name)
            return
        await self._write_op(half_off)
        self.discarded_count += 1

    def stats(self) -> dict[str, Any]:
        return {
            "pending": len(self.pending),
            "halfOffset": self.half_offset,
            "halfScan": self._half_scan,
            "opScan": self._op_scan,
            "discarded": self.discarded_count,
        }
