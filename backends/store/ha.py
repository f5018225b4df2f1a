"""Master/slave commitlog replication: RocketMQ's DefaultHAService (master), HAConnection (one slave)
and HAClient (the slave side), with GroupTransferService's wait for SYNC_MASTER.

The wire is RocketMQ's, over its own TCP port (``haListenPort``, default listenPort + 1):
- the slave reports the max physical offset it holds, a big-endian int64, when it connects, after each
  transfer it appended, and every ``haSendHeartbeatInterval``;
- the master sends transfers of a 12-byte header (int64 physical offset, int32 size) and that many
  commitlog bytes, starting where the slave's first report says (a slave with an empty store gets the
  master's log from its first file); a transfer of 0 bytes is the master's heartbeat.
In controller mode a slave first sends a 12-byte hello ("RMQH", int64 broker id) so the master can tell
which replicas of its SyncStateSet hold a write (this project's; RocketMQ's AutoSwitchHAService has its
own handshake). The codec below is pure; the I/O lives in the classes under it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import struct

from backends.store.message_store import MessageStore, ReplicaError
from backends.tasks import cancel_and_wait

log = logging.getLogger("rocketmq.store")

TRANSFER_HEADER = struct.Struct(">qi")  # physical offset, size
REPORT = struct.Struct(">q")  # the slave's max physical offset
HELLO_MAGIC = b"RMQH"  # controller mode: a slave names its broker id before its first report
HELLO = struct.Struct(">4sq")
MAX_TRANSFER = 64 * 1024 * 1024  # a larger size field is not from a master: the connection is dropped


def encode_transfer(offset: int, data: bytes) -> bytes:
    return TRANSFER_HEADER.pack(offset, len(data)) + data


def decode_transfer_header(raw: bytes) -> tuple[int, int]:
    """(offset, size) of a transfer header; ValueError for one no master sends."""
    offset, size = TRANSFER_HEADER.unpack(raw)
    if offset < 0 or not 0 <= size <= MAX_TRANSFER:
        raise ValueError(f"bad HA transfer header: offset {offset}, size {size}")
    return offset, size


def encode_hello(broker_id: int) -> bytes:
    return HELLO.pack(HELLO_MAGIC, broker_id)


def encode_report(offset: int) -> bytes:
    return REPORT.pack(offset)


def decode_report(raw: bytes) -> int:
    (offset,) = REPORT.unpack(raw)
    if offset < 0:
        raise ValueError(f"bad HA offset report {offset}")
    return offset


class HAConnection:
    """The master's side of one slave: reads its offset reports, pushes commitlog bytes to it."""

    def __init__(self, service: HAService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.service = service
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.slave_ack_offset = -1
        self.broker_id = -1  # controller mode: the id the slave named in its hello
        self.caught_up_at = 0.0  # loop time the slave last held everything the master had written
        # (loop time, end) of the transfers that brought the slave up to date, until it acks them
        self._sent: collections.deque[tuple[float, int]] = collections.deque(maxlen=4096)
        self.wake = asyncio.Event()

    async def serve(self) -> None:
        svc = self.service
        store = svc.store
        try:
            raw = await asyncio.wait_for(self.reader.readexactly(REPORT.size), svc.housekeeping_interval)
            if raw[:4] == HELLO_MAGIC:
                raw += await asyncio.wait_for(self.reader.readexactly(HELLO.size - REPORT.size), 5.0)
                self.broker_id = HELLO.unpack(raw)[1]
                raw = await asyncio.wait_for(self.reader.readexactly(REPORT.size), svc.housekeeping_interval)
            first = decode_report(raw)
            self._acked(first)
            start = first if first > 0 else store.get_min_phy_offset()
            if start < store.get_min_phy_offset():
                log.error("HAService: slave %s asks for offset %d, the commitlog starts at %d (files removed "
                          "by retention); it cannot catch up", self.addr, start, store.get_min_phy_offset())
                return
            if start > store.get_max_phy_offset():
                log.warning("HAService: slave %s has offset %d beyond this master's %d", self.addr, start,
                            store.get_max_phy_offset())
            log.info("HAService: slave %s connected, transferring from offset %d", self.addr, start)
            reading = asyncio.create_task(self._read_reports())
            try:
                await self._transfer(start, reading)
            finally:
                await cancel_and_wait(reading)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ValueError, ReplicaError) as e:
            log.info("HAService: slave %s disconnected: %s", self.addr, e or type(e).__name__)
        finally:
            self.writer.close()

    def _acked(self, offset: int) -> None:
        self.slave_ack_offset = offset
        sent = self._sent
        while sent and sent[0][1] <= offset:  # the slave holds all the master had when it sent this
            self.caught_up_at = sent.popleft()[0]
        if offset >= self.service.store.get_max_phy_offset():
            self.caught_up_at = asyncio.get_running_loop().time()
        self.service.on_slave_ack(offset)

    async def _read_reports(self) -> None:
        try:
            while True:
                raw = await asyncio.wait_for(self.reader.readexactly(REPORT.size),
                                             self.service.housekeeping_interval)
                self._acked(decode_report(raw))
        finally:
            self.wake.set()  # the transfer loop sees the end at once

    async def _transfer(self, pos: int, reading: asyncio.Task[None]) -> None:
        svc = self.service
        store = svc.store
        while not reading.done():
            data = store.read_commitlog(pos, svc.transfer_batch_size)
            if data:
                self.writer.write(encode_transfer(pos, data))
                pos += len(data)
                if pos >= store.get_max_phy_offset():  # this transfer brings the slave up to date
                    self._sent.append((asyncio.get_running_loop().time(), pos))
                await self.writer.drain()
                continue
            self.wake.clear()
            if store.get_max_phy_offset() > pos:
                continue
            try:
                async with asyncio.timeout(svc.heartbeat_interval):
                    await self.wake.wait()
            except TimeoutError:
                self.writer.write(encode_transfer(pos, b""))
                await self.writer.drain()
        reading.result()  # the reader's error ends the connection


