"""The blocking WebSocket client: :func:`connect` and :func:`reconnecting`.

The modules, by job: :mod:`~ignitia_sync.client.url` (what a URL names, which redirects
to follow; pure), :mod:`~ignitia_sync.client.sockets` (TCP, Unix, HTTP CONNECT proxy,
TLS), :mod:`~ignitia_sync.client.connection` (the handshake exchange, redirects,
:class:`ClientConnection`), :mod:`~ignitia_sync.client.reconnect` (the retry loop),
:mod:`~ignitia_sync.client.rooms` (the rooms wire format's events, envelopes and positions:
``reconnecting(url, rooms=True)``).

Example::

    from ignitia_sync.client import connect
    with connect("ws://127.0.0.1:3000/echo") as ws:
        ws.send_text("hi")
        print(ws.recv(timeout=5))
"""

from .._support.backoff import Backoff
from .connection import ClientConnection, connect
from .reconnect import Reconnecting, reconnecting, retryable
from .rooms import Gap, Joined, Left, Positions, Presence, RoomMessage, RoomsConnection, connect_rooms
from .url import header_list, parse_url

__all__ = [
    "Backoff", "ClientConnection", "Gap", "Joined", "Left", "Positions", "Presence", "Reconnecting", "RoomMessage",
    "RoomsConnection", "connect", "connect_rooms", "header_list", "parse_url", "reconnecting", "retryable",
]
