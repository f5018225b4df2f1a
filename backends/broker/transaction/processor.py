"""END_TRANSACTION (37) remoting processor (RocketMQ's EndTransactionProcessor).

``register(server, broker)`` adds it to a RemotingServer; ``broker.transaction_service`` must be a
:class:`~backends.broker.transaction.service.TransactionalMessageService`. Header
(EndTransactionRequestHeader): producerGroup, tranStateTableOffset, commitLogOffset, commitOrRollback
(TransactionCommitType 8 / TransactionRollbackType 12 / TransactionNotType 0 = unknown: nothing to do),
fromTransactionCheck, msgId, transactionId, topic. Clients send it oneway; the server layer drops the
response of a oneway request, so the answer only reaches callers that asked for one.
"""

from __future__ import annotations

import logging
from typing import Any

from backends.broker.processor.common import guarded
from backends.model import SysFlag
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.header import Header

log = logging.getLogger("RocketmqTransaction")


def register(server: Any, broker: Any) -> None:
    @guarded
    async def end_transaction(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        cfg = getattr(broker, "config", None)
        if cfg is not None and getattr(cfg, "is_slave", False):
            return request.response(ResponseCode.SLAVE_NOT_AVAILABLE,
                                    "Slave broker does not support end transaction")
        svc = getattr(broker, "transaction_service", None)
        if svc is None:
            return request.response(ResponseCode.SYSTEM_ERROR, "transactions are not available on this broker")
        h = Header(request)
        kind = h.i("commitOrRollback")
        from_check = h.b("fromTransactionCheck", False)
        msg_id = h.s("msgId", "")
        if kind == SysFlag.TRANSACTION_NOT_TYPE:
            log.info("transaction %s state unknown%s; waiting for the check",
                     msg_id, " (from check)" if from_check else "")
            return None
        if kind not in (SysFlag.TRANSACTION_COMMIT_TYPE, SysFlag.TRANSACTION_ROLLBACK_TYPE):
            return request.response(ResponseCode.SYSTEM_ERROR, f"illegal commitOrRollback {kind}")
        await svc.end_transaction(
            producer_group=h.s("producerGroup", ""),
            commitlog_offset=h.i("commitLogOffset", -1),
            msg_id=msg_id,
            transaction_id=h.s("transactionId", ""),
            commit=kind == SysFlag.TRANSACTION_COMMIT_TYPE,
            from_check=from_check,
            topic=h.s("topic", ""),
            tran_state_table_offset=h.i("tranStateTableOffset", -1),
        )
        return request.response(ResponseCode.SUCCESS)

    server.register_processor(RequestCode.END_TRANSACTION, end_transaction)