class HAService:
    """The master: accepts slaves, pushes its commitlog to each, and answers SYNC_MASTER writers once a
    slave holds their bytes (RocketMQ's GroupTransferService)."""

    def __init__(self, store: MessageStore, host: str, port: int, *, transfer_batch_size: int = 32 * 1024,
                 heartbeat_interval: float = 5.0, housekeeping_interval: float = 20.0,
                 max_gap_not_in_sync: int = 256 * 1024 * 1024) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.transfer_batch_size = transfer_batch_size
        self.heartbeat_interval = heartbeat_interval
        self.housekeeping_interval = housekeeping_interval
        self.max_gap_not_in_sync = max_gap_not_in_sync
        self.connections: set[HAConnection] = set()
        self.push_to_slave_max_offset = 0  # what a writer may rely on: see on_slave_ack
        # controller mode (allAckInSyncStateSet): the slave ids every write must reach; None: any one slave
        self.required_ids: set[int] | None = None
        self._waiters: list[tuple[int, int, asyncio.Future[bool]]] = []
        self._seq = itertools.count()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        store.add_write_listener(self._on_write)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("HAService: listening for slaves on port %d", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = HAConnection(self, reader, writer)
        self.connections.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)
            if task is not None:
                self._tasks.discard(task)

    def _on_write(self, write_pos: int) -> None:
        for conn in self.connections:
            conn.wake.set()

    def on_slave_ack(self, offset: int) -> None:
        if self.required_ids is not None:  # the least any required slave holds
            acks = {c.broker_id: c.slave_ack_offset for c in self.connections}
            offset = min((acks.get(i, -1) for i in self.required_ids), default=self.store.get_max_phy_offset())
        if offset <= self.push_to_slave_max_offset:
            return
        self.push_to_slave_max_offset = offset
        waiters = self._waiters
        while waiters and waiters[0][0] <= offset:
            fut = heapq.heappop(waiters)[2]
            if not fut.done():
                fut.set_result(True)

    def is_slave_ok(self, offset: int) -> bool:
        """A slave is connected and not too far behind to wait for (haMaxGapNotInSync); in controller mode,
        always (the SyncStateSet says whom to wait for, and shrinks when one falls behind)."""
        if self.required_ids is not None:
            return True
        return bool(self.connections) and offset - self.push_to_slave_max_offset < self.max_gap_not_in_sync

    def set_required(self, ids: set[int]) -> None:
        """Controller mode: every write waits for these slaves (the SyncStateSet without the master)."""
        self.required_ids = set(ids)
        self.push_to_slave_max_offset = 0
        self.on_slave_ack(0)

    def caught_up_ids(self, within: float) -> set[int]:
        """Slaves (by the id in their hello) that held everything written at most ``within`` seconds ago."""
        now = asyncio.get_running_loop().time()
        return {c.broker_id for c in self.connections if c.broker_id >= 0 and now - c.caught_up_at <= within}

    async def wait_for_slave(self, offset: int, timeout: float) -> bool:
        """True once a slave reports holding the commitlog up to ``offset``; False after ``timeout``."""
        if self.push_to_slave_max_offset >= offset or self.required_ids == set():
            return True
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (offset, next(self._seq), fut))
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return False

    async def shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.writer.close()
        await cancel_and_wait(*self._tasks)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for _, _, fut in self._waiters:  # (this broker stops, or is no master any more)
            if not fut.done():
                fut.set_result(False)
        self._waiters.clear()


