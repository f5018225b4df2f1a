"""Transactional messages: half messages, commit/rollback, check-back (see :mod:`.service`)."""

from backends.broker.transaction.service import (
    TRANS_CHECK_MAX_TIME_TOPIC,
    TransactionalMessageService,
    TransactionError,
)

__all__ = ["TRANS_CHECK_MAX_TIME_TOPIC", "TransactionError", "TransactionalMessageService"]
