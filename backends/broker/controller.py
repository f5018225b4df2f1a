"""BrokerController: assembles one broker (RocketMQ's BrokerController).

CONTRACT STUB: the attribute and method names below are what the POP, timer/transaction and proxy
work code against; the broker work fills them in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from backends.model import Message, MessageExt, PutMessageResult

if TYPE_CHECKING:
    from backends.broker.broker_config import BrokerConfig
    from backends.store.message_store import MessageStore


class BrokerController:
    config: BrokerConfig
    message_store: MessageStore
    topic_config_manager: object  # TopicConfigManager: select_topic_config(topic) -> TopicConfig | None,
    #   create_topic_if_absent(topic, read_queue_nums, write_queue_nums, perm=..., attributes=None) -> TopicConfig,
    #   update_topic_config(TopicConfig), delete_topic(topic)
    subscription_group_manager: object  # find_subscription_group_config(group) -> SubscriptionGroupConfig | None
    #   (auto-creates when autoCreateSubscriptionGroup), update_subscription_group_config(cfg)
    consumer_offset_manager: object  # query_offset(group, topic, queue_id) -> int (-1: none),
    #   commit_offset(client_host, group, topic, queue_id, offset)
    pop_service: object  # backends.broker.pop: PopMessageService (pop, ack, change_invisible_time, ...)
    timer_service: object  # backends.broker.timer: TimerMessageService
    transaction_service: object  # backends.broker.transaction: TransactionalMessageService

    @property
    def broker_addr(self) -> str:
        """"brokerIP1:listenPort" as registered with the NameServer."""
        raise NotImplementedError

    async def put_messages(self, messages: list[Message]) -> PutMessageResult:
        """The one write path: transaction half / timer interception, then message_store.put_messages."""
        raise NotImplementedError

    async def check_transaction_state(self, producer_group: str, msg: MessageExt, transaction_id: str) -> bool:
        """Ask one live producer of ``producer_group`` (remoting CHECK_TRANSACTION_STATE or an in-process
        listener registered by a Local-mode proxy) about a half message; False when none is online."""
        raise NotImplementedError

    def add_local_transaction_checker(
        self, checker: Callable[[str, MessageExt, str], Awaitable[None]]
    ) -> None:
        """A Local-mode proxy registers itself as a producer-side checker."""
        raise NotImplementedError
