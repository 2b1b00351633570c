"""The blocking WebSocket client: :func:`connect` and :func:`reconnecting`.

Example::

    from ignitia_sync.client import connect
    with connect("ws://127.0.0.1:3000/echo") as ws:
        ws.send_text("hi")
        print(ws.recv(timeout=5))
"""

from .connect import (
    Backoff,
    ClientConnection,
    Reconnecting,
    connect,
    header_list,
    parse_url,
    reconnecting,
    retryable,
)

__all__ = [
    "Backoff", "ClientConnection", "Reconnecting", "connect", "header_list", "parse_url", "reconnecting", "retryable",
]
