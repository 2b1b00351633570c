"""ignitia_sync: a WebSocket server for blocking Python code, on gevent and wsproto.

A port of the WebSocket part of the Ignitia web framework. Importing it patches nothing;
the ``ignitia-sync`` command and the examples monkey-patch with gevent first.

Example:
    >>> from ignitia_sync import Message, Router, Server
    >>> def echo(ws):
    ...     while (message := ws.recv()) is not None:
    ...         match message:
    ...             case Message.Text(text):
    ...                 ws.send_text(f"Echo: {text}")
    ...             case Message.Binary(data):
    ...                 ws.send_bytes(data)
    ...             case Message.Close(_):
    ...                 break
    >>> app = Router().websocket("/echo", echo)
    >>> from ignitia_sync.testing import TestClient  # Server(app, ("127.0.0.1", 3000)).ignitia() serves it
    >>> with TestClient(app) as client:
    ...     ws = client.connect("/echo")
    ...     ws.send_text("hi")
    ...     ws.recv(timeout=5)
    Text(data='Echo: hi')
"""

from __future__ import annotations

import logging

from ._support import moved
from .broadcast.registry import Backplane, LocalBackplane, Registry
from .connection.connection import WebSocketConnection
from .exceptions import (
    ConnectionClosed,
    HandshakeError,
    IgnitiaError,
    InvalidHandshake,
    MessageDecodeError,
    MessageDropped,
    ProtocolError,
)
from .handlers import (
    BatchHandler,
    Handler,
    MessageHandler,
    websocket_batch_handler,
    websocket_handler,
    websocket_message_handler,
)
from .hosting.server import Server, ServerSettings, run
from .message import CloseFrame, Message
from .middleware import (
    AuthInfo,
    AuthMiddleware,
    KeyedLimiter,
    OriginCheck,
    RateLimit,
    SlidingWindow,
    TokenBucket,
)
from .router import Route, Router
from .sansio.framing import native_speedups
from .sansio.http import Headers, Request, Response
from .settings import ConnectionSettings

__version__ = "0.1.0"

__all__ = [
    "AuthInfo",
    "AuthMiddleware",
    "Backplane",
    "BatchHandler",
    "CloseFrame",
    "ConnectionClosed",
    "ConnectionSettings",
    "Handler",
    "HandshakeError",
    "Headers",
    "IgnitiaError",
    "InvalidHandshake",
    "KeyedLimiter",
    "LocalBackplane",
    "Message",
    "MessageDecodeError",
    "MessageDropped",
    "MessageHandler",
    "OriginCheck",
    "ProtocolError",
    "RateLimit",
    "Registry",
    "Request",
    "Response",
    "Route",
    "Router",
    "Server",
    "ServerSettings",
    "SlidingWindow",
    "TokenBucket",
    "WebSocketConnection",
    "native_speedups",
    "run",
    "websocket_batch_handler",
    "websocket_handler",
    "websocket_message_handler",
    "__version__",
]

logging.getLogger("ignitia_sync").addHandler(logging.NullHandler())
moved.install()
