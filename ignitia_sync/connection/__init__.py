"""One WebSocket connection on gevent: the user API and what serves it.

``connection`` is what a handler holds (:class:`WebSocketConnection`); ``transport`` moves
its bytes; ``inbox`` queues what arrived; ``keepalive`` pings and times out.

Example:
    >>> from ignitia_sync.connection import WebSocketConnection
    >>> WebSocketConnection.__name__
    'WebSocketConnection'
"""

from .connection import RegistryAPI, WebSocketConnection

__all__ = ["RegistryAPI", "WebSocketConnection"]
