"""``manage.py runserver`` with WebSocket views, on its port, with Django's autoreloader.

Django's development server, unchanged but for two things: each request's socket is
offered to WebSocket views (``environ["ignitia_sync.socket"]``), and ignitia_sync's log lines
are shown. Like Django's own server it
runs each request in a thread; a WebSocket is served in its request's thread, so a view
that blocks holds only its own connection. When the autoreloader restarts the process
(or on Ctrl-C) every WebSocket is closed with 1001 first, so clients reconnect at once.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.apps import apps
from django.core.management.commands.runserver import Command as DjangoRunserver
from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer

from ....wsgi import READER_KEY, SOCKET_KEY

if apps.ready and apps.is_installed("django.contrib.staticfiles"):  # keep its static files and options
    from django.contrib.staticfiles.management.commands.runserver import Command as Base
else:
    Base = DjangoRunserver


class WebSocketRequestHandler(WSGIRequestHandler):  # type: ignore[misc]
    """Django's request handler, handing its socket and buffered reader to WebSocket views.

    Example: ``environ["ignitia_sync.socket"]`` is then the request's socket.
    """

    def get_environ(self) -> dict[str, Any]:
        """Django's environ, plus the socket and the reader that holds bytes read past the head."""
        environ: dict[str, Any] = super().get_environ()
        environ[SOCKET_KEY] = self.connection
        environ[READER_KEY] = self.rfile
        return environ


class WebSocketServer(WSGIServer):  # type: ignore[misc]
    """Django's development server class, with :class:`WebSocketRequestHandler`.

    While the process exits (a reload, Ctrl-C) and its WebSockets get their 1001, a client
    that reconnects at once may still be accepted here, where no thread can be started any
    more (Python 3.12+): it is then refused quietly (the client retries) instead of a
    traceback in the log.

    Example: ``Command.server_cls`` is this class.
    """

    def __init__(self, address: Any, handler_class: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(address, WebSocketRequestHandler, *args, **kwargs)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Django's error report, except for a request that came in while the process exits.

        socketserver then closes that connection (the client sees it end and retries).
        """
        error = sys.exc_info()[1]
        if isinstance(error, RuntimeError) and "shutdown" in str(error):
            return  # "can't create new thread at interpreter shutdown"
        super().handle_error(request, client_address)


class Command(Base):  # type: ignore[misc]
    """``runserver``, serving WebSocket views as well.

    Example: ``python manage.py runserver 8000`` with ``"ignitia_sync.django"`` installed.
    """

    help = "Starts Django's development server, with WebSocket views (ignitia_sync)."
    server_cls = WebSocketServer

    def get_handler(self, *args: Any, **options: Any) -> Any:
        """Django's (or staticfiles') handler; ignitia_sync's log lines shown."""
        handler = super().get_handler(*args, **options)
        _show_websocket_log()
        return handler


def _show_websocket_log() -> None:
    """Print ignitia_sync's lines (an access line per WebSocket) unless logging says otherwise."""
    ours = logging.getLogger("ignitia_sync")
    only_null = all(isinstance(handler, logging.NullHandler) for handler in ours.handlers)
    if only_null and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%d/%b/%Y %H:%M:%S"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)


__all__ = ["Command", "WebSocketRequestHandler", "WebSocketServer"]
