"""Taking a client's socket over from the WSGI server that called the application.

Each WSGI server hands its connection over differently; :func:`take_socket` knows them:

* gunicorn with ``-k gevent`` (``environ["gunicorn.socket"]``; bytes the client sent right
  after the head are taken from gunicorn's read buffer);
* gevent's ``pywsgi`` (the socket under ``environ["wsgi.input"]``, with its buffer);
* Werkzeug's development server (``environ["werkzeug.socket"]``, what ``flask run`` uses)
  and Django's ``runserver`` with ``"ignitia_sync.django"`` in ``INSTALLED_APPS``
  (``environ["ignitia_sync.socket"]``, the key any server can set to hand its socket over):
  threaded servers, where each connection is served in its own thread and hub;
* anything else that gives no socket (uWSGI, mod_wsgi) gets a 500 and one log line that
  says what to run instead.

Example (in a WSGI application, once the upgrade was checked)::

    taken = take_socket(environ)
    taken.sock.sendall(response_head)
    ...
    return taken.finish()
"""

from __future__ import annotations

import errno
import io
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

import gevent.socket

from .._support.logs import escape_for_log
from ..connection.transport import gevent_socket
from ..exceptions import HandshakeError

__all__ = ["HOSTS_KEY", "READER_KEY", "SOCKET_KEY", "Finish", "SocketTakenOver", "TakenSocket", "take_socket"]

log = logging.getLogger("ignitia_sync.wsgi")

#: The environ key where a WSGI server can put the client's socket for us to take over
#: (our Django ``runserver`` does); ``"ignitia_sync.reader"`` may hold its buffered reader.
SOCKET_KEY = "ignitia_sync.socket"
READER_KEY = "ignitia_sync.reader"
#: Set by our own server's WSGI fallback: the set a WSGI host adds itself to when it serves a
#: WebSocket there, so that stopping that server stops those hosts (and no other host of the process).
HOSTS_KEY = "ignitia_sync.hosts"


class Finish(Protocol):
    """How a served WebSocket's request ends: ``finish()`` or ``finish(start_response)``.

    Example (the end of a WSGI callable that served a WebSocket)::

        return taken.finish(start_response)
    """

    def __call__(self, start_response: Callable[..., Any] | None = None) -> Iterable[bytes]: ...


#: The status a server that writes its own access line logs for a served WebSocket.
_SWITCHING = "101 Switching Protocols"


class TakenSocket(NamedTuple):
    """The client's socket, taken over from the WSGI server (see :func:`take_socket`).

    Example::

        taken = take_socket(environ)
        if taken.threaded:          # Werkzeug, runserver: this request's own thread and hub
            registry.serve_from_threads()
    """

    #: The connection's socket, ours to use and close.
    sock: socket.socket
    #: What the client sent after the request head that the server had already read.
    buffered: bytes
    #: Ends the request so that the server writes nothing more and does not reuse the
    #: connection (call it last, from the WSGI callable). Given the request's
    #: ``start_response``, it first reports the 101 for the server's own access line;
    #: it raises :class:`SocketTakenOver`, except under Werkzeug, where it returns ``[]``
    #: after shutting the socket down (Werkzeug's debugger would turn the raise into a 500).
    finish: Finish
    #: The server runs each request in its own OS thread (one hub per connection).
    threaded: bool
    #: The server writes its own access line for this request (pywsgi, Werkzeug): once
    #: ``finish(start_response)`` gave it the 101 to log, ours goes to DEBUG (one line each).
    server_logs: bool = False


def take_socket(environ: dict[str, Any]) -> TakenSocket:
    """Take the client's socket from the WSGI server that called the application.

    Raises:
        HandshakeError: 500, this server does not hand out its sockets.

    Example (in a WSGI application, after the handshake was checked)::

        taken = take_socket(environ)
        taken.sock.sendall(response_head)
        ...
        return taken.finish()
    """
    gunicorn_socket = environ.get("gunicorn.socket")
    if gunicorn_socket is not None:
        return _from_gunicorn(environ, gunicorn_socket)
    for key in ("werkzeug.socket", SOCKET_KEY):
        server_socket = environ.get(key)
        if server_socket is not None:
            return _from_threaded_server(environ, server_socket)
    stream = environ.get("wsgi.input")
    raw = getattr(getattr(stream, "raw", None), "_sock", None)
    software = str(environ.get("SERVER_SOFTWARE", ""))
    if isinstance(raw, gevent.socket.socket) and "gevent" in software.lower():
        # pywsgi logs every request it handled; our server's fallback (its handler) does not log a 101.
        ours = software.startswith("ignitia_sync")
        return TakenSocket(raw, _drain_buffer(stream, raw), _end_request, threaded=False, server_logs=not ours)
    log.error(
        "WebSocket upgrade on %s, which does not hand its sockets to the application: "
        "serve the app with `ignitia-sync MODULE:app`, `gunicorn -k gevent`, or gevent.pywsgi",
        escape_for_log(str(environ.get("SERVER_SOFTWARE", "this WSGI server"))),
    )
    raise HandshakeError(500, "this server cannot upgrade to WebSocket")


