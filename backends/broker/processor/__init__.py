"""The broker's remoting processors: thin translators from RemotingCommand to the controller's API."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backends.broker.controller import BrokerController
    from backends.remoting.server import RemotingServer


def register_all(server: RemotingServer, broker: BrokerController) -> None:
    from backends.broker.processor.admin_processor import register as register_admin
    from backends.broker.processor.client_processor import register as register_client
    from backends.broker.processor.pull_processor import register as register_pull
    from backends.broker.processor.send_processor import register as register_send

    register_send(server, broker)
    register_pull(server, broker)
    register_client(server, broker)
    register_admin(server, broker)
