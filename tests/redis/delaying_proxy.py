"""A TCP proxy on 127.0.0.1 in front of a real redis-server that makes subscriptions slow.

Every chunk a client sends that holds ``marker`` (``b"SUBSCRIBE"`` by default: redis-py sends
commands in capitals) reaches Redis ``delay`` seconds late; everything else is forwarded at once,
and each connection keeps its order. It is a slow link for one kind of command: a join that
returned before Redis confirmed its subscription would show as a lost message.

Real sockets, one OS thread per direction of each connection (as ``tcp_proxy.CuttingProxy``).

Example::

    proxy = DelayingProxy(redis_server.port, delay=0.02)
    backplane = RedisBackplane(proxy.url)
"""

from __future__ import annotations

import socket
import threading
import time


class DelayingProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; ``url`` is its redis:// URL."""

    def __init__(self, target_port: int, delay: float, marker: bytes = b"SUBSCRIBE") -> None:
        self.target_port, self.delay, self.marker = target_port, delay, marker
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        #: Chunks held back so far.
        self.delayed = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="delaying-proxy").start()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._forward, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._forward, args=(upstream, client, False), daemon=True).start()

    def _forward(self, source: socket.socket, target: socket.socket, up: bool) -> None:
        try:
            while data := source.recv(65536):
                if up and self.marker in data:
                    self.delayed += 1
                    time.sleep(self.delay)  # the slow link itself
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
