"""Errors of the remoting transport (response codes are not errors: they come back as commands)."""

from __future__ import annotations


class RemotingError(Exception):
    """Connect failure, timeout or closed connection (not a response code: those come back as commands)."""


class RemotingTimeoutError(RemotingError, TimeoutError):
    """No response within the call's timeout."""


class RemotingConnectError(RemotingError, ConnectionError):
    """The address could not be reached."""