class HAClient:
    """The slave: connects to its master's HA address (from the NameServer's register answer), reports its
    offset, appends what the master sends. Reconnects every ``reconnect_interval`` after an error."""

    def __init__(self, store: MessageStore, *, heartbeat_interval: float = 5.0,
                 housekeeping_interval: float = 20.0, reconnect_interval: float = 1.0, broker_id: int = -1) -> None:
        self.store = store
        self.broker_id = broker_id  # controller mode: named to the master in a hello
        self.heartbeat_interval = heartbeat_interval
        self.housekeeping_interval = housekeeping_interval
        self.reconnect_interval = reconnect_interval
        self.master_ha_addr = ""
        self.connected = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def update_master(self, ha_addr: str) -> None:
        if ha_addr == self.master_ha_addr:
            return
        log.info("HAClient: master HA address %s (was %s)", ha_addr or "none", self.master_ha_addr or "none")
        self.master_ha_addr = ha_addr
        self._changed.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ha-client")

    async def _run(self) -> None:
        while True:
            addr = self.master_ha_addr
            if not addr:
                self._changed.clear()
                await self._changed.wait()
                continue
            self._changed.clear()
            conn = asyncio.create_task(self._connect_once(addr))
            changed = asyncio.create_task(self._changed.wait())
            try:
                await asyncio.wait((conn, changed), return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait(conn, changed)
            self.connected = False
            if not self._changed.is_set():
                await asyncio.sleep(self.reconnect_interval)

    async def _connect_once(self, addr: str) -> None:
        host, _, port = addr.rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 3.0)
        except (OSError, TimeoutError, ValueError) as e:
            log.info("HAClient: cannot connect to master %s: %s", addr, e)
            return
        self.store.drop_replica_tail()  # the master resends from the reported offset
        beat = None
        try:
            if self.broker_id >= 0:
                writer.write(encode_hello(self.broker_id))
            writer.write(encode_report(self.store.get_max_phy_offset()))
            await writer.drain()
            self.connected = True
            log.info("HAClient: connected to master %s at offset %d", addr, self.store.get_max_phy_offset())
            beat = asyncio.create_task(self._heartbeat(writer))
            while True:
                raw = await asyncio.wait_for(reader.readexactly(TRANSFER_HEADER.size), self.housekeeping_interval)
                offset, size = decode_transfer_header(raw)
                if size:
                    data = await asyncio.wait_for(reader.readexactly(size), self.housekeeping_interval)
                    self.store.append_replica(offset, data)
                    writer.write(encode_report(self.store.get_max_phy_offset()))
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ValueError, ReplicaError) as e:
            log.warning("HAClient: connection to master %s closed: %s", addr, e or type(e).__name__)
        finally:
            if beat is not None:
                beat.cancel()
            self.connected = False
            writer.close()

    async def _heartbeat(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            writer.write(encode_report(self.store.get_max_phy_offset()))

    async def shutdown(self) -> None:
        await cancel_and_wait(self._task)
