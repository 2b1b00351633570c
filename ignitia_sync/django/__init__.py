"""Django integration: WebSocket views in ``urls.py``, behind Django's middleware chain.

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

``wsgi.py`` stays the one ``django-admin startproject`` wrote (Django's own
``get_wsgi_application()``). Serve it with ``ignitia-sync myproject.wsgi:application``,
``gunicorn -k ignitia_sync.gunicorn.Worker myproject.wsgi`` or gevent's pywsgi; in
development, with ``"ignitia_sync.django"`` in ``INSTALLED_APPS`` (before
``"django.contrib.staticfiles"``), ``manage.py runserver`` serves them too, with its
autoreloader. Settings: ``IGNITIA_SYNC`` in Django's settings, a dict of
:class:`~ignitia_sync.hosting.host.HostSettings` fields (``max_message_size``,
``max_connections_per_ip``...); ``IGNITIA_SYNC_BACKPLANE`` (a Redis URL) spreads rooms and
broadcasts over every process.

Database connections: the one the middleware used is released before the handler starts
(``close_old_connections``); a handler that uses the ORM holds a connection while it runs,
as any Django request does, and it is released when the handler ends. WebSocket views are
never wrapped in ``ATOMIC_REQUESTS``' transaction (a connection lasts for hours): each ORM
call of a handler commits on its own unless the handler opens ``transaction.atomic()``. A
long-lived handler that touches the ORM now and then should call
``django.db.close_old_connections()`` after each use, so that ``CONN_MAX_AGE`` applies.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .._support.extras import needs
from ..connection.connection import WebSocketConnection
from ..handlers import Handler
from ..hosting.host import HostSettings, Target
from ..router import RouteOptions
from ..wsgi import Refused, WebSocketHost, upgrade_required

with needs("ignitia_sync.django", "Django", extra="django", packages=("django",)):
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.wsgi import get_wsgi_application as django_wsgi_application
    from django.db import close_old_connections, transaction
    from django.http import HttpRequest, HttpResponse

__all__ = ["WebSocketApplication", "get_wsgi_application", "websocket_view"]

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
            settings=HostSettings(**getattr(settings, "IGNITIA_SYNC", {})),
            backplane=getattr(settings, "IGNITIA_SYNC_BACKPLANE", None),
        )
    return _host


class WebSocketApplication:
    """Django's WSGI application, unchanged: kept for ``wsgi.py`` files written for older releases.

    WebSocket views now work behind Django's own ``get_wsgi_application()``; this wrapper
    only calls it.
    """

    def __init__(self, app: WSGIHandler) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI entry point."""
        response: Iterable[bytes] = self.app(environ, start_response)
        return response


def get_wsgi_application() -> WSGIHandler:
    """Django's own ``get_wsgi_application()`` (kept so that older ``wsgi.py`` files still work)."""
    return django_wsgi_application()


class _Upgraded(HttpResponse):  # type: ignore[misc]
    """The response of a served upgrade: when the server starts on it, the request ends.

    Django calls ``start_response`` with it, then the server iterates it: that first step
    raises :class:`~ignitia_sync.hosting.sockets.SocketTakenOver`, so nothing is written
    after the 101 and the connection is not reused; ``close()`` still runs (Django's
    ``request_finished``: database connections are released).
    """

    def __init__(self, finish: Callable[[], Iterable[bytes]]) -> None:
        super().__init__(status=101)  # what a server that logs the request (pywsgi, gunicorn's access log) writes
        self._finish = finish

    def __iter__(self) -> Any:
        return iter(self._finish())


class _DjangoHandler(Handler):
    """A Django WebSocket view's handler: ``handler(request, ws, **url_kwargs)``."""

    __slots__ = ()
    leading = ("request", "ws")
    params_known = False  # the URLconf's kwargs are known per request


def websocket_view(handler: Callable[..., Any], **options: Any) -> Callable[..., HttpResponse]:
    """A Django view that upgrades to WebSocket and runs ``handler(request, ws, *args, **kwargs)``.

    ``options`` are per-view connection settings (``max_message_size``, ...), plus
    ``middleware`` (upgrade middleware such as ``OriginCheck``) and ``rate_limit`` (a
    :class:`~ignitia_sync.middleware.RateLimit`), as on a router's route. A request that is
    not an upgrade gets 426 (with ``Upgrade: websocket`` where the server lets a view send
    it: not under ``runserver``). Decorators such as ``login_required`` around the view answer
    before the upgrade, with their own status. The view is CSRF-exempt and never runs in
    ``ATOMIC_REQUESTS``' transaction (it is marked ``transaction.non_atomic_requests``, which
    ``functools.wraps`` decorators such as ``login_required`` carry over).
    """
    ours, _ = RouteOptions.parse(options)
    _DjangoHandler(handler).check(f"websocket_view({getattr(handler, '__name__', handler)})", ())  # (request, ws)

    @functools.wraps(handler)
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        environ = request.META
        if "websocket" not in environ.get("HTTP_UPGRADE", "").lower():
            return _respond(upgrade_required(), environ)
        current = host()

        def run(ws: WebSocketConnection) -> None:
            handler(request, ws, *args, **kwargs)

        match = getattr(request, "resolver_match", None)
        target = Target(
            Handler(run), {}, ours.settings(current.connection_settings), ours.middleware, ours.rate_limit,
            getattr(match, "route", "") or "",
        )
        close_old_connections()  # the middleware's connection is not held for the socket's life
        try:
            outcome = current.upgrade_to(environ, target)
        finally:
            close_old_connections()
        if isinstance(outcome, Refused):
            return _respond(outcome, environ)
        return _Upgraded(outcome.finish)

    view.csrf_exempt = True  # type: ignore[attr-defined]
    atomic_free: Callable[..., HttpResponse] = transaction.non_atomic_requests(view)
    return atomic_free


def _respond(refused: Refused, environ: dict[str, Any]) -> HttpResponse:
    return HttpResponse(refused.body(), status=refused.error.status, headers=dict(refused.headers(environ)))
