"""Plain HTTP on a :class:`~ignitia_sync.hosting.server.Server`'s port: a WSGI app, through gevent's pywsgi.

The server reads every request head itself, to route upgrades. A connection whose request
is not an upgrade to one of its routes becomes a :class:`HandOff` (the socket and the bytes
read so far); :meth:`PywsgiFallback.serve` gives it to pywsgi's request handler, which reads
those bytes again (:class:`Replay`), then the rest of the connection (keep-alive, chunked
bodies), and answers with the WSGI app. pywsgi's ``WSGIServer`` is never started: it only
lends its ``handler_class`` (subclassed here) and its environ.

pywsgi reads the requests of a connection in a loop and would wait for the next request head
forever. Here each head, the wait for it included, has a deadline (``head_timeout``: the
server's ``handshake_timeout``), and the server is told when a connection starts and stops
waiting for one (:class:`HeadWaits`), so that it counts such connections as pending
handshakes and may close the oldest silent one when it needs the place.

Example:
    >>> import gevent.socket
    >>> def hello(environ, start_response):
    ...     start_response("200 OK", [("Content-Type", "text/plain")])
    ...     return [b"hello from " + environ["SERVER_NAME"].encode()]
    >>> fallback = PywsgiFallback(hello, ("example.test", 80))
    >>> ours, theirs = gevent.socket.socketpair()
    >>> already_read = b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n"
    >>> fallback.serve(HandOff(theirs, already_read), ("127.0.0.1", 50000))
    >>> response = ours.makefile("rb").read()
    >>> response.split(b"\\r\\n")[0], response.endswith(b"hello from example.test")
    (b'HTTP/1.1 200 OK', True)
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import gevent

if TYPE_CHECKING:
    import socket

__all__ = ["HandOff", "HeadWaits", "PywsgiFallback", "Replay"]

access_log = logging.getLogger("ignitia_sync.access")
log = logging.getLogger("ignitia_sync.server")


class HandOff(NamedTuple):
    """A connection whose first request is for the WSGI app, with the bytes read so far.

    Example:
        >>> HandOff(None, b"GET / HTTP/1.1\\r\\n").data[:3]
        b'GET'
    """

    sock: socket.socket
    data: bytes


class Replay(io.RawIOBase):
    """The bytes we read while routing, then the socket: what pywsgi reads a request from.

    Example:
        >>> import gevent.socket
        >>> ours, theirs = gevent.socket.socketpair()
        >>> ours.sendall(b" world")
        >>> stream = io.BufferedReader(Replay(b"hello", theirs))
        >>> stream.read(11)
        b'hello world'
    """

    def __init__(self, data: bytes, sock: socket.socket) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._sock = sock  # found by hosting.sockets.take_socket, as on pywsgi's own file

    def readable(self) -> bool:
        """Always True: a stream to read from."""
        return True

    def readinto(self, buffer: Any) -> int | None:
        """Fill ``buffer`` from the bytes read before, then from the socket (None: nothing yet)."""
        if self._data:
            size = min(len(buffer), len(self._data))
            buffer[:size] = self._data[:size]
            self._data = self._data[size:]
            return size
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:
            return None


class HeadWaits(Protocol):
    """What a server is told of a handed-off connection: it waits for a request head, or has read one.

    ``begin()`` is called as pywsgi's handler starts to read a request line (the connection
    may sit idle in keep-alive until it comes), ``end()`` once that request's head is read
    or the wait ended otherwise (a deadline, an error, EOF); always in pairs.
    """

    def begin(self) -> None:
        """The connection waits for its next request head."""

    def end(self) -> None:
        """The wait is over."""


@functools.cache
def _handler_class(base: type[Any]) -> type[Any]:
    """pywsgi's request handler with a deadline (and the server told) for each request head.

    It writes no access line for a WebSocket the WSGI app served (its status is the 101 that
    ``finish(start_response)`` reported): ours, on the same logger, is that connection's line.
    """

    class BoundedHeads(base):  # type: ignore[misc]
        head_timeout: float | None = None
        head_waits: HeadWaits | None = None
        #: The deadline of the head being read (or of the last one): a new Timeout for each,
        #: as a gevent Timeout started again after cancel() may fire at its first deadline.
        head_deadline: gevent.Timeout | None = None
        _in_head = False

        def read_requestline(self) -> Any:
            self._in_head = True
            if self.head_waits is not None:
                self.head_waits.begin()
            if self.head_timeout is not None:
                self.head_deadline = gevent.Timeout(self.head_timeout)
                self.head_deadline.start()
            return super().read_requestline()

        def read_request(self, raw_requestline: str) -> Any:
            try:
                return super().read_request(raw_requestline)
            finally:
                self._head_read()

        def handle_one_request(self) -> Any:
            try:
                return super().handle_one_request()
            finally:
                self._head_read()  # a request line refused (414) or never come (EOF)

        def log_request(self) -> None:
            status = self.status.decode("latin-1") if isinstance(self.status, bytes) else str(self.status or "")
            if not status.startswith("101"):  # a WebSocket the app served: its access line is ours
                super().log_request()

        def _head_read(self) -> None:
            if self._in_head:
                self._in_head = False
                if self.head_deadline is not None:
                    self.head_deadline.close()
                if self.head_waits is not None:
                    self.head_waits.end()

    BoundedHeads.__name__ = BoundedHeads.__qualname__ = f"BoundedHeads{base.__name__}"
    return BoundedHeads


class PywsgiFallback:
    """The WSGI app of a :class:`~ignitia_sync.hosting.server.Server`, served by pywsgi's handler.

    Args:
        app: the WSGI application.
        address: the server's ``(host, port)``: ``SERVER_NAME`` and ``SERVER_PORT``.
        https: the server serves ``wss://`` (and so ``https://``): ``wsgi.url_scheme``.
        head_timeout: seconds each request head may take, the wait for it (keep-alive)
            included; past it the connection is closed without an answer. None: no limit.

    Example:
        >>> fallback = PywsgiFallback(lambda environ, start_response: [], ("127.0.0.1", 8000), https=True)
        >>> fallback.environ["wsgi.url_scheme"], fallback.environ["SERVER_PORT"]
        ('https', '8000')
    """

    def __init__(
        self, app: Callable[..., Any], address: tuple[str, int], *, https: bool = False,
        head_timeout: float | None = None,
    ) -> None:
        from gevent.pywsgi import WSGIServer

        self.head_timeout = head_timeout

        # Never started: it only lends its request handler (HTTP/1.1, keep-alive, chunked
        # bodies) and its environ to the connections we hand it.
        self._server: Any = WSGIServer(
            address, app, log=access_log, error_log=logging.getLogger("ignitia_sync.wsgi"),
        )
        host, port = address[:2]
        self._server.environ.update(
            SERVER_NAME=str(host), SERVER_PORT=str(port), SERVER_SOFTWARE="ignitia_sync gevent.pywsgi",
            **({"wsgi.url_scheme": "https"} if https else {}),
        )

    @property
    def environ(self) -> dict[str, Any]:
        """The environ every request starts from (pywsgi's, with the server's name and port)."""
        environ: dict[str, Any] = self._server.environ
        return environ

    def serve(self, handoff: HandOff, address: tuple[Any, ...], waits: HeadWaits | None = None) -> None:
        """Answer the handed-off request, and the rest of its connection; close the socket after.

        Args:
            handoff: the socket and the bytes already read from it.
            address: the peer's address (``REMOTE_ADDR``).
            waits: told when the connection waits for a request head, and when it stops.
        """
        handler = _handler_class(self._server.handler_class)(handoff.sock, address, self._server)
        handler.rfile = io.BufferedReader(Replay(handoff.data, handoff.sock))
        handler.head_waits = waits
        handler.head_timeout = self.head_timeout
        try:
            handler.handle()
        except gevent.Timeout as timeout:
            if timeout is not handler.head_deadline:
                raise
            log.debug("closed a connection from %s: no request head in %.1fs", address[0] if address else "-",
                      self.head_timeout)
        finally:
            handoff.sock.close()
