"""Filter errors."""

from __future__ import annotations


class FilterError(ValueError):
    """A subscription expression that does not parse (or an unknown expression type).

    The proxy maps it to ``ILLEGAL_FILTER_EXPRESSION`` (40010), the broker's remoting processors to
    ``SUBSCRIPTION_PARSE_FAILED`` (23). ``str(error)`` is a message fit for the client.
    """
