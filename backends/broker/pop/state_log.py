"""PopStateLog: POP consumption state as records in the commitlog (RocketMQ's revive topic idea).

Records are JSON bodies of messages under ``rmq_sys_REVIVE_LOG_<cluster>`` queue 0, tagged with their
kind. Shapes (offsets are queue offsets of the consumed topic):

* checkpoint ``{"k":"C","g":group,"t":topic,"q":queueId,"n":nextOffset,"e":[[offset,popTime,invisibleTime,attempt,ckOffset],...]}``
  (a pop batch on one queue, a change of invisible time, or where a new group starts: ``e`` empty);
* ack ``{"k":"A","g":..,"t":..,"q":..,"e":[[offset,popTime,invisibleTime],...]}`` (removes the entries
  whose pop time and invisible time match);
* snapshot ``{"k":"S","qs":[[group,topic,queueId,nextOffset,[entries as in C]],...]}`` (one or more
  records contiguous in the log, the first marked ``"first":true,"n":<records>``, the others
  ``"part":true``; a complete snapshot replaces the whole state, one cut short by a crash is ignored;
  a single record without those marks, written when an offset is reset, replaces the queues it lists).
  Written
  at start, at shutdown, every 20,000 records and every 10 minutes while records are written.

Writes go through one ordered writer that appends whatever is waiting in one ``put_messages`` call
(group commit), so the log order is the order in which the service changed its memory. Once a snapshot
is durable, its first record's queue offset is committed as the consumer offset of
``CID_RMQ_SYS_POP_STATE`` on the revive queue: replay starts there (an older position is still correct,
only slower). A position that does not name a first snapshot record (a crash cut the log tail after
the position was saved) makes replay start at the beginning of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from backends.api import BackendError
from backends.model import GetMessageStatus, Message, MessageConst
from backends.remoting.codes import ResponseCode
from backends.store.record import RecordError, decode_record

log = logging.getLogger("rocketmq.broker.pop")

POP_STATE_GROUP = "CID_RMQ_SYS_POP_STATE"
MAX_RECORDS_PER_PUT = 256
REPLAY_BATCH = 32


class PopStateLog:
    def __init__(self, broker: Any, topic: str, queue_id: int) -> None:
        self.broker = broker
        self.topic = topic
        self.queue_id = queue_id
        self.records_since_snapshot = 0
        self.snapshot_running = False
        self.last_snapshot = time.monotonic()
        # (body, kind, future resolved with the record's queue offset, snapshot-start marker)
        self._buf: list[tuple[bytes, str, asyncio.Future[int], bool]] = []
        self._writer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ writing

    def append(self, rec: dict[str, Any]) -> asyncio.Future[int]:
        """Queue ``rec`` for the log now (keeps order); the future resolves when it is durable."""
        self.records_since_snapshot += 1
        return self._enqueue(orjson.dumps(rec), str(rec.get("k", "")), False)

    def _enqueue(self, body: bytes, kind: str, snapshot_start: bool) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._buf.append((body, kind, fut, snapshot_start))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._run(), name="PopStateLogWriter")
        return fut

    async def _run(self) -> None:
        store = self.broker.message_store
        while self._buf:
            batch = self._buf[:MAX_RECORDS_PER_PUT]
            del self._buf[:MAX_RECORDS_PER_PUT]
            msgs = [Message(topic=self.topic, body=body, queue_id=self.queue_id,
                            properties={MessageConst.TAGS: kind or "pop"})
                    for body, kind, _, _ in batch]
            err: BaseException | None = None
            res = None
            try:
                res = await store.put_messages(msgs)
                if not res.ok or len(res.results) != len(batch):
                    err = BackendError(ResponseCode.SYSTEM_ERROR,
                                       f"POP state log write failed: {res.status.name} {res.error}")
            except Exception as e:  # noqa: BLE001 - reported to every waiter
                err = BackendError(ResponseCode.SYSTEM_ERROR, f"POP state log write failed: {e}")
            for i, (_, _, fut, _snap) in enumerate(batch):
                if fut.done():
                    continue
                if err is not None or res is None:
                    fut.set_exception(err or BackendError(ResponseCode.SYSTEM_ERROR, "state log write failed"))
                    # nobody may await a fire-and-forget write: mark the exception retrieved
                    fut.exception()
                else:
                    fut.set_result(res.results[i].queue_offset)

    def append_snapshot(self, recs: list[dict[str, Any]]) -> asyncio.Future[None]:
        """Queue the snapshot records now; the future resolves once replay starts at them."""
        if recs:
            recs = [dict(recs[0], first=True, n=len(recs))] + [dict(r, part=True) for r in recs[1:]]
        futs = [self._enqueue(orjson.dumps(r), "S", i == 0) for i, r in enumerate(recs)]
        self.last_snapshot = time.monotonic()
        self.records_since_snapshot = 0
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finished(_: object) -> None:
            self.snapshot_running = False
            if done.done():
                return
            errs = [f.exception() for f in futs if f.exception() is not None]
            if errs:
                done.set_exception(errs[0] or RuntimeError("snapshot failed"))
                done.exception()
                return
            first = futs[0].result()
            try:
                self.broker.consumer_offset_manager.commit_offset(
                    "POP", POP_STATE_GROUP, self.topic, self.queue_id, first)
            except Exception as e:  # noqa: BLE001
                log.warning("commit of POP snapshot position failed: %s", e)
            done.set_result(None)

        gathered = asyncio.gather(*futs, return_exceptions=True)
        gathered.add_done_callback(finished)
        return done

    async def write_snapshot(self, recs: list[dict[str, Any]]) -> None:
        await self.append_snapshot(recs)

    async def close(self) -> None:
        w = self._writer
        if w is not None and not w.done():
            with contextlib.suppress(Exception):
                await w

    # ------------------------------------------------------------------ replay

    def _is_snapshot_start(self, offset: int) -> bool:
        res = self.broker.message_store.get_messages(self.topic, self.queue_id, offset, 1)
        for rec, qoff in zip(res.records, res.queue_offsets, strict=False):
            if qoff != offset:
                return False
            try:
                obj = orjson.loads(decode_record(rec, check_crc=False).body)
            except (RecordError, orjson.JSONDecodeError):
                return False
            return isinstance(obj, dict) and obj.get("k") == "S" and obj.get("first") is True
        return False

    @staticmethod
    def _collect(obj: dict[str, Any], snap: tuple[list[Any], int] | None,
                 apply: Callable[[dict[str, Any]], None]) -> tuple[list[Any], int] | None:
        """Apply ``obj``; the chunks of a snapshot are gathered and applied as one complete snapshot
        (``{"k":"S","first":true,"qs":[...]}``). A snapshot cut short by a crash is ignored."""
        if obj.get("k") == "S" and obj.get("first") is True:
            qs, left = list(obj.get("qs") or []), int(obj.get("n", 1)) - 1
            if left <= 0:
                apply({"k": "S", "first": True, "qs": qs})
                return None
            return (qs, left)
        if snap is not None:
            if obj.get("k") == "S" and obj.get("part") is True:
                qs, left = snap
                qs.extend(obj.get("qs") or [])
                if left - 1 <= 0:
                    apply({"k": "S", "first": True, "qs": qs})
                    return None
                return (qs, left - 1)
            log.warning("POP state snapshot cut short in the log: ignored")
        apply(obj)
        return None

    async def replay(self, apply: Callable[[dict[str, Any]], None]) -> int:
        """Apply every record from the last snapshot position to the end; returns how many."""
        store = self.broker.message_store
        start = -1
        with contextlib.suppress(Exception):
            start = self.broker.consumer_offset_manager.query_offset(POP_STATE_GROUP, self.topic, self.queue_id)
        min_off = store.get_min_offset_in_queue(self.topic, self.queue_id)
        max_off = store.get_max_offset_in_queue(self.topic, self.queue_id)
        if start is None or start < 0:
            off = min_off
        elif min_off <= start < max_off and self._is_snapshot_start(start):
            off = start
        else:
            # The position does not name the start of a snapshot (a crash lost the log tail after the
            # position was saved, or retention removed it): the whole log is still a correct history.
            log.warning("POP state position %s is not a snapshot in [%d, %d): replaying the whole log",
                        start, min_off, max_off)
            off = min_off
        count = 0
        snap: tuple[list[Any], int] | None = None
        while off < max_off:
            res = store.get_messages(self.topic, self.queue_id, off, REPLAY_BATCH)
            if not res.records:
                if res.next_begin_offset > off:
                    off = res.next_begin_offset
                    continue
                log.error("POP state log unreadable at %s-%d@%d (%s); replay stops", self.topic,
                          self.queue_id, off, res.status.name)
                break
            for rec, qoff in zip(res.records, res.queue_offsets, strict=False):
                if qoff < off:
                    continue
                try:
                    body = decode_record(rec, check_crc=False).body
                    obj = orjson.loads(body)
                    if isinstance(obj, dict):
                        snap = self._collect(obj, snap, apply)
                        count += 1
                except (RecordError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    log.error("bad POP state record at %d skipped: %s", qoff, e)
                off = qoff + 1
            if res.status is not GetMessageStatus.FOUND and res.next_begin_offset <= off:
                break
            off = max(off, res.next_begin_offset)
            if count % 2048 == 0:
                await asyncio.sleep(0)
        self.records_since_snapshot = count
        return count