def _from_gunicorn(environ: dict[str, Any], sock: Any) -> TakenSocket:
    if not isinstance(sock, gevent.socket.socket):
        log.error("gunicorn must run with the gevent worker (-k gevent) to serve WebSockets")
        raise HandshakeError(500, "this server cannot upgrade to WebSocket")
    buffered = b""
    unreader = getattr(getattr(environ.get("wsgi.input"), "reader", None), "unreader", None)
    buf = getattr(unreader, "buf", None)
    if isinstance(buf, io.BytesIO):  # what gunicorn read past the head
        buffered = buf.getvalue()
        setattr(unreader, "buf", io.BytesIO())  # noqa: B010 (gunicorn's unreader, untyped)
    return TakenSocket(sock, buffered, _end_request, threaded=False)


class SocketTakenOver(ConnectionAbortedError):
    """Ends the request of a served WebSocket, on every WSGI server, without a log line.

    Raised with ``errno.EPIPE``: every server we take sockets from reads it as "the client
    went away" and then writes nothing more, reuses nothing, and logs no error (gunicorn's
    async workers and pywsgi ignore EPIPE; Werkzeug and wsgiref ignore a ConnectionError).
    Raised where the server starts on the response (the application's return, or the
    first step of iterating it), so a framework that already called ``start_response``
    (Django's own handler) gets no header written after the 101 either.

    Example:
        >>> SocketTakenOver().errno == errno.EPIPE
        True
    """

    def __init__(self, reason: str = "the WebSocket has ended; this connection is not reused") -> None:
        super().__init__(errno.EPIPE, reason)


def _end_request(start_response: Callable[..., Any] | None = None) -> Iterable[bytes]:
    if start_response is not None:  # pywsgi and gunicorn only take note of it: nothing is written
        start_response(_SWITCHING, [])
    raise SocketTakenOver


def _from_threaded_server(environ: dict[str, Any], server_socket: socket.socket) -> TakenSocket:
    if isinstance(server_socket, ssl.SSLSocket):  # `flask run --cert`: stdlib TLS would block the hub
        log.error("WebSocket upgrade on a TLS development server: serve TLS with `ignitia-sync` or a proxy")
        raise HandshakeError(500, "this server cannot upgrade to WebSocket")
    # What the server's reader holds first: that toggles the blocking mode of the socket,
    # which the duplicate below shares (one open file, two descriptors).
    buffered = _drain_buffer(environ.get(READER_KEY) or environ.get("wsgi.input"), server_socket)
    # A duplicate descriptor: the server's own socket object stays valid for its clean-up
    # (Werkzeug polls it after the application returns), and ours is ours to close.
    ours = gevent_socket(server_socket.dup())

    werkzeug = environ.get("werkzeug.socket") is server_socket

    def finish(start_response: Callable[..., Any] | None = None) -> Iterable[bytes]:
        try:  # the peer sees the end now, and the server's next read sees EOF (no keep-alive reuse)
            server_socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if werkzeug and start_response is not None:
            # Werkzeug logs `"GET /path HTTP/1.1" 101 -`, then its header write fails with
            # EPIPE on the shut-down socket (its own descriptor: nothing reaches anyone), which
            # it takes for a dropped client, silently. No exception crosses `flask run --debug`'s
            # debugger, which would answer one with a 500 and a traceback.
            start_response(_SWITCHING, [])
            return []
        raise SocketTakenOver

    # A stdlib socket means real threads; under monkey-patching they are greenlets of one hub.
    return TakenSocket(
        ours, buffered, finish, threaded=not isinstance(server_socket, gevent.socket.socket), server_logs=werkzeug,
    )


def _drain_buffer(stream: Any, sock: socket.socket) -> bytes:
    """The bytes a buffered reader already holds, without waiting for more."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        data: bytes = stream.peek(1) if hasattr(stream, "peek") else b""
    except (OSError, ValueError):
        data = b""
    finally:
        sock.settimeout(timeout)
    return stream.read(len(data)) if data else b""
