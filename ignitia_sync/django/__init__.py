"""Django integration: WebSocket views in ``urls.py``, behind Django's middleware chain.

In ``wsgi.py``::

    from ignitia_sync.django import get_wsgi_application
    application = get_wsgi_application()

In ``urls.py``::

    from ignitia_sync.django import websocket_view
    urlpatterns = [
        path("ws/chat/<str:room>/", websocket_view(chat)),
        path("ws/private/", login_required(websocket_view(private))),  # refused before the 101
    ]

    def chat(request, ws, room):          # request.user, request.session are there
        ws.send_text(f"hello {request.user} in {room}")
        for message in ws:
            ...

``IGNITIA_SYNC_BACKPLANE`` (a Redis URL) spreads rooms and broadcasts over every process.

Serve it with ``ignitia-sync myproject.wsgi:application`` or
``gunicorn -k ignitia_sync.gunicorn.Worker myproject.wsgi``; in development, with
``"ignitia_sync.django"`` in ``INSTALLED_APPS`` (before ``"django.contrib.staticfiles"``),
``manage.py runserver`` serves them too, with its autoreloader. Settings: ``IGNITIA_SYNC``
in Django's settings, a dict of :class:`~ignitia_sync.settings.ConnectionSettings` fields.

Database connections: the one the middleware used is released before the handler starts
(``close_old_connections``); a handler that uses the ORM holds a connection while it runs,
as any Django request does, and it is released when the handler ends. A long-lived handler
that touches the ORM now and then should call ``django.db.close_old_connections()`` after
each use, so that ``CONN_MAX_AGE`` applies.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.util import is_hop_by_hop

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application as django_wsgi_application
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse

from ..connection import WebSocketConnection
from ..handlers import Handler
from ..settings import ConnectionSettings
from ..wsgi import SOCKET_KEY, Refused, WebSocketHost

__all__ = ["WebSocketApplication", "get_wsgi_application", "websocket_view"]

log = logging.getLogger("ignitia_sync.django")

#: Set in the environ by a WebSocket view that served its request: the call that ends it.
_FINISH = "ignitia_sync.finish"
#: Set by WebSocketApplication: WebSocket views can run.
_ACTIVE = "ignitia_sync.django"
_host: WebSocketHost | None = None
_host_lock = threading.Lock()  # a real lock under runserver; gevent's under monkey-patching: both fine


def host() -> WebSocketHost:
    """This process's WebSocket host (settings from ``settings.IGNITIA_SYNC``, the registry)."""
    global _host
    if _host is not None:
        return _host
    with _host_lock:  # runserver's request threads may all ask first
        if _host is not None:
            return _host
        from django.conf import settings  # lazily: the module imports before Django is set up

        _host = WebSocketHost(
            settings=ConnectionSettings(**getattr(settings, "IGNITIA_SYNC", {})),
            backplane=getattr(settings, "IGNITIA_SYNC_BACKPLANE", None),
        )
    return _host


class WebSocketApplication:
    """Django's WSGI application, able to hand a request over to a WebSocket view.

    Django writes every view's response through ``start_response``; after an upgrade that
    would put an HTTP response behind our 101. This wrapper swallows it for WebSocket views.
    """

    def __init__(self, app: WSGIHandler) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI entry point."""
        environ[_ACTIVE] = True

        def guarded(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            if _FINISH in environ:  # a WebSocket was served: nothing may follow the 101
                return lambda data: None
            if SOCKET_KEY in environ:  # runserver's wsgiref refuses hop-by-hop headers (426's Upgrade)
                headers = [(name, value) for name, value in headers if not is_hop_by_hop(name)]
            write: Callable[[bytes], None] = (
                start_response(status, headers, exc_info) if exc_info else start_response(status, headers)
            )
            return write

        response: Iterable[bytes] = self.app(environ, guarded)
        finish = environ.get(_FINISH)
        if finish is None:
            return response
        close = getattr(response, "close", None)
        if close is not None:
            close()  # Django's request_finished: database connections are released
        result: Iterable[bytes] = finish()
        return result


def get_wsgi_application() -> WebSocketApplication:
    """Django's ``get_wsgi_application()``, with WebSocket views enabled (use it in ``wsgi.py``)."""
    return WebSocketApplication(django_wsgi_application())


def websocket_view(
    handler: Callable[..., Any], **options: Any
) -> Callable[..., HttpResponse]:
    """A Django view that upgrades to WebSocket and runs ``handler(request, ws, *args, **kwargs)``.

    ``options`` are per-view connection settings (``max_message_size``, ...), plus
    ``middleware`` (upgrade middleware such as ``OriginCheck``) and ``rate_limit`` (a
    :class:`~ignitia_sync.middleware.RateLimit`), as on a router's route. A request that is
    not an upgrade gets 426. Decorators such as ``login_required`` around the view answer
    before the upgrade, with their own status.
    """
    middleware = tuple(options.pop("middleware", ()))
    rate_limit = options.pop("rate_limit", None)
    if options:
        ConnectionSettings(**options)  # bad values fail here, when urls.py is loaded

    @functools.wraps(handler)
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        environ = request.META
        if "websocket" not in environ.get("HTTP_UPGRADE", "").lower():
            return HttpResponse("this URL speaks WebSocket\n", status=426, headers={"Upgrade": "websocket"})
        if not environ.get(_ACTIVE):
            log.error("WebSocket views need ignitia_sync.django.get_wsgi_application() in wsgi.py")
            return HttpResponse("this server cannot upgrade to WebSocket\n", status=500)
        current = host()
        settings = dataclasses.replace(current.settings, **options) if options else current.settings

        def run(ws: WebSocketConnection) -> None:
            handler(request, ws, *args, **kwargs)

        close_old_connections()  # the middleware's connection is not held for the socket's life
        try:
            outcome = current.upgrade(
                environ, Handler(run), {}, options=settings, middleware=middleware, rate_limit=rate_limit
            )
        finally:
            close_old_connections()
        if isinstance(outcome, Refused):
            error = outcome.error
            return HttpResponse(error.body + "\n", status=error.status, headers=dict(error.headers))
        environ[_FINISH] = outcome.finish
        return HttpResponse(status=200)  # never written: WebSocketApplication swallows it

    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view

