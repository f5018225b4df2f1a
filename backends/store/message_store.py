"""MessageStore: the broker's storage engine (RocketMQ's DefaultMessageStore).

CONTRACT STUB: the signatures below are what the broker codes against; the store work fills them in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from backends.model import GetMessageResult, Message, MessageExt, PutMessageResult


@dataclass(slots=True)
class MessageStoreConfig:
    """Store keys of broker.conf (RocketMQ's MessageStoreConfig), snake_case here."""

    store_path_root_dir: str
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
    # Test hook: keep every byte not yet fdatasync'ed out of the files until a flush, so that
    # simulate_power_loss() can drop it (proves SYNC_FLUSH loses nothing, ASYNC_FLUSH can).
    power_loss_test_mode: bool = False


# Called after a batch is durable per the flush policy and dispatched to the consume queues:
# (topic, queue_id, last queue offset written + 1) -- wakes long-polling consumers.
ArrivalListener = Callable[[str, int, int], None]


class MessageStore:
    def __init__(self, config: MessageStoreConfig) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Load files; recover (abort file present -> full CRC scan from the checkpoint, torn tail cut)."""
        raise NotImplementedError

    async def shutdown(self) -> None:
        """Flush everything, write the checkpoint, remove the abort file."""
        raise NotImplementedError

    async def put_messages(self, messages: list[Message]) -> PutMessageResult:
        """Append (each message has its topic and queue_id set) and return after the flush policy."""
        raise NotImplementedError

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
        and the filter needs properties, with the record bytes."""
        raise NotImplementedError

    def get_max_offset_in_queue(self, topic: str, queue_id: int) -> int:
        raise NotImplementedError

    def get_min_offset_in_queue(self, topic: str, queue_id: int) -> int:
        raise NotImplementedError

    def get_offset_in_queue_by_time(self, topic: str, queue_id: int, timestamp_ms: int) -> int:
        raise NotImplementedError

    def get_earliest_message_time(self, topic: str, queue_id: int) -> int:
        raise NotImplementedError

    def get_message_store_timestamp(self, topic: str, queue_id: int, queue_offset: int) -> int:
        raise NotImplementedError

    def look_message_by_offset(self, commitlog_offset: int, size: int = -1) -> MessageExt | None:
        raise NotImplementedError

    def query_message(
        self, topic: str, key: str, max_num: int, begin_ms: int = 0, end_ms: int = 2**62
    ) -> list[MessageExt]:
        """Messages of ``topic`` whose KEYS contain ``key`` or whose UNIQ_KEY is ``key``."""
        raise NotImplementedError

    def delete_topics(self, topics: set[str]) -> None:
        raise NotImplementedError

    def get_max_phy_offset(self) -> int:
        raise NotImplementedError

    def get_min_phy_offset(self) -> int:
        raise NotImplementedError

    def add_arrival_listener(self, listener: ArrivalListener) -> None:
        raise NotImplementedError

    def simulate_power_loss(self) -> None:
        """Test hook (power_loss_test_mode): drop every byte not yet fdatasync'ed, as a crash would."""
        raise NotImplementedError
