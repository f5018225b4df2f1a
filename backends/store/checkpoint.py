"""StoreCheckpoint: how far the commitlog, consume queues and index are known durable.

A 4 KiB file with two 64-byte slots written alternately (so a torn write leaves the other slot valid).
Slot: seq i64, physicMsgTimestamp i64, logicsMsgTimestamp i64, indexMsgTimestamp i64,
flushedPhyOffset i64 (commitlog durable up to here), dispatchedPhyOffset i64 (consume queues and index
durable for every record before this), cleanMaxPhyOffset i64 (the commitlog end at a clean shutdown,
-1 otherwise), crc32 u32 of the preceding 56 bytes.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass

log = logging.getLogger("rocketmq.store")

_SLOT = struct.Struct(">qqqqqqqI")
_SLOT_SIZE = 64
FILE_SIZE = 4096


@dataclass(slots=True)
class CheckpointData:
    seq: int = 0
    physic_msg_timestamp: int = 0
    logics_msg_timestamp: int = 0
    index_msg_timestamp: int = 0
    flushed_phy_offset: int = 0
    dispatched_phy_offset: int = 0
    clean_max_phy_offset: int = -1


class StoreCheckpoint:
    def __init__(self, path: str) -> None:
        self.path = path
        self.data = CheckpointData()
        self.loaded = False
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        raw = os.pread(self.fd, 2 * _SLOT_SIZE, 0)
        best: CheckpointData | None = None
        for i in range(2):
            chunk = raw[i * _SLOT_SIZE:i * _SLOT_SIZE + _SLOT.size]
            if len(chunk) < _SLOT.size:
                continue
            *vals, crc = _SLOT.unpack(chunk)
            if vals[0] <= 0 or zlib.crc32(chunk[:-4]) != crc:
                continue
            d = CheckpointData(*vals)
            if best is None or d.seq > best.seq:
                best = d
        if best is not None:
            self.data = best
            self.loaded = True
        elif any(raw):
            log.error("checkpoint: %s is corrupt in both slots; recovering from the commitlog", path)
        if os.fstat(self.fd).st_size < FILE_SIZE:
            os.ftruncate(self.fd, FILE_SIZE)

    def write(self, data: CheckpointData) -> None:
        """Write and fdatasync (blocking: call from the flush thread or at start/stop)."""
        data.seq = self.data.seq + 1
        body = struct.pack(">qqqqqqq", data.seq, data.physic_msg_timestamp, data.logics_msg_timestamp,
                           data.index_msg_timestamp, data.flushed_phy_offset, data.dispatched_phy_offset,
                           data.clean_max_phy_offset)
        slot = body + struct.pack(">I", zlib.crc32(body))
        os.pwrite(self.fd, slot, (data.seq % 2) * _SLOT_SIZE)
        os.fdatasync(self.fd)
        self.data = data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
