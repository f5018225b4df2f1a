"""Queue locks for orderly 4.x consumers (RocketMQ's RebalanceLockManager): LOCK_BATCH_MQ 41 /
UNLOCK_BATCH_MQ 42. A lock belongs to one client of a group and expires after 60 s unless renewed."""

from __future__ import annotations

import time

LOCK_MAX_LIVE_SECONDS = 60.0

MQ = tuple[str, str, int]  # topic, broker name, queue id


class RebalanceLockManager:
    def __init__(self) -> None:
        # group -> mq -> (client id, last update)
        self._table: dict[str, dict[MQ, tuple[str, float]]] = {}

    def try_lock_batch(self, group: str, mqs: list[MQ], client_id: str) -> list[MQ]:
        now = time.monotonic()
        locks = self._table.setdefault(group, {})
        ok = []
        for mq in mqs:
            held = locks.get(mq)
            if held is None or held[0] == client_id or now - held[1] > LOCK_MAX_LIVE_SECONDS:
                locks[mq] = (client_id, now)
                ok.append(mq)
        return ok

    def unlock_batch(self, group: str, mqs: list[MQ], client_id: str) -> None:
        locks = self._table.get(group)
        if not locks:
            return
        for mq in mqs:
            held = locks.get(mq)
            if held is not None and held[0] == client_id:
                del locks[mq]

    def is_locked(self, group: str, mq: MQ, client_id: str) -> bool:
        held = self._table.get(group, {}).get(mq)
        return held is not None and held[0] == client_id and time.monotonic() - held[1] <= LOCK_MAX_LIVE_SECONDS
