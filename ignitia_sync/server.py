"""The gevent WebSocket server: accept, upgrade, run handlers, shut down.

Example:
    >>> from ignitia_sync import Router, Server
    >>> def echo(ws):
    ...     for message in ws:
    ...         ws.send(message)
    >>> app = Router().websocket("/echo", echo)
    >>> with Server(app, ("127.0.0.1", 0)) as server:   # doctest: +SKIP
    ...     print(server.address)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from socket import AF_UNIX, IPPROTO_TCP, TCP_NODELAY
from typing import TYPE_CHECKING, Any, cast

import gevent
import gevent.event
import gevent.pool
from gevent.monkey import get_original
from gevent.server import StreamServer

from .connection import WebSocketConnection
from .exceptions import ConnectionClosed, HandshakeError
from .handlers import Handler
from .http import (
    Request,
    RequestHeadReader,
    Response,
    accept_response,
    client_ip,
    error_response,
    websocket_key,
)
from .protocol import WebSocketProtocol, negotiate_deflate
from .registry import Backplane, Registry
from .router import Route, Router

if TYPE_CHECKING:
    import socket
    import ssl

__all__ = ["Server", "ServerSettings", "run"]

log = logging.getLogger("ignitia_sync.server")
access_log = logging.getLogger("ignitia_sync.access")
_real_get_ident = get_original("_thread", "get_ident")


@dataclass(frozen=True)
class ServerSettings:
    """Every limit and option of a :class:`Server`; each has a safe default.

    Attributes:
        max_message_size: largest incoming message, after decompression (close 1009).
        max_queue: received messages buffered per connection before reading pauses.
        handshake_timeout: seconds a client has to send its complete upgrade request.
        close_timeout: seconds to wait for the peer's part of the closing handshake.
        compression: ``"deflate"`` to accept permessage-deflate, ``None`` to refuse it.
        subprotocols: subprotocols offered, in order of preference of the client.
        ssl_context: serve ``wss://`` with this context.
        backlog: the listen backlog.
        max_request_head: largest upgrade request head in bytes (431 past it).
        shutdown_timeout: seconds :meth:`Server.stop` waits for handlers to finish.
        shutdown_grace: seconds handlers get to react to ``shutdown_event`` before every
            connection is closed with 1001.
        outbox_limit: bytes queued to one peer (broadcasts, ``send_nowait``) before it is
            closed with 1008 "slow consumer".
        backplane: carries broadcasts to other processes; in-process when None.
        ping_interval: seconds between keepalive pings (None: no pings).
        ping_timeout: seconds a ping may wait for its pong; then close 1011 and drop TCP.
        idle_timeout: close with 1001 after this many seconds without receiving anything.
        max_connections: open connections beyond which upgrades get 503 (None: no limit).
        max_connections_per_ip: the same, per client IP.
        trust_forwarded: take the client IP from ``X-Forwarded-For`` (behind a trusted proxy).
        certfile: serve ``wss://`` with this certificate chain (and ``keyfile``).
        keyfile: the private key for ``certfile``.

    Example:
        >>> ServerSettings(max_message_size=4096).max_queue
        16
    """

    max_message_size: int = 1 << 20
    max_queue: int = 16
    handshake_timeout: float = 10.0
    close_timeout: float = 10.0
    compression: str | None = "deflate"
    subprotocols: Sequence[str] = ()
    ssl_context: ssl.SSLContext | None = None
    backlog: int = 1024
    max_request_head: int = 16384
    shutdown_timeout: float = 10.0
    shutdown_grace: float = 1.0
    outbox_limit: int = 1 << 20
    backplane: Backplane | None = None
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    idle_timeout: float | None = None
    max_connections: int | None = None
    max_connections_per_ip: int | None = None
    trust_forwarded: bool = False
    certfile: str | None = None
    keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.compression not in ("deflate", None):
            raise ValueError("compression must be 'deflate' or None")
        if self.max_message_size < 1 or self.max_queue < 1 or self.max_request_head < 256:
            raise ValueError("max_message_size, max_queue and max_request_head must be positive")
        if isinstance(self.subprotocols, str):
            raise TypeError("subprotocols must be a sequence of names, not a string")


class Server:
    """Serves a :class:`Router`'s WebSocket routes, one greenlet per connection.

    Args:
        app: the router.
        address: ``(host, port)``; port 0 picks a free port (see :attr:`address`).
        **settings: any field of :class:`ServerSettings`.

    Example:
        >>> server = Server(Router(), ("127.0.0.1", 0), max_message_size=65536)
        >>> server.settings.max_message_size
        65536
    """

    def __init__(self, app: Router, address: tuple[str, int] = ("127.0.0.1", 3000), **settings: Any) -> None:
        self.app = app
        self.settings = ServerSettings(**settings)
        self._requested_address = address
        self._stream: StreamServer | None = None
        self._handlers = gevent.pool.Group()
        #: Every open connection, with rooms and broadcast (see :class:`Registry`).
        self.registry = Registry(self.settings.backplane)
        #: Set when :meth:`stop` begins: handlers may watch it (``ws.shutting_down``).
        self.shutdown_event = gevent.event.Event()
        self._per_ip: Counter[str] = Counter()
        self._totals: Counter[str] = Counter()
        self._close_codes: Counter[int] = Counter()
        self._refusals: Counter[int] = Counter()
        self._stopped: gevent.event.Event | None = None
        self._stopping = False
        self._loop: Any = None
        self._thread_ident: int | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        """Bind and start accepting in the background of the current hub; returns at once."""
        if self._stream is not None:
            return
        context = self.settings.ssl_context
        if context is None and self.settings.certfile:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.settings.certfile, self.settings.keyfile)
        if context is None:
            self._stream = StreamServer(self._requested_address, self._handle, backlog=self.settings.backlog)
        else:
            self._stream = StreamServer(
                self._requested_address, self._handle, backlog=self.settings.backlog, ssl_context=context
            )
        self._stream.start()
        self._stopped = gevent.event.Event()
        self._loop = gevent.get_hub().loop
        self.registry.attach(self._loop)
        self._thread_ident = _real_get_ident()
        log.info("listening on %s:%d", *self.address[:2])

    def serve_forever(self) -> None:
        """Start if needed and block until :meth:`stop` is called."""
        self.start()
        assert self._stopped is not None
        self._stopped.wait()

    def ignitia(self) -> None:
        """Serve until stopped: the guide's ``server.ignitia().await``."""
        self.serve_forever()

    def start_in_thread(self, timeout: float = 10.0) -> None:
        """Serve from a new OS thread with its own gevent hub; returns once bound.

        Handy beside a Flask or Django app, and in tests. :meth:`stop` may be called from
        any thread. In a monkey-patched program this is the same as :meth:`start`.
        """
        if gevent.monkey.is_module_patched("threading"):
            self.start()
            return
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                self.start()
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
                return
            finally:
                ready.set()
            assert self._stopped is not None
            self._stopped.wait()

        self._thread = threading.Thread(target=serve, name="ignitia-sync-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the server thread did not start in time")
        if failure:
            raise failure[0]

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` once started, else the requested one."""
        if self._stream is None:
            return self._requested_address
        host, port = self._stream.server_host, self._stream.server_port
        assert host is not None and port is not None
        return host, port

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let handlers see :attr:`shutdown_event`, then close with 1001.

        Handlers get ``shutdown_grace`` seconds to finish by themselves; then every
        connection sends what is queued to it and is closed with 1001 "Server shutdown".
        Upgrades that arrive meanwhile get 503.

        Handlers still running after ``timeout`` seconds (default ``shutdown_timeout``)
        are killed. Idempotent, and safe to call from any thread.
        """
        if self._stream is None or self._stopping:
            return
        if self._thread_ident != _real_get_ident():
            done = threading.Event()
            self._loop.run_callback_threadsafe(
                lambda: gevent.spawn(self._stop_then, timeout, done)
            )
            done.wait((timeout or self.settings.shutdown_timeout) + 10)
            if self._thread is not None:
                self._thread.join(5)
            return
        self._stop_here(timeout)

    def _stop_then(self, timeout: float | None, done: threading.Event) -> None:
        try:
            self._stop_here(timeout)
        finally:
            done.set()

    def _stop_here(self, timeout: float | None) -> None:
        if self._stopping or self._stream is None:
            return
        self._stopping = True
        self._stream.close()
        self.shutdown_event.set()
        if len(self.registry):  # handlers that watch the event may finish by themselves
            self._handlers.join(timeout=min(self.settings.shutdown_grace, self.settings.shutdown_timeout))
        for ws in self.registry:
            gevent.spawn(ws.close, 1001, "Server shutdown")  # each flushes its own queue
        self._handlers.join(timeout=self.settings.shutdown_timeout if timeout is None else timeout)
        self._handlers.kill(block=True, timeout=1)
        self.registry.backplane.close()
        log.info("stopped")
        assert self._stopped is not None
        self._stopped.set()

    def __enter__(self) -> Server:
        self.start_in_thread() if self._thread_ident is None else None
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring: open connections, totals, close codes, refusals, queues.

        Example:
            >>> Server(Router(), ("127.0.0.1", 0)).stats()["open_connections"]
            0
        """
        open_connections = list(self.registry)
        live = Counter[str]()
        for ws in open_connections:
            live.update(
                messages_in=ws.messages_in, messages_out=ws.messages_out, bytes_in=ws.bytes_in, bytes_out=ws.bytes_out
            )
        return {
            "open_connections": len(open_connections),
            "total_connections": self._totals["connections"],
            "messages_in": self._totals["messages_in"] + live["messages_in"],
            "messages_out": self._totals["messages_out"] + live["messages_out"],
            "bytes_in": self._totals["bytes_in"] + live["bytes_in"],
            "bytes_out": self._totals["bytes_out"] + live["bytes_out"],
            "close_codes": dict(self._close_codes),
            "refused": dict(self._refusals),
            "outbox_bytes": sum(ws.outbox_bytes for ws in open_connections),
            "shutting_down": self.shutdown_event.is_set(),
        }

    @property
    def connections(self) -> frozenset[WebSocketConnection]:
        """A snapshot of the open connections."""
        return frozenset(self.registry)

    # -- one connection ---------------------------------------------------------------

    def _handle(self, sock: socket.socket, address: tuple[Any, ...]) -> None:
        self._handlers.add(cast(Any, gevent.getcurrent()))
        try:
            upgraded = self._upgrade(sock, address)
            if upgraded is not None:
                self._run(upgraded[0], upgraded[1], upgraded[2])
        finally:
            sock.close()

    def _upgrade(
        self, sock: socket.socket, address: tuple[Any, ...]
    ) -> tuple[WebSocketConnection, Route, dict[str, str]] | None:
        settings = self.settings
        reader = RequestHeadReader(settings.max_request_head, address)
        request: Request | None = None
        try:
            with gevent.Timeout(settings.handshake_timeout):
                while request is None:
                    data = sock.recv(8192)
                    if not data:
                        return None
                    request = reader.feed(data)
                if self._stopping:
                    raise HandshakeError(503, "server shutting down")
                found = self.app.match(request.path)
                if found is None:
                    raise HandshakeError(404, f"no WebSocket route for {request.path}")
                route, params = found
                key = websocket_key(request)
                request = request.routed(params, client_ip(request, settings.trust_forwarded))
                self._check_limits(request.client_ip)
                attached = self._run_middleware(route, request)
                options = dataclasses.replace(settings, **route.options) if route.options else settings
                subprotocol = _choose_subprotocol(request, options.subprotocols)
                deflate, extensions = (
                    negotiate_deflate(request.headers.get_all("sec-websocket-extensions"), options.max_message_size)
                    if options.compression
                    else (None, None)
                )
                answer = accept_response(key, subprotocol, extensions)
                if sock.family != AF_UNIX:
                    # Small frames go out at once, not when the peer acknowledges the last.
                    sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
                sent = sock.send(answer)  # one send() nearly always takes it all
                if sent < len(answer):
                    sock.sendall(answer[sent:])
        except gevent.Timeout:
            log.info("handshake from %s timed out after %.1fs", address[0], settings.handshake_timeout)
            return None
        except HandshakeError as exc:
            self._refusals[exc.status] += 1
            log.info(
                "refused %s %s from %s: %d %s", request.method if request else "-",
                request.target if request else "-", address[0], exc.status, exc.body,
            )
            try:
                sock.sendall(error_response(exc.status, exc.body, exc.headers))
            except OSError:
                pass
            return None
        except OSError as exc:
            log.debug("handshake from %s failed: %s", address[0], exc)
            return None
        ws = WebSocketConnection(
            sock,
            request,
            WebSocketProtocol(max_message_size=options.max_message_size, deflate=deflate),
            subprotocol=subprotocol,
            max_queue=options.max_queue,
            close_timeout=options.close_timeout,
            outbox_limit=options.outbox_limit,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            idle_timeout=options.idle_timeout,
            initial_data=reader.trailing_data,
        )
        ws.server = self
        ws.extensions = attached
        if route.rate_limit is not None:
            ws.limit_messages(route.rate_limit)
        return ws, route, params

    def _check_limits(self, ip: str) -> None:
        limit, per_ip = self.settings.max_connections, self.settings.max_connections_per_ip
        if limit is not None and len(self.registry) >= limit:
            raise HandshakeError(503, "too many connections", (("Retry-After", "5"),))
        if per_ip is not None and self._per_ip[ip] >= per_ip:
            raise HandshakeError(503, "too many connections from your address", (("Retry-After", "5"),))

    def _run_middleware(self, route: Route, request: Request) -> dict[Any, Any]:
        extensions: dict[Any, Any] = {}
        for middleware in (*self.app.global_middleware, *route.middleware):
            try:
                result = middleware(request)
            except Exception:
                log.exception("middleware %r failed on %s", middleware, request.path)
                raise HandshakeError(500, "internal error") from None
            if isinstance(result, Response):
                raise HandshakeError(result.status, result.body or "refused", result.headers)
            if result:
                extensions.update(result)
        return extensions

    def _run(self, ws: WebSocketConnection, route: Route, params: dict[str, str]) -> None:
        self.registry.add(ws)
        ip = ws.request.client_ip
        self._per_ip[ip] += 1
        self._totals["connections"] += 1
        code, reason = 1000, ""
        try:
            ws.start()
            if params:
                route.handler(ws, **params)
            elif type(route.handler) is Handler:
                # Call the function itself: every call through __call__ or *args nests the C
                # stack, which gevent copies aside (~800 bytes a level) while a handler waits.
                route.handler.func(ws)
            else:
                route.handler(ws)
        except ConnectionClosed:
            log.debug("handler for %s ended: connection closed", ws.request.path)
        except gevent.GreenletExit:
            code, reason = 1001, "Server shutdown"
        except Exception:
            log.exception("handler for %s from %s raised", ws.request.path, ws.remote_address[0])
            code, reason = 1011, ""
        finally:
            self.registry.discard(ws)
            ws.finish(code, reason)
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
            self._account(ws)

    def _account(self, ws: WebSocketConnection) -> None:
        """Fold a closed connection into the totals and write its access line."""
        totals = self._totals
        totals.update(
            messages_in=ws.messages_in, messages_out=ws.messages_out, bytes_in=ws.bytes_in, bytes_out=ws.bytes_out
        )
        code = ws.close_code or 1006
        self._close_codes[code] += 1
        access_log.info(
            '%s "GET %s" 101 %.3fs in=%d/%dB out=%d/%dB close=%d',
            ws.request.client_ip, ws.request.target, time.monotonic() - ws.opened_at,
            ws.messages_in, ws.bytes_in, ws.messages_out, ws.bytes_out, code,
        )


def _choose_subprotocol(request: Request, supported: Sequence[str]) -> str | None:
    if not supported:
        return None
    for value in request.headers.get_all("sec-websocket-protocol"):
        for offered in value.split(","):
            if offered.strip() in supported:
                return offered.strip()
    return None


def run(app: Router, argv: Sequence[str] | None = None, **settings: Any) -> None:
    """Serve ``app`` from a script: parses ``--host``/``--port``, stops on SIGINT/SIGTERM.

    Example (the last line of every example)::

        if __name__ == "__main__":
            run(app)
    """
    parser = argparse.ArgumentParser(description="Serve an ignitia_sync app.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    server = Server(app, (args.host, args.port), **settings)
    server.start()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, lambda: gevent.spawn(server.stop))
    host, port = server.address
    print(f"WebSocket server running on ws://{host}:{port}", flush=True)
    server.serve_forever()
