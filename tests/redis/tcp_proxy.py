"""A TCP proxy on 127.0.0.1 in front of a real redis-server, that cuts connections on demand.

Real sockets, one OS thread per direction of each connection (not greenlets: it keeps
forwarding while the test's hub is busy). Nothing is parsed beyond a substring search:

* :meth:`CuttingProxy.cut_after_reply_to` arms a cut of the connection that sends ``marker``
  to Redis: the bytes reach Redis, and when Redis's answer comes back, the answer is thrown
  away and both sides are closed. Redis has then run the commands; the client never learns it.
* :meth:`CuttingProxy.cut_all` closes every connection at once; with :attr:`CuttingProxy.refusing`
  set, new connections are closed as soon as they are accepted (Redis unreachable from behind it).

Example::

    proxy = CuttingProxy(redis_server.port)
    backplane = RedisBackplane(proxy.url)
    proxy.cut_after_reply_to(b"exactly once")
"""

from __future__ import annotations

import socket
import threading


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.marking = False  # the marker is being sent: the next answer is cut, once it is sent
        self.sent = threading.Event()  # the bytes with the marker are in Redis's socket
        self.tail = b""  # the last bytes sent upstream (a marker may span two reads)

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class CuttingProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; ``url`` is its redis:// URL."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._marker: bytes | None = None
        #: Connections cut after their answer (by :meth:`cut_after_reply_to`).
        self.cuts = 0
        #: Connections accepted so far.
        self.accepted = 0
        #: Close new connections at once (a partition: Redis is unreachable through the proxy).
        self.refusing = False
        threading.Thread(target=self._accept, daemon=True, name="cutting-proxy").start()

    def cut_after_reply_to(self, marker: bytes) -> None:
        """Cut the next connection that sends ``marker``, once Redis has answered (one cut only)."""
        with self._lock:
            self._marker = marker

    def cut_all(self) -> None:
        """Close every open connection now."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()

    def close(self) -> None:
        self._listener.close()
        self.cut_all()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.append(pair)
                self.accepted += 1
            threading.Thread(target=self._up, args=(pair,), daemon=True).start()
            threading.Thread(target=self._down, args=(pair,), daemon=True).start()

    def _before_upstream(self, data: bytes) -> None:
        """Called with each chunk a client sends, before it goes to Redis (a subclass may slow it)."""

    def _up(self, pair: _Pair) -> None:
        """Client to Redis: forwarded; a connection that sends the marker is marked."""
        try:
            while data := pair.client.recv(65536):
                with self._lock:
                    marked = self._marker is not None and self._marker in pair.tail + data
                    if marked:
                        pair.marking, self._marker = True, None
                    pair.tail = (pair.tail + data)[-256:]
                self._before_upstream(data)
                pair.upstream.sendall(data)
                if marked:
                    pair.sent.set()
        except OSError:
            pass
        pair.close()

    def _down(self, pair: _Pair) -> None:
        """Redis to client: forwarded, unless the connection is marked (then cut, the answer lost)."""
        try:
            while data := pair.upstream.recv(65536):
                with self._lock:
                    cut, pair.marking = pair.marking, False
                if cut:
                    pair.sent.wait(10)  # all of it reached Redis's socket before the cut
                    with self._lock:
                        self.cuts += 1
                    break
                pair.client.sendall(data)
        except OSError:
            pass
        pair.close()
