"""Serve one accepted connection, whatever the host: register, run the handler, close, forget.

The built-in server calls :func:`serve_connection` once per upgrade; a WSGI integration or
the test client calls it the same way. The close code follows from how the handler ended:
1000 when it returned, 1011 when it raised, 1001 when the host killed it at shutdown.

Example:
    >>> def handler(ws):
    ...     ws.send_text("hello")
    >>> from ignitia_sync import Router
    >>> from ignitia_sync.testing import TestClient
    >>> with TestClient(Router().websocket("/", handler)) as client:  # its server calls serve_connection
    ...     ws = client.connect("/")
    ...     ws.recv(timeout=5), ws.recv(timeout=5)  # the handler returned: 1000
    (Text(data='hello'), Close(frame=CloseFrame(code=1000, reason='')))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import gevent

from ..broadcast.registry import Registry
from ..broadcast.rooms_wire import read_hello
from ..connection.connection import WebSocketConnection
from ..exceptions import ConnectionClosed
from ..handlers import Handler
from ..sansio.http import escape_for_log

__all__ = ["log_access", "serve_connection"]

log = logging.getLogger("ignitia_sync.server")
access_log = logging.getLogger("ignitia_sync.access")


def log_access(ws: WebSocketConnection, level: int = logging.INFO) -> None:
    """Write the one access line of a closed connection (path only: no query, no token).

    ``level``: DEBUG where the WSGI server writes its own line for the request (pywsgi,
    Werkzeug), so that a WebSocket has one access line by default.

    Example line: ``127.0.0.1 "GET /chat" 101 12.031s in=42/3120B out=40/2980B close=1000``
    """
    access_log.log(
        level,
        '%s "GET %s" 101 %.3fs in=%d/%dB out=%d/%dB close=%d',
        ws.request.client_ip, escape_for_log(ws.request.path), time.monotonic() - ws.opened_at,
        ws.messages_in, ws.bytes_in, ws.messages_out, ws.bytes_out, ws.close_code or 1006,
    )


def serve_connection(
    ws: WebSocketConnection,
    handler: Handler,
    params: Mapping[str, str] | None = None,
    *,
    registry: Registry | None = None,
    on_closed: Callable[[WebSocketConnection], None] | None = None,
    hello_timeout: float | None = None,
) -> None:
    """Run ``handler`` on ``ws`` from start to closed socket; returns when all is released.

    Args:
        ws: a connection made after the 101 was sent, not yet started.
        handler: the route's handler.
        params: the path parameters passed to the handler.
        registry: where the connection is listed (rooms, broadcast) while it is open.
        on_closed: called last, with the closed connection (accounting, access log); it
            runs even when the serving greenlet is killed.
        hello_timeout: the connection speaks the rooms wire format: its client's hello is
            read first (at most this many seconds); the handler runs only after a good one.

    A handler killed with ``GreenletExit`` (a host's shutdown) closes with 1001; the
    greenlet then ends normally.
    """
    transport = ws._transport
    code, reason = 1000, ""
    try:
        try:
            transport.start()
            if registry is not None:
                registry.add(ws)
            if hello_timeout is not None and not read_hello(ws, hello_timeout):
                pass  # closed already (a broken hello, or the client left): no handler
            elif params:
                handler(ws, **params)
            elif type(handler) is Handler:
                # Call the function itself: every call through __call__ or *args nests the C
                # stack, which gevent copies aside (~800 bytes a level) while a handler waits.
                handler.func(ws)
            else:
                handler(ws)
        except ConnectionClosed:
            log.debug("handler for %s ended: connection closed", escape_for_log(ws.request.path))
        except gevent.GreenletExit:
            code, reason = 1001, "Server shutdown"
        except Exception:
            log.exception(
                "handler for %s from %s raised", escape_for_log(ws.request.path), ws.remote_address[0]
            )
            code, reason = 1011, ""
        finally:
            if registry is not None:
                registry.discard(ws)
        transport.finish(code, reason)  # tears down even when killed meanwhile
    finally:
        transport.teardown()
        if on_closed is not None:
            on_closed(ws)
