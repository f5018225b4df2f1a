"""A Raft quorum of controllers (RocketMQ runs DLedger; this uses pysyncobj): the leader decides each change
and commits it as an event to the replicated log; every controller applies the committed events to its
ReplicasInfoManager in log order, so a new leader knows every broker id, master, epoch and SyncStateSet.

``controllerDLegerPeers = n0-host:port;n1-host:port;n2-host:port`` names the Raft addresses (not the
remoting ``listenPort``) and ``controllerDLegerSelfId`` this controller's. pysyncobj is ticked from the
event loop (no thread of its own), so applying events never races the request handlers. The log is kept
whole in ``controllerStorePath/raft.journal`` (events are rare: ids, elections, SyncStateSet changes) and
replayed at start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from backends.controller.replicas_info_manager import ControllerError, Event, ReplicasInfoManager
from backends.remoting.codes import ResponseCode
from backends.tasks import cancel_and_wait

_inet_ntop = socket.inet_ntop
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated  # noqa: E402

# pysyncobj (0.3.x, win_inet_pton.py) replaces socket.inet_ntop with a Windows-only function on every
# platform when imported, which breaks IPv6 addresses everywhere in the process: put it back.
socket.inet_ntop = _inet_ntop

log = logging.getLogger("rocketmq.controller")

TICK = 0.005  # seconds between pysyncobj ticks
COMMIT_TIMEOUT = 5.0


def parse_peers(peers: str, self_id: str) -> tuple[str, list[str]]:
    """(this controller's Raft address, the others') from ``n0-host:port;n1-host:port``."""
    table: dict[str, str] = {}
    for item in peers.split(";"):
        item = item.strip()
        if not item:
            continue
        node, sep, addr = item.partition("-")
        if not sep or ":" not in addr:
            raise ValueError(f"controllerDLegerPeers entry {item!r} is not id-host:port")
        table[node] = addr
    if self_id not in table:
        raise ValueError(f"controllerDLegerSelfId {self_id!r} is not one of controllerDLegerPeers {peers!r}")
    return table[self_id], [a for n, a in table.items() if n != self_id]


class _ReplicatedLog(SyncObj):  # type: ignore[misc]
    def __init__(self, self_addr: str, partners: list[str], replicas: ReplicasInfoManager, store_dir: str) -> None:
        self._replicas = replicas  # (set before SyncObj.__init__: not part of pysyncobj's own state)
        conf = SyncObjConf(autoTick=False, journalFile=os.path.join(store_dir, "raft.journal"),
                           logCompactionMinEntries=1 << 40, logCompactionMinTime=1 << 40,
                           connectionRetryTime=1.0)
        super().__init__(self_addr, partners, conf)

    @replicated  # type: ignore[misc]
    def apply_event(self, event: Event) -> None:
        self._replicas.apply(event)


class RaftQuorum:
    def __init__(self, peers: str, self_id: str, replicas: ReplicasInfoManager, store_dir: str) -> None:
        self.self_addr, partners = parse_peers(peers, self_id)
        self.log = _ReplicatedLog(self.self_addr, partners, replicas, store_dir)
        self._tick: asyncio.Task[None] | None = None
        self._was_leader = False
        self.leader_since = 0.0  # loop time this controller last became leader

    def start(self) -> None:
        self._tick = asyncio.create_task(self._ticking(), name="controller-raft")

    async def _ticking(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.log.doTick(0.0)
            except Exception:
                log.exception("controller: Raft tick failed")
            leader = self.is_leader
            if leader and not self._was_leader:
                self.leader_since = loop.time()
                log.info("controller: %s is the Raft leader", self.self_addr)
            self._was_leader = leader
            await asyncio.sleep(TICK)

    @property
    def is_leader(self) -> bool:
        return bool(self.log._isLeader() and self.log.isReady())

    @property
    def leader(self) -> str:
        node = self.log._getLeader()
        return str(getattr(node, "address", node) or "")

    async def commit(self, event: Event) -> None:
        """Append ``event`` to the replicated log; returns once a majority has it (and it is applied here)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(result: Any, error: Any) -> None:
            if not fut.done():
                fut.set_result(error)

        self.log.apply_event(event, callback=done)
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT):
                error = await fut
        except TimeoutError:
            error = "timeout"
        if error != FAIL_REASON.SUCCESS:
            raise ControllerError(ResponseCode.CONTROLLER_NOT_LEADER,
                                  f"the controller quorum did not commit the change ({error}); leader {self.leader}")

    async def shutdown(self) -> None:
        await cancel_and_wait(self._tick)
        self.log.destroy()
