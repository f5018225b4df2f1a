"""MessageStore: the broker's storage engine (RocketMQ's DefaultMessageStore).

Layout under ``store_path_root_dir``: ``commitlog/`` (segments named by 20-digit start offset; or the
directory ``store_path_commit_log`` names),
``consumequeue/<topic>/<queueId>/``, ``index/``, ``checkpoint``, ``abort`` (present while running: an
unclean stop leaves it behind) and ``lock``.

Write path (one asyncio event loop): ``put_messages`` encodes the whole batch into RocketMQ records,
writes it with one ``pwrite`` per segment touched, dispatches the consume-queue entries and index keys at
once, then answers per the flush policy (:mod:`backends.store.flush`). Reads are synchronous ``pread``s.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import shutil
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from backends.model import (
    AppendResults,
    GetMessageResult,
    GetMessageStatus,
    Message,
    MessageConst,
    MessageExt,
    PutMessageResult,
    PutMessageStatus,
    SysFlag,
)
from backends.store.checkpoint import CheckpointData, StoreCheckpoint
from backends.store.commitlog import CommitLog
from backends.store.config_file import fsync_dir
from backends.store.consume_queue import CQ_ENTRY, CQ_ENTRY_SIZE, ConsumeQueue
from backends.store.flush import FlushService
from backends.store.index import IndexService, full_key
from backends.store.record import (
    _BLANK,
    _HEAD_V4,
    BLANK_MAGIC_CODE,
    END_FILE_MIN_BLANK_LENGTH,
    MAX_PROPERTIES_LENGTH,
    MESSAGE_MAGIC_CODE,
    MESSAGE_MAGIC_CODE_V2,
    RecordError,
    RecordView,
    _ip_cache,
    crc32,
    decode_record,
    encode_record,
    ip_bytes,
    property_of,
    store_timestamp_of,
    stored_record_ok,
    tags_code,
)

log = logging.getLogger("rocketmq.store")

_I16 = struct.Struct(">h")
# _HEAD_V4 with born host, store timestamp and store host as one 24-byte field (packed by _hosts_pack)
_head_pack = struct.Struct(">iiiiiqqiq24siqi").pack
_hosts_pack = struct.Struct(">4siq4si").pack
assert struct.calcsize(">iiiiiqqiq24siqi") == _HEAD_V4.size
_cq_pack = CQ_ENTRY.pack
_i16_pack = _I16.pack
_NOT_HOST_V6 = ~(SysFlag.BORNHOST_V6 | SysFlag.STOREHOST_V6)
_TAGS = MessageConst.TAGS
_KEYS = MessageConst.KEYS
_UNIQ = MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX


@dataclass(slots=True)
class MessageStoreConfig:
    """Store keys of broker.conf (RocketMQ's MessageStoreConfig), snake_case here."""

    store_path_root_dir: str
    store_path_commit_log: str = ""  # the commitlog's directory; "" = <store_path_root_dir>/commitlog
    store_host: tuple[str, int] = ("127.0.0.1", 10911)
    mapped_file_size_commit_log: int = 1024 * 1024 * 1024
    mapped_file_size_consume_queue: int = 300_000 * 20
    flush_disk_type: str = "ASYNC_FLUSH"  # or SYNC_FLUSH
    flush_interval_commit_log: int = 500  # ms
    sync_flush_timeout: int = 5000  # ms
    file_reserved_time: int = 48  # hours
    delete_when: str = "04"  # hour(s) of day, "04;16" allowed
    disk_max_used_space_ratio: int = 75  # percent
    max_message_size: int = 4 * 1024 * 1024
    message_index_enable: bool = True
    max_transfer_count_on_message_in_memory: int = 32
    # percent of RAM: a message at most this far from the commitlog's end counts as "in memory"
    access_message_in_memory_max_ratio: int = 40
    # Test hook: simulate_power_loss() drops every commitlog byte past the last fdatasync'ed offset
    # (and consume-queue entries past the last checkpoint), as a crash of the machine would
    # (proves SYNC_FLUSH loses nothing acknowledged, ASYNC_FLUSH can).
    power_loss_test_mode: bool = False
    # --- additions (defaults as RocketMQ) ---
    flush_interval_consume_queue: int = 1000  # ms: consume queues + index msync and checkpoint
    max_transfer_bytes_on_message_in_memory: int = 256 * 1024
    max_hash_slot_num: int = 5_000_000
    max_index_num: int = 5_000_000 * 4
    clean_resource_interval: int = 10_000  # ms between retention / disk checks
    recover_last_files: int = 3  # unclean stop without a usable checkpoint: scan the last N files
    max_filter_message_count: int = 16_000  # consume-queue entries scanned per get_messages
    # Unclean start: rebuild the key index of the recovered records in the background after start (as
    # RocketMQ's dispatcher does), so that start only waits for the log check and the consume queues.
    # query_message may miss keys of those records until wait_index_rebuilt() returns.
    rebuild_index_in_background: bool = True
    # SYNC_FLUSH: the flush thread needs the GIL back after each fdatasync; with CPython's default 5 ms
    # switch interval a busy event loop keeps it waiting and the disk idles. start() lowers the
    # process-wide sys.setswitchinterval to this many microseconds (0 = leave it alone).
    sync_flush_switch_interval_us: int = 200
    # Reserve the blocks of memory-mapped consume-queue and index files when they are created
    # (posix_fallocate): a write through a mapping into a hole of a full disk is SIGBUS. Off by default
    # (files are sparse, as RocketMQ's); the disk_max_used_space_ratio check keeps space in hand.
    preallocate_mapped_files: bool = False


# Called after a batch is durable per the flush policy and dispatched to the consume queues:
# (topic, queue_id, last queue offset written + 1) -- wakes long-polling consumers.
ArrivalListener = Callable[[str, int, int], None]


def _index_keys(uniq: str | None, keys: str | None) -> list[str]:
    """The index keys of one message: its KEYS (space separated, empty ones skipped), then its UNIQ_KEY."""
    out = [k for k in keys.split(" ") if k] if keys else []
    if uniq:
        out.append(uniq)
    return out


def _local_hour(ms: int) -> int:
    return time.localtime(ms / 1000).tm_hour


class ReplicaError(Exception):
    """Commitlog bytes from the master that do not continue this store's log (HA: the slave drops the
    connection and reports its offset again)."""


class MessageStore:
    def __init__(
        self,
        config: MessageStoreConfig,
        *,
        clock: Callable[[], int] | None = None,
        fsync: Callable[[int], None] | None = None,
        disk_usage: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (ms since epoch: store timestamps, retention), ``fsync`` (fdatasync of one fd) and
        ``disk_usage`` (percent of the store's disk in use) are injectable for tests."""
        self.config = config
        root = config.store_path_root_dir
        self.root = root
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._fsync = fsync or os.fdatasync
        self._disk_usage = disk_usage or self._real_disk_usage
        commitlog_dir = os.path.expanduser(config.store_path_commit_log) or os.path.join(root, "commitlog")
        self.commitlog = CommitLog(commitlog_dir, config.mapped_file_size_commit_log)
        self._cq_root = os.path.join(root, "consumequeue")
        self._cq_per_file = max(1, config.mapped_file_size_consume_queue // CQ_ENTRY_SIZE)
        self._cqs: dict[tuple[str, int], ConsumeQueue] = {}
        self.index = IndexService(os.path.join(root, "index"), config.max_hash_slot_num, config.max_index_num,
                                  config.preallocate_mapped_files)
        self._listeners: list[ArrivalListener] = []
        self._write_listeners: list[Callable[[int], None]] = []  # HA: new commitlog write position
        self._replica_tail = bytearray()  # slave: bytes of a record the master has not finished sending
        self._replica = False  # slave: this store has taken commitlog bytes from a master
        self._sync = config.flush_disk_type.upper() == "SYNC_FLUSH"
        self._flush: FlushService | None = None
        self._checkpoint: StoreCheckpoint | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._disk_full = False
        self._last_store_ts = 0
        self._lock_fd = -1
        self._abort_path = os.path.join(root, "abort")
        self._topic_bytes: dict[str, bytes] = {}
        self._store_ip = ip_bytes(config.store_host[0])
        self._store_port = config.store_host[1]
        self._msg_id_prefix = (self._store_ip + struct.pack(">i", self._store_port)).hex().upper()
        # write path state: batches encoded but not yet written (see put_messages / _drain)
        self._enc_pos = 0
        self._pend_start = 0
        self._pend_parts: list[bytes] = []
        self._pend_chunks: list[tuple[int, list[bytes]]] = []
        # consume-queue entries of the pending batches, packed, per queue: (first queue offset, entries)
        self._pend_cq: dict[tuple[str, int], tuple[int, bytearray]] = {}
        self._pend_count = 0  # messages pending
        self._pend_index: list[tuple[str, int, int]] = []  # (index full key, phy, store ts)
        self._turn_now = 0  # store timestamp of the batches encoded in this event-loop iteration
        self._tag_codes: dict[str | None, int] = {None: 0, "": 0}
        self._next_qoff: dict[tuple[str, int], int] = {}
        self._drain_fut: asyncio.Future[PutMessageStatus] | None = None
        self._drain_error = ""
        self._closed = False
        self._early_drain = 16 if self._sync else 1 << 30  # pending messages that trigger a drain now
        self._index_in_recovery = True  # recovery scan also writes index keys
        self._index_rebuild: tuple[int, int] | None = None  # [from, to) still to index after start
        self._index_rebuilt = asyncio.Event()
        self.recovered_unclean = False  # observability: what the last start did
        self.recovery_scanned_bytes = 0

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load files; recover (abort file present -> full CRC scan from the checkpoint, torn tail cut)."""
        if not os.path.isdir(self.root):
            os.makedirs(self.root)
            fsync_dir(os.path.dirname(os.path.abspath(self.root)), best_effort=False)
        self._lock_fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise RuntimeError(f"store {self.root} is locked by another process") from None
        await asyncio.get_running_loop().run_in_executor(None, self._load_and_recover)
        self._flush = FlushService(self._sync_commitlog, lambda: self.commitlog.write_pos,
                                   self.commitlog.write_pos, self.config.sync_flush_timeout)
        with open(self._abort_path, "wb") as f:
            os.fsync(f.fileno())
        fsync_dir(self.root)
        self._enc_pos = self._pend_start = self.commitlog.write_pos
        self._closed = False
        if self._sync and self.config.sync_flush_switch_interval_us > 0:
            want = self.config.sync_flush_switch_interval_us / 1e6
            if sys.getswitchinterval() > want:
                log.info("store: sys.setswitchinterval(%g) so the flush thread is not held off by the GIL", want)
                sys.setswitchinterval(want)
        self._running = True
        self._check_disk()
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="store-flush"))
        self._tasks.append(asyncio.create_task(self._clean_loop(), name="store-clean"))
        if self._index_rebuild is not None:
            self._tasks.append(asyncio.create_task(self._rebuild_index(), name="store-index-rebuild"))
        else:
            self._index_rebuilt.set()

    def _index_view(self, v: RecordView) -> None:
        entries: list[tuple[str, int, int]] = []
        self._index_entries(v, entries)
        if entries:
            self.index.put_many(entries)

    @staticmethod
    def _index_entries(v: RecordView, out: list[tuple[str, int, int]]) -> None:
        """The index entries of a recovered record, appended to ``out``."""
        props = v.properties
        for k in _index_keys(property_of(props, _UNIQ) if "UNIQ_KEY\x01" in props else None,
                             property_of(props, _KEYS) if "KEYS\x01" in props else None):
            out.append((full_key(v.topic, k), v.physical_offset, v.store_timestamp))

    def _index_step(self, window: int = 4 * 1024 * 1024) -> bool:
        """Index the next window of recovered records; False when done."""
        if self._index_rebuild is None:
            return False
        pos, end = self._index_rebuild
        if pos >= end or self._closed:
            self._index_rebuild = None
            return False
        entries: list[tuple[str, int, int]] = []
        nxt = self.commitlog.scan(pos, lambda v: self._index_entries(v, entries), check_crc=False,
                                  stop=min(end, pos + window))
        self.index.put_many(entries)
        if nxt <= pos:  # removed by retention meanwhile, or unreadable: nothing more to index
            self._index_rebuild = None
            return False
        self._index_rebuild = (nxt, end)
        return True

    async def _rebuild_index(self) -> None:
        t0 = time.monotonic()
        assert self._index_rebuild is not None
        total = self._index_rebuild[1] - self._index_rebuild[0]
        try:
            while self._index_step():
                await asyncio.sleep(0)
            log.info("recovery: index rebuilt for %d bytes of records in %.2f s", total, time.monotonic() - t0)
        finally:
            if self._index_rebuild is None:
                self._index_rebuilt.set()

    async def wait_index_rebuilt(self) -> None:
        """Returns once the keys of records recovered at start are in the index."""
        await self._index_rebuilt.wait()

    def _load_and_recover(self) -> None:
        t0 = time.monotonic()
        unclean = os.path.exists(self._abort_path)
        self._checkpoint = cp = StoreCheckpoint(os.path.join(self.root, "checkpoint"))
        cl = self.commitlog
        cl.load()
        self._load_consume_queues()
        if self.config.message_index_enable:
            self.index.load()
        last_end = cl.segments[-1].start + cl.file_size if cl.segments else 0
        d = cp.data
        if not unclean and not cl.segments:
            self.recovered_unclean = False  # a new store
        elif (not unclean and cp.loaded and d.clean_max_phy_offset >= 0
                and cl.min_offset <= d.clean_max_phy_offset <= last_end):
            # clean stop: trust the checkpoint, no scan
            cl.write_pos = d.clean_max_phy_offset
            if cl.segments and cl.write_pos < cl.min_offset:
                cl.write_pos = cl.min_offset
            for cq in self._cqs.values():
                cq.truncate_from_phy(cl.write_pos)
            self.recovered_unclean = False
            self.recovery_scanned_bytes = 0
        else:
            self.recovered_unclean = True
            if not cl.segments:
                start = 0
            elif cp.loaded and cl.min_offset <= d.dispatched_phy_offset <= last_end:
                start = d.dispatched_phy_offset
            else:
                first = max(0, len(cl.segments) - self.config.recover_last_files)
                start = cl.segments[first].start
                log.warning("recovery: no usable checkpoint; scanning the last %d commitlog files from %d",
                            len(cl.segments) - first, start)
            log.warning("recovery: unclean stop detected (abort file present: %s); verifying the commitlog "
                        "from offset %d", unclean, start)
            for cq in self._cqs.values():
                cq.truncate_from_phy(start, zero=False)  # rewritten by the scan; zeroed past the end below
            self._index_in_recovery = not (self.config.rebuild_index_in_background
                                           and self.config.message_index_enable)
            end = cl.scan(start, self._dispatch_view) if cl.segments else 0
            if not self._index_in_recovery and end > start:
                self._index_rebuild = (start, end)
            if cl.segments:
                cl.write_pos = end
                cl.truncate(end)
            for cq in self._cqs.values():
                cq.cut(cq.max_offset)  # whatever lies past the rebuilt entries is stale
            self.recovery_scanned_bytes = end - start
            log.warning("recovery: commitlog verified up to %d (%d bytes scanned) in %.2f s",
                        end, end - start, time.monotonic() - t0)
        for cq in self._cqs.values():
            cq.correct_min_offset(cl.min_offset)
            cq.flush()
        self.index.flush()
        if cl.segments:
            for seg in cl.segments[-2:]:
                os.fsync(seg.fd)
        cp.write(CheckpointData(
            physic_msg_timestamp=d.physic_msg_timestamp, logics_msg_timestamp=d.logics_msg_timestamp,
            index_msg_timestamp=d.index_msg_timestamp, flushed_phy_offset=cl.write_pos,
            dispatched_phy_offset=cl.write_pos, clean_max_phy_offset=-1))

    def _load_consume_queues(self) -> None:
        if not os.path.isdir(self._cq_root):
            return
        for topic in os.listdir(self._cq_root):
            tdir = os.path.join(self._cq_root, topic)
            if not os.path.isdir(tdir):
                continue
            for q in os.listdir(tdir):
                if not q.lstrip("-").isdigit():
                    continue
                cq = ConsumeQueue(self._cq_root, topic, int(q), self._cq_per_file,
                                  self.config.preallocate_mapped_files)
                cq.load()
                self._cqs[(topic, int(q))] = cq

    def _dispatch_view(self, v: RecordView, index_now: bool = True) -> None:
        """Recovery (and a slave's replica): the consume queue entry and index keys of a verified record."""
        props = v.properties
        tag = property_of(props, _TAGS) if "TAGS\x01" in props else None
        self._cq(v.topic, v.queue_id).put(v.queue_offset, v.physical_offset, v.total_size,
                                          tags_code(tag) if tag else 0)
        if index_now and self._index_in_recovery and self.config.message_index_enable:
            self._index_view(v)
        self._last_store_ts = v.store_timestamp

    async def shutdown(self) -> None:
        """Flush everything, write the checkpoint, remove the abort file."""
        if not self._running:
            return
        self._running = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        flush = self._flush
        assert flush is not None and self._checkpoint is not None
        if self._drain_fut is not None:
            self._drain()
        while self._index_step():  # a clean checkpoint promises the index is complete
            pass
        self._index_rebuilt.set()
        status = await flush.flush()
        clean = status is PutMessageStatus.PUT_OK and flush.flushed_pos >= self.commitlog.write_pos
        cqs = list(self._cqs.values())
        await flush.run_blocking(lambda: self._flush_queues(cqs))
        if clean:
            end = self.commitlog.write_pos
            ts = self._last_store_ts
            data = CheckpointData(physic_msg_timestamp=ts, logics_msg_timestamp=ts, index_msg_timestamp=ts,
                                  flushed_phy_offset=end, dispatched_phy_offset=end, clean_max_phy_offset=end)
            await flush.run_blocking(lambda: self._checkpoint.write(data) if self._checkpoint else None)
        else:
            log.error("shutdown: the commitlog could not be flushed (%s); leaving the abort file so the next "
                      "start verifies it", status.name)
        self._close_files()
        flush.close()
        if clean:
            try:
                os.unlink(self._abort_path)
            except FileNotFoundError:
                pass
            fsync_dir(self.root)
        self._release_lock()

    def _close_files(self) -> None:
        self._closed = True
        for cq in self._cqs.values():
            cq.close()
        self._cqs.clear()
        self.index.close()
        self.commitlog.close()
        if self._checkpoint is not None:
            self._checkpoint.close()

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # --- durability ----------------------------------------------------------------------------
    def _sync_commitlog(self, start: int, end: int) -> None:
        """fdatasync every segment holding bytes of [start, end) (runs on the flush thread)."""
        fs = self.commitlog.file_size
        for seg in list(self.commitlog.segments):
            if seg.start < end and seg.start + fs > start and seg.fd >= 0:
                self._fsync(seg.fd)

    def _flush_queues(self, cqs: list[ConsumeQueue]) -> None:
        for cq in cqs:
            cq.flush()
        self.index.flush()

    async def _checkpoint_once(self) -> None:
        flush = self._flush
        assert flush is not None
        end = self.commitlog.write_pos
        if self._index_rebuild is not None:  # records before this are not all in the index yet
            end = min(end, self._index_rebuild[0])
        ts = self._last_store_ts
        status = await flush.flush()
        if status is not PutMessageStatus.PUT_OK:
            return
        cqs = list(self._cqs.values())
        await flush.run_blocking(lambda: self._flush_queues(cqs))
        cp = self._checkpoint
        if cp is None or not self._running:
            return
        data = CheckpointData(physic_msg_timestamp=ts, logics_msg_timestamp=ts, index_msg_timestamp=ts,
                              flushed_phy_offset=flush.flushed_pos, dispatched_phy_offset=end)
        await flush.run_blocking(lambda: cp.write(data))

    async def _flush_loop(self) -> None:
        interval = max(1, self.config.flush_interval_commit_log) / 1000
        cp_every = max(1, self.config.flush_interval_consume_queue) / 1000
        last_cp = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                if not self._sync or self._replica:
                    await self._flush.flush()  # type: ignore[union-attr]
                if time.monotonic() - last_cp >= cp_every:
                    last_cp = time.monotonic()
                    await self._checkpoint_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("store: periodic flush failed")

    async def flush_now(self) -> PutMessageStatus:
        """Flush the commitlog, consume queues and index and write the checkpoint (tests, admin)."""
        assert self._flush is not None
        await self._checkpoint_once()
        return PutMessageStatus.IO_ERROR if self._flush.failed else PutMessageStatus.PUT_OK

    # --- writing -------------------------------------------------------------------------------
    def _cq(self, topic: str, queue_id: int) -> ConsumeQueue:
        key = (topic, queue_id)
        cq = self._cqs.get(key)
        if cq is None:
            cq = self._cqs[key] = ConsumeQueue(self._cq_root, topic, queue_id, self._cq_per_file,
                                               self.config.preallocate_mapped_files)
        return cq

    async def put_messages(self, messages: list[Message]) -> PutMessageResult:
        """Append (each message has its topic and queue_id set) and return after the flush policy.

        The batch is encoded at once; every batch encoded in the same event-loop iteration is written
        by one ``pwrite`` (per segment) in ``_drain``, which then dispatches the consume-queue entries
        (packed here, one slice per queue) and index keys and answers all their writers through one
        shared future."""
        if not self._running or self._flush is None:
            return PutMessageResult(PutMessageStatus.SERVICE_NOT_AVAILABLE, error="message store is not running")
        if self._flush.failed is not None:
            return PutMessageResult(PutMessageStatus.IO_ERROR,
                                    error=f"store failed earlier (no write is acknowledged until restart): {self._flush.failed!r}")
        if self._disk_full:
            return PutMessageResult(PutMessageStatus.DISK_FULL, error=(
                f"disk usage above disk_max_used_space_ratio={self.config.disk_max_used_space_ratio}%"))
        if not messages:
            return PutMessageResult(PutMessageStatus.PUT_OK)
        fut = self._drain_fut
        if fut is None:  # the first batch of this event-loop iteration
            loop = asyncio.get_running_loop()
            fut = self._drain_fut = loop.create_future()
            loop.call_soon(self._drain)
            self._turn_now = self._clock()
        now = self._turn_now
        fs = self.commitlog.file_size
        pos = start_pos = self._enc_pos
        seg_end = pos - pos % fs + fs
        parts = self._pend_parts
        mark = (len(parts), len(self._pend_chunks), len(self._pend_index))
        next_q = self._next_qoff
        pend_cq = self._pend_cq
        tag_codes = self._tag_codes
        store_ip = self._store_ip
        store_v4 = len(store_ip) == 4
        max_size = self.config.max_message_size
        topic_bytes = self._topic_bytes
        store_port = self._store_port
        index_on = self.config.message_index_enable
        pend_index = self._pend_index
        last_key: tuple[str, int] | None = None
        last_topic: str | None = None
        last_born: tuple[str, int] | None = None
        tb = hosts = b""
        extra = qoff = 0
        v6 = False
        cq_entries = bytearray()
        placed: list[int] = []  # commitlog offset, size, queue offset per message
        error: PutMessageResult | None = None
        # what messages of one call share (topic, born host, queue) is looked up once per change
        for m in messages:
            props = m.properties
            pstr = ""
            for k, v in props.items():
                pstr += k + "\x01" + v + "\x02"
            ps = pstr.encode()
            topic = m.topic
            if topic != last_topic:
                cached = topic_bytes.get(topic)
                if cached is None:
                    cached, err = self._topic_record_bytes(topic)
                    if err:
                        error = PutMessageResult(PutMessageStatus.MESSAGE_ILLEGAL, error=err)
                        break
                tb = cached
                last_topic = topic
            if len(ps) > MAX_PROPERTIES_LENGTH:
                error = PutMessageResult(PutMessageStatus.PROPERTIES_SIZE_EXCEEDED,
                                         error=f"properties of {len(ps)} bytes exceed {MAX_PROPERTIES_LENGTH}")
                break
            body = m.body
            if len(body) > max_size:
                error = PutMessageResult(PutMessageStatus.MESSAGE_ILLEGAL,
                                         error=f"body of {len(body)} bytes exceeds max_message_size {max_size}")
                break
            born_host = m.born_host
            if born_host is not last_born:
                born_ip = _ip_cache.get(born_host[0]) or ip_bytes(born_host[0])
                v6 = len(born_ip) == 16 or not store_v4
                extra = 90 + ((12 if len(born_ip) == 16 else 0) + (0 if store_v4 else 12) if v6 else 0)
                if not v6:  # born host, store time and store host: one field of the record header
                    hosts = _hosts_pack(born_ip, born_host[1], now, store_ip, store_port)
                last_born = born_host
            size = extra + len(body) + len(tb) + len(ps)
            if pos + size + END_FILE_MIN_BLANK_LENGTH > seg_end:
                if size + END_FILE_MIN_BLANK_LENGTH > fs:
                    error = PutMessageResult(PutMessageStatus.MESSAGE_ILLEGAL,
                                             error=f"record of {size} bytes does not fit a commitlog file of {fs}")
                    break
                parts.append(_BLANK.pack(seg_end - pos, BLANK_MAGIC_CODE))
                self._pend_chunks.append((self._pend_start, parts))
                parts = self._pend_parts = []
                pos = self._pend_start = seg_end
                seg_end += fs
            qid = m.queue_id
            if last_key is None or qid != last_key[1] or topic != last_key[0]:
                # messages of a batch mostly share one queue: one entry buffer and offset per run
                if last_key is not None:
                    next_q[last_key] = qoff
                key = (topic, qid)
                pend = pend_cq.get(key)
                if pend is None:
                    first = next_q.get(key)
                    if first is None:
                        first = next_q[key] = self._cq(topic, qid).max_offset
                    pend = pend_cq[key] = (first, bytearray())
                cq_entries = pend[1]
                qoff = next_q[key]
                last_key = key
            try:
                if v6:
                    parts.append(encode_record(m, qoff, pos, now, self.config.store_host, ps))
                else:
                    parts += (_head_pack(size, MESSAGE_MAGIC_CODE, crc32(body) & 0x7FFFFFFF, qid, m.flag, qoff,
                                         pos, m.sys_flag & _NOT_HOST_V6, m.born_timestamp, hosts,
                                         m.reconsume_times, m.prepared_transaction_offset, len(body)),
                              body, tb, _i16_pack(len(ps)), ps)
            except struct.error:  # a value wider than its record field (int32 flags, int64 times)
                error = PutMessageResult(PutMessageStatus.MESSAGE_ILLEGAL, error=(
                    f"message field out of range: flag {m.flag}, sysFlag {m.sys_flag}, queueId {qid}, "
                    f"bornTimestamp {m.born_timestamp}, reconsumeTimes {m.reconsume_times}"))
                break
            tag = props.get(_TAGS)
            tc = tag_codes.get(tag)
            if tc is None:
                tc = self._tag_code(tag)
            cq_entries += _cq_pack(pos, size, tc)
            if index_on:
                if _KEYS in props:
                    self._queue_index(topic, props, pos, now)
                else:
                    uniq = props.get(_UNIQ)
                    if uniq:  # the common case: only the message id is indexed
                        pend_index.append((full_key(topic, uniq), pos, now))
            placed += (pos, size, qoff)
            qoff += 1
            pos += size
        if last_key is not None:
            next_q[last_key] = qoff
        if error is not None:
            self._rollback_encoded(start_pos, mark, messages[:len(placed) // 3])
            return error
        self._enc_pos = pos
        self._pend_count += len(placed) // 3
        results = AppendResults(placed, now, self._msg_id_prefix)
        if self._pend_count >= self._early_drain:
            # SYNC_FLUSH: start the fdatasync of what is pending now, so that it runs (in its thread)
            # while the event loop encodes the next writers' batches: group commit as a pipeline
            self._drain()
        status = await fut
        if status is PutMessageStatus.PUT_OK:
            return PutMessageResult(status, results)
        if status is PutMessageStatus.FLUSH_DISK_TIMEOUT:
            return PutMessageResult(status, results,
                                    error=f"fdatasync not done within {self.config.sync_flush_timeout} ms")
        if status is PutMessageStatus.IO_ERROR and self._flush.failed is not None and not self._drain_error:
            return PutMessageResult(status, error=f"commitlog fdatasync failed: {self._flush.failed!r}")
        return PutMessageResult(status, error=self._drain_error or status.name)

    def _topic_record_bytes(self, topic: str) -> tuple[bytes, str]:
        """The length-prefixed topic of a record (cached), or an error text for an illegal topic."""
        raw = topic.encode()
        if not raw or len(raw) > 255:
            return b"", f"topic length {len(raw)} not in 1..255 bytes"
        if "/" in topic or "\\" in topic or "\x00" in topic or topic in (".", ".."):
            # the topic names a consume-queue directory: never let it leave the store
            return b"", f"illegal character in topic {topic!r}"
        tb = bytes((len(raw),)) + raw
        if len(self._topic_bytes) > 10000:
            self._topic_bytes.clear()
        self._topic_bytes[topic] = tb
        return tb, ""

    def _tag_code(self, tag: str | None) -> int:
        tc = tags_code(tag) if tag else 0
        if len(self._tag_codes) > 10000:
            self._tag_codes.clear()
            self._tag_codes[None] = 0
        self._tag_codes[tag] = tc
        return tc

    def _queue_index(self, topic: str, props: dict[str, str], phy: int, ts: int) -> None:
        for k in _index_keys(props.get(_UNIQ), props.get(_KEYS)):
            self._pend_index.append((full_key(topic, k), phy, ts))

    def _rollback_encoded(self, pos: int, mark: tuple[int, int, int], encoded: list[Message]) -> None:
        """Forget what one rejected batch encoded (nothing of it was written yet)."""
        nparts, nchunks, nindex = mark
        if len(self._pend_chunks) > nchunks:
            self._pend_start, self._pend_parts = self._pend_chunks[nchunks]
            del self._pend_chunks[nchunks:]
        del self._pend_parts[nparts:]
        del self._pend_index[nindex:]
        for m in reversed(encoded):  # each took the last entry of its queue
            key = (m.topic, m.queue_id)
            self._next_qoff[key] -= 1
            first, entries = self._pend_cq[key]
            del entries[-CQ_ENTRY_SIZE:]
        for key in [k for k, (_, entries) in self._pend_cq.items() if not entries]:
            del self._pend_cq[key]  # (also a queue the rejected message opened but did not fill)
        self._enc_pos = pos

    def _drain(self) -> None:
        """Write every pending batch (one pwrite per segment), dispatch, then answer (ASYNC) or hand
        the answer to the group commit (SYNC)."""
        fut = self._drain_fut
        self._drain_fut = None
        if fut is None:
            return
        pend_cq, index_keys, count = self._pend_cq, self._pend_index, self._pend_count
        self._pend_cq, self._pend_index, self._pend_count = {}, [], 0
        if self._closed:  # files closed (simulated power loss): nothing may be written any more
            self._pend_chunks, self._pend_parts = [], []
            self._drain_error = "message store is stopped"
            fut.set_result(PutMessageStatus.SERVICE_NOT_AVAILABLE)
            return
        cl = self.commitlog
        chunks = self._pend_chunks
        chunks.append((self._pend_start, self._pend_parts))
        end = self._enc_pos
        self._pend_chunks, self._pend_parts = [], []
        self._pend_start = end
        written: list[tuple[int, int]] = []
        old_end = cl.write_pos
        try:
            for start, parts in chunks:
                if parts:
                    data = b"".join(parts)
                    cl.write(data, start)
                    written.append((start, len(data)))
        except OSError as e:
            self._undo_writes(written, old_end)
            disk = e.errno in (errno.ENOSPC, errno.EDQUOT)
            if disk:
                self._disk_full = True
            log.error("commitlog: write at %d failed: %s; nothing of these %d messages is kept",
                      old_end, e, count)
            self._drain_error = f"commitlog write failed: {e}"
            self._enc_pos = self._pend_start = old_end
            for key in pend_cq:
                self._next_qoff.pop(key, None)
            fut.set_result(PutMessageStatus.DISK_FULL if disk else PutMessageStatus.IO_ERROR)
            return
        cl.write_pos = end
        for wl in self._write_listeners:
            wl(end)
        try:
            for key, (first, entries) in pend_cq.items():
                (self._cqs.get(key) or self._cq(*key)).put_bulk(first, entries)
            if index_keys:
                self.index.put_many(index_keys)
        except OSError as e:
            # the commitlog has the records but a consume queue or index file could not be created:
            # refuse writes from now on; the next start (abort file present) rebuilds them
            disk = e.errno in (errno.ENOSPC, errno.EDQUOT)
            log.error("store: dispatch to consume queue/index failed: %s; refusing writes until restart", e)
            self._drain_error = f"consume queue/index dispatch failed: {e}"
            if self._flush is not None:
                self._flush.fail(e)
            fut.set_result(PutMessageStatus.DISK_FULL if disk else PutMessageStatus.IO_ERROR)
            return
        if count:
            self._last_store_ts = self._turn_now
        listen = ({key: first + len(entries) // CQ_ENTRY_SIZE for key, (first, entries) in pend_cq.items()}
                  if self._listeners else None)
        if not self._sync:
            fut.set_result(PutMessageStatus.PUT_OK)
            if listen:
                self._notify(listen)
            return
        assert self._flush is not None
        # the flush thread's report of the covering round answers ``fut`` itself (no extra loop hop)
        self._flush.wait_durable(end, fut=fut)
        if listen:
            fut.add_done_callback(lambda _f: self._notify(listen))

    def _notify(self, listen: dict[tuple[str, int], int]) -> None:
        for (topic, qid), nxt in listen.items():
            for listener in self._listeners:
                try:
                    listener(topic, qid, nxt)
                except Exception:
                    log.exception("store: arrival listener failed")

    def _undo_writes(self, written: list[tuple[int, int]], old_end: int) -> None:
        for start, n in written:
            try:
                self.commitlog.write(bytes(n), start)
            except OSError:
                pass
        # segments created for this batch past the old end are removed
        for seg in [s for s in self.commitlog.segments if s.start > old_end]:
            self.commitlog.delete_segment(seg)

    def add_arrival_listener(self, listener: ArrivalListener) -> None:
        self._listeners.append(listener)

    # --- replication (RocketMQ's HA: the master reads its commitlog, the slave appends it) ----------
    def add_write_listener(self, listener: Callable[[int], None]) -> None:
        """``listener(write_pos)`` after each commitlog write (wakes the HA transfer)."""
        self._write_listeners.append(listener)

    def read_commitlog(self, offset: int, max_bytes: int) -> bytes:
        """Written commitlog bytes from ``offset``: at most ``max_bytes``, never past the end of its file."""
        cl = self.commitlog
        fs = cl.file_size
        end = min(cl.write_pos, offset + max_bytes, offset - offset % fs + fs)
        if end <= offset:
            return b""
        seg = cl.segment_for(offset)
        if seg is None or seg.fd < 0:
            raise ReplicaError(f"offset {offset} is not in the commitlog [{cl.min_offset}, {cl.write_pos})")
        return os.pread(seg.fd, end - offset, offset - seg.start)

    def truncate_replica(self, offset: int) -> None:
        """Slave: cut the commitlog (and the consume queues) back to ``offset``, a record boundary where
        this log and its new master's agree (controller mode: what a deposed master wrote past it)."""
        cl = self.commitlog
        if offset >= cl.write_pos:
            return
        log.warning("store: truncating the commitlog from %d to %d (the part the new master does not have)",
                    cl.write_pos, offset)
        cl.truncate(offset)
        for cq in self._cqs.values():
            cq.truncate_from_phy(offset)
        self._next_qoff.clear()
        self._enc_pos = self._pend_start = offset
        self._replica_tail = bytearray()
        if self._flush is not None:
            self._flush.reset(min(self._flush.flushed_pos, offset))
        cp = self._checkpoint
        if cp is not None:  # a recovery must not start past the new end (it would leave a hole of zeros)
            d = cp.data
            cp.write(replace(d, flushed_phy_offset=min(d.flushed_phy_offset, offset),
                             dispatched_phy_offset=min(d.dispatched_phy_offset, offset), clean_max_phy_offset=-1))

    def drop_replica_tail(self) -> None:
        """Forget the bytes of an incomplete record (a new connection resends from the reported offset)."""
        self._replica_tail = bytearray()

    def append_replica(self, offset: int, data: bytes) -> int:
        """Slave: append commitlog bytes the master sent from ``offset``. Whole records are written at the
        master's offsets, CRC-checked and dispatched to consume queues and index; the bytes of a record
        still incomplete wait for the rest. Returns the new max physical offset; raises ReplicaError when
        the bytes do not continue this log or a record is invalid."""
        cl = self.commitlog
        if not cl.segments and not self._replica_tail and offset % cl.file_size == 0:
            cl.write_pos = offset  # an empty store takes the master's log from its first file
        start = cl.write_pos
        expect = start + len(self._replica_tail)
        if offset != expect:
            raise ReplicaError(f"master sent offset {offset}, this log continues at {expect}")
        if not self._running or self._closed:
            raise ReplicaError("message store is not running")
        self._replica = True
        tail = self._replica_tail
        if tail:
            tail += data  # (a record larger than a transfer grows here, without re-copying what came)
        buf = tail or data
        fs = cl.file_size
        n, total = 0, len(buf)
        while n + 8 <= total:
            size, magic = _BLANK.unpack_from(buf, n)
            if magic == BLANK_MAGIC_CODE:
                if (start + n) % fs + size != fs:
                    raise ReplicaError(f"blank record at {start + n} does not reach its file end")
            elif magic not in (MESSAGE_MAGIC_CODE, MESSAGE_MAGIC_CODE_V2) or not 8 < size <= fs:
                raise ReplicaError(f"no commitlog record at {start + n} (size {size}, magic {magic:#x})")
            if n + size > total:
                break
            n += size
        if n == 0:
            if not tail:
                self._replica_tail = bytearray(data)
            return start
        self._replica_tail = bytearray(buf[n:])
        w = 0
        while w < n:  # one write per commitlog file
            k = min(n - w, fs - (start + w) % fs)
            cl.write(buf[w:w + k], start + w)
            w += k
        end = start + n
        listen: dict[tuple[str, int], int] = {}
        index: list[tuple[str, int, int]] = []
        index_on = self.config.message_index_enable

        def dispatch(v: RecordView) -> None:
            self._dispatch_view(v, index_now=False)
            key = (v.topic, v.queue_id)
            listen[key] = v.queue_offset + 1
            self._next_qoff.pop(key, None)
            if index_on:
                self._index_entries(v, index)

        got = cl.scan(start, dispatch, check_crc=True, stop=end)
        if got != end:
            cl.truncate(got)
            cl.write_pos = self._enc_pos = self._pend_start = got
            self._replica_tail = bytearray()
            raise ReplicaError(f"invalid record from the master at {got}")
        cl.write_pos = self._enc_pos = self._pend_start = end
        if index:
            self.index.put_many(index)
        for wl in self._write_listeners:
            wl(end)
        if listen:
            self._notify(listen)
        return end

    # --- reading -------------------------------------------------------------------------------
    def get_messages(
        self,
        topic: str,
        queue_id: int,
        offset: int,
        max_msg_nums: int,
        message_filter: Callable[[int, bytes | None], bool] | None = None,
    ) -> GetMessageResult:
        """Up to ``max_msg_nums`` records from ``offset``. ``message_filter(tags_code, record)`` is
        called first with ``record=None`` (consume-queue check on the tag hash) and, when that passes
        and the filter needs properties, with the record bytes (a filter callable with an attribute
        ``needs_properties = False`` is not called the second time).

        At most ``max_transfer_count_on_message_in_memory`` records and
        ``max_transfer_bytes_on_message_in_memory`` bytes (but at least one record) per call, as
        RocketMQ; ``next_begin_offset`` tells where to continue."""
        cq = self._cqs.get((topic, queue_id))
        if cq is None:
            return GetMessageResult(GetMessageStatus.NO_MATCHED_LOGIC_QUEUE, 0, 0, 0)
        mn, mx = cq.min_offset, cq.max_offset
        if mx <= mn:
            return GetMessageResult(GetMessageStatus.NO_MESSAGE_IN_QUEUE, mx if offset > mx else max(offset, mn),
                                    mn, mx)
        if offset < mn:
            return GetMessageResult(GetMessageStatus.OFFSET_TOO_SMALL, mn, mn, mx)
        if offset == mx:
            return GetMessageResult(GetMessageStatus.OFFSET_OVERFLOW_ONE, offset, mn, mx)
        if offset > mx:
            return GetMessageResult(GetMessageStatus.OFFSET_OVERFLOW_BADLY, mx, mn, mx)
        cl = self.commitlog
        cl_min = cl.min_offset
        max_count = max(1, min(max_msg_nums, self.config.max_transfer_count_on_message_in_memory))
        max_bytes = self.config.max_transfer_bytes_on_message_in_memory
        scan_limit = self.config.max_filter_message_count
        # a filter callable may say it does not need the record (tag filters): one call per entry
        needs_record = message_filter is not None and getattr(message_filter, "needs_properties", True)
        records: list[bytes] = []
        qoffs: list[int] = []
        total = 0
        cur = offset
        status = GetMessageStatus.NO_MATCHED_MESSAGE
        scanned = 0
        while cur < mx and len(records) < max_count and scanned < scan_limit:
            raw = cq.entries(cur, min(max_count * 4, 1024))
            if not raw:
                break
            consumed = 0
            full = False
            for i in range(len(raw) // CQ_ENTRY_SIZE):
                phy, size, tags = CQ_ENTRY.unpack_from(raw, i * CQ_ENTRY_SIZE)
                if records and total + size > max_bytes:
                    full = True
                    break
                consumed = i + 1
                if phy < cl_min:
                    status = GetMessageStatus.MESSAGE_WAS_REMOVING
                    continue
                if message_filter is not None and not message_filter(tags, None):
                    continue
                rec = cl.read(phy, size)
                if rec is None or not stored_record_ok(rec, phy):
                    seg = cl.segment_for(phy)
                    log.error("store: consume queue %s-%d offset %d points at an invalid record in %s at file "
                              "offset %d (commitlog offset %d, size %d); not served", topic, queue_id, cur + i,
                              seg.path if seg else "-", phy - seg.start if seg else -1, phy, size)
                    status = GetMessageStatus.OFFSET_FOUND_NULL
                    continue
                if needs_record and not message_filter(tags, rec):  # type: ignore[misc]
                    continue
                records.append(rec)
                qoffs.append(cur + i)
                total += size
                if len(records) >= max_count:
                    full = True
                    break
            cur += consumed
            scanned += consumed
            if full:
                break
        if records:
            status = GetMessageStatus.FOUND
        return GetMessageResult(status, cur, mn, mx, records, qoffs)

    def get_max_offset_in_queue(self, topic: str, queue_id: int) -> int:
        cq = self._cqs.get((topic, queue_id))
        return cq.max_offset if cq else 0

    def get_min_offset_in_queue(self, topic: str, queue_id: int) -> int:
        cq = self._cqs.get((topic, queue_id))
        return cq.min_offset if cq else 0

    def check_in_mem_by_consume_offset(self, topic: str, queue_id: int, offset: int) -> bool:
        """RocketMQ's checkInMemByConsumeOffset: the message at ``offset`` exists and lies within
        ``access_message_in_memory_max_ratio`` percent of RAM of the commitlog's end."""
        cq = self._cqs.get((topic, queue_id))
        entry = cq.get(offset) if cq else None
        if entry is None:
            return False
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return self.get_max_phy_offset() - entry[0] <= ram * self.config.access_message_in_memory_max_ratio // 100

    def _store_time(self, phy: int, size: int) -> int:
        head = self.commitlog.read(phy, min(size, 96))
        if head is None or len(head) < 80:
            return -1
        return store_timestamp_of(head)

    def get_offset_in_queue_by_time(self, topic: str, queue_id: int, timestamp_ms: int) -> int:
        """The first queue offset stored at or after ``timestamp_ms`` (the max offset if none)."""
        cq = self._cqs.get((topic, queue_id))
        if cq is None:
            return 0
        return cq.search_offset_by_time(timestamp_ms, self._store_time)

    def get_earliest_message_time(self, topic: str, queue_id: int) -> int:
        cq = self._cqs.get((topic, queue_id))
        if cq is None:
            return -1
        e = cq.get(cq.min_offset)
        return self._store_time(e[0], e[1]) if e else -1

    def get_message_store_timestamp(self, topic: str, queue_id: int, queue_offset: int) -> int:
        cq = self._cqs.get((topic, queue_id))
        e = cq.get(queue_offset) if cq else None
        return self._store_time(e[0], e[1]) if e else -1

    def look_message_by_offset(self, commitlog_offset: int, size: int = -1) -> MessageExt | None:
        cl = self.commitlog
        rec = cl.read_record(commitlog_offset) if size <= 0 else cl.read(commitlog_offset, size)
        if rec is None:
            return None
        try:
            m = decode_record(rec)
        except RecordError as e:
            log.error("store: invalid record at commitlog offset %d: %s", commitlog_offset, e)
            return None
        if m.commitlog_offset != commitlog_offset:
            log.error("store: record at commitlog offset %d claims offset %d", commitlog_offset,
                      m.commitlog_offset)
            return None
        return m

    def query_message(
        self, topic: str, key: str, max_num: int, begin_ms: int = 0, end_ms: int = 2**62
    ) -> list[MessageExt]:
        """Messages of ``topic`` whose KEYS contain ``key`` or whose UNIQ_KEY is ``key``."""
        if not self.config.message_index_enable or max_num <= 0:
            return []
        out: list[MessageExt] = []
        seen: set[int] = set()
        for phy in self.index.lookup(topic, key, max(64, max_num * 4), begin_ms, end_ms):
            if phy in seen or phy >= self.commitlog.write_pos:
                continue
            seen.add(phy)
            m = self.look_message_by_offset(phy)
            if m is None or m.topic != topic or not (begin_ms <= m.store_timestamp <= end_ms):
                continue
            if m.uniq_key == key or key in m.keys:
                out.append(m)
                if len(out) >= max_num:
                    break
        return out

    def look_message_by_id(self, offset_msg_id: str) -> MessageExt | None:
        """VIEW_MESSAGE_BY_ID: an offset message id is the store host plus the commitlog offset."""
        from backends.model import decode_offset_msg_id

        try:
            _host, phy = decode_offset_msg_id(offset_msg_id)
        except ValueError:
            return None
        return self.look_message_by_offset(phy)

    def delete_topics(self, topics: set[str]) -> None:
        for key in [k for k in self._cqs if k[0] in topics]:
            self._cqs.pop(key).destroy()
            self._next_qoff.pop(key, None)
        for t in topics:
            try:
                os.rmdir(os.path.join(self._cq_root, t))
            except OSError:
                pass

    def get_max_phy_offset(self) -> int:
        return self.commitlog.write_pos

    def get_min_phy_offset(self) -> int:
        return self.commitlog.min_offset

    def get_flushed_phy_offset(self) -> int:
        """The commitlog offset up to which the log is known durable (fdatasync'ed)."""
        return self._flush.flushed_pos if self._flush is not None else 0

    def queues(self) -> list[tuple[str, int]]:
        return list(self._cqs)

    # --- retention and disk space --------------------------------------------------------------
    def _real_disk_usage(self) -> float:
        """The fuller of the commitlog's disk and the store root's (they differ with storePathCommitLog)."""
        ratio = 0.0
        for path in {self.root, self.commitlog.dir}:
            u = shutil.disk_usage(path)
            if u.total:
                ratio = max(ratio, 100.0 * u.used / u.total)
        return ratio

    def _check_disk(self) -> float:
        try:
            ratio = self._disk_usage()
        except OSError as e:
            log.error("store: cannot read disk usage: %s", e)
            return 0.0
        full = ratio > self.config.disk_max_used_space_ratio
        if full and not self._disk_full:
            log.error("store: disk usage %.1f%% is above disk_max_used_space_ratio=%d%%; refusing writes "
                      "(DISK_FULL) until space is freed", ratio, self.config.disk_max_used_space_ratio)
        elif self._disk_full and not full:
            log.warning("store: disk usage %.1f%% is back under the limit; accepting writes", ratio)
        self._disk_full = full
        return ratio

    def _is_delete_time(self, now_ms: int) -> bool:
        hours = set()
        for h in self.config.delete_when.replace(",", ";").split(";"):
            h = h.strip()
            if h.isdigit():
                hours.add(int(h))
        return _local_hour(now_ms) in hours

    def clean_expired_files(self, now_ms: int | None = None, force: bool = False) -> int:
        """Delete commitlog segments older than file_reserved_time (never the one being written) and
        the consume-queue and index files that only point into them. Runs when ``force``, at a
        delete_when hour, or when the disk is above its limit. Returns the commitlog files deleted."""
        now = self._clock() if now_ms is None else now_ms
        ratio = self._check_disk()
        if not (force or self._is_delete_time(now) or ratio > self.config.disk_max_used_space_ratio):
            return 0
        reserved_ms = self.config.file_reserved_time * 3600 * 1000
        cl = self.commitlog
        deleted = 0
        flushed = self._flush.flushed_pos if self._flush else 0
        while len(cl.segments) > 1:
            seg = cl.segments[0]
            if seg.start + cl.file_size > flushed or seg.start + cl.file_size > cl.write_pos:
                break
            try:
                mtime_ms = int(os.stat(seg.path).st_mtime * 1000)
            except FileNotFoundError:
                mtime_ms = 0
            if mtime_ms + reserved_ms > now:
                break
            log.info("retention: deleting expired commitlog file %s", seg.path)
            cl.delete_segment(seg)
            deleted += 1
        if deleted:
            min_phy = cl.min_offset
            for cq in list(self._cqs.values()):
                cq.delete_expired(min_phy)
            if self.config.message_index_enable:
                self.index.delete_expired(min_phy)
            self._check_disk()
        return deleted

    async def _clean_loop(self) -> None:
        interval = max(10, self.config.clean_resource_interval) / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                self.clean_expired_files()
            except Exception:
                log.exception("store: retention run failed")

    # --- test hook -----------------------------------------------------------------------------
    def simulate_power_loss(self) -> None:
        """Test hook (power_loss_test_mode): drop every byte not yet fdatasync'ed, as a crash would."""
        if not self.config.power_loss_test_mode:
            raise RuntimeError("simulate_power_loss needs power_loss_test_mode=True")
        self._running = False
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()
        flushed = self._flush.flushed_pos if self._flush else 0
        cp = self._checkpoint.data if self._checkpoint else CheckpointData()
        lost = self.commitlog.write_pos - flushed
        log.warning("simulate_power_loss: dropping %d commitlog bytes after the fdatasync'ed offset %d",
                    lost, flushed)
        self.commitlog.truncate(flushed)
        for cq in self._cqs.values():  # consume queues are only durable up to the checkpoint
            cq.truncate_from_phy(cp.dispatched_phy_offset)
        self._close_files()
        if self._flush is not None:
            self._flush.fail(RuntimeError("simulated power loss"))
            self._flush.close()
        self._release_lock()
