"""An opt-in HTTP endpoint listing a host's connections as JSON, behind a token and an address check.

A WSGI application: give it to the standalone server as ``wsgi_app`` (or mount it in your
own WSGI app). ``GET /connections`` (the ``path``) answers the records of
``host.inspect_connections()`` as JSON, only to a peer in ``allow`` (loopback by default,
else 403, before any token is looked at) that sends ``Authorization: Bearer TOKEN`` (else
401). Every other path goes to ``app`` (404 without one).

In cluster mode (:meth:`ConnectionsEndpoint.cluster`, given a host with a Redis backplane or
an :class:`~ignitia_sync.redis.Emitter`), ``GET path`` answers every live process's
connections and rooms, gathered through Redis for at most ``timeout`` seconds (``"partial":
true`` when some did not answer), and ``POST path/close`` takes a JSON order: ``{"process":
UID, "id": "#17", "code": 4000, "reason": "..."}`` closes that connection in the process
that has it, ``{"user_id": "alice", "code": 1008, "reason": "..."}`` every connection of
that user in every process; 202 with what was sent, 400 with one line for a bad order. The
same address check and token guard both; at most two inspections run at once (503 beyond).

The peer is ``REMOTE_ADDR``: the socket's address under the standalone server. Behind a
proxy on the same machine every request comes from loopback, so the token is then the only
guard; keep it secret, and long.

Example:
    >>> endpoint = ConnectionsEndpoint(lambda: [], token="s3cret-token-of-some-length")
    >>> answer = []
    >>> body = endpoint({"PATH_INFO": "/connections", "REQUEST_METHOD": "GET", "REMOTE_ADDR": "127.0.0.1",
    ...                  "HTTP_AUTHORIZATION": "Bearer s3cret-token-of-some-length"},
    ...                 lambda status, headers: answer.append(status))
    >>> answer, b"".join(body)
    (['200 OK'], b'{"connections":[]}')
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._support.logs import escape_for_log
from .inspection import ConnectionInfo
from .inspection_cluster import MAX_BODY, Cluster, close_order, cluster_of

__all__ = ["ConnectionsEndpoint"]

#: Who may ask by default: this machine only.
LOOPBACK = ("127.0.0.0/8", "::1/128")
#: The shortest token taken: a guessable one would be worse than none.
MIN_TOKEN_LENGTH = 16
#: Cluster inspections running at once in one endpoint; more get 503.
MAX_INSPECTIONS = 2

log = logging.getLogger("ignitia_sync.inspection")


class ConnectionsEndpoint:
    """A WSGI app: ``GET path`` → the connections as JSON, for an allowed peer with the token.

    Args:
        connections: what to list, called per request: ``lambda: server.inspect_connections()``.
        token: the secret a caller sends as ``Authorization: Bearer TOKEN`` (16 characters or more).
        path: where it answers; ``"/connections"`` by default.
        allow: the peer addresses or networks that may ask (403 for the others): loopback by default.
        app: the WSGI app for every other request (None: 404).

    Raises:
        ValueError: a token shorter than 16 characters, a path not starting with ``/``, an
            address that is not one.

    Example::

        endpoint = ConnectionsEndpoint(lambda: server.inspect_connections(), token=os.environ["INSPECT_TOKEN"])
        server = Server(router, ("0.0.0.0", 8000), wsgi_app=endpoint)
        # curl -H "Authorization: Bearer $INSPECT_TOKEN" http://127.0.0.1:8000/connections
    """

    def __init__(
        self,
        connections: Callable[[], Iterable[ConnectionInfo]],
        token: str,
        *,
        path: str = "/connections",
        allow: Sequence[str] = LOOPBACK,
        app: Callable[..., Any] | None = None,
    ) -> None:
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the inspection token must be a str of at least {MIN_TOKEN_LENGTH} characters")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', not {path!r}")
        if isinstance(allow, str):
            raise TypeError("allow must be a sequence of addresses or networks, not a string")
        self._connections = connections
        self._expected = f"Bearer {token}".encode()
        self.path = path
        self._allow = tuple(ipaddress.ip_network(network, strict=False) for network in allow)
        self._app = app
        self._cluster: Cluster | None = None
        self.timeout = 2.0
        self._running = threading.BoundedSemaphore(MAX_INSPECTIONS)

    @classmethod
    def cluster(
        cls,
        source: Any,
        token: str,
        *,
        timeout: float = 2.0,
        path: str = "/connections",
        allow: Sequence[str] = LOOPBACK,
        app: Callable[..., Any] | None = None,
    ) -> ConnectionsEndpoint:
        """Every process's connections (``GET path``) and closes anywhere (``POST path/close``), through Redis.

        Args:
            source: a host whose backplane is a ``RedisBackplane`` (``server``, a
                ``WebSocketMiddleware``, ``sock.host``), or an :class:`~ignitia_sync.redis.Emitter`.
            timeout: how long a GET waits for the processes' answers (0-60 s).
            token, path, allow, app: as for the constructor.

        Raises:
            TypeError: ``source`` cannot inspect other processes (a host without a Redis backplane).
            ValueError: as the constructor; a ``timeout`` not in (0, 60].

        Example::

            endpoint = ConnectionsEndpoint.cluster(server, token=os.environ["INSPECT_TOKEN"])
            # curl -H "Authorization: Bearer $INSPECT_TOKEN" http://127.0.0.1:8000/connections
            # curl -H "Authorization: Bearer $INSPECT_TOKEN" -d '{"user_id": "mallory", "code": 1008}' \\
            #      http://127.0.0.1:8000/connections/close
        """
        if not 0 < timeout <= 60:
            raise ValueError(f"timeout must be in (0, 60] seconds, not {timeout!r}")
        endpoint = cls(lambda: [], token, path=path, allow=allow, app=app)
        endpoint._cluster = cluster_of(source)
        endpoint.timeout = timeout
        return endpoint

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer ``path`` (and ``path/close`` in cluster mode); hand every other request to ``app``."""
        closing = self._cluster is not None and environ.get("PATH_INFO") == self.path + "/close"
        if environ.get("PATH_INFO") != self.path and not closing:
            if self._app is not None:
                return self._app(environ, start_response)  # type: ignore[no-any-return]
            return _answer(start_response, "404 Not Found", {"error": "not found"})
        if not self._allowed(environ.get("REMOTE_ADDR", "")):
            return _answer(start_response, "403 Forbidden", {"error": "not from this address"})
        sent = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if not hmac.compare_digest(sent, self._expected):
            return _answer(start_response, "401 Unauthorized", {"error": "a valid bearer token is required"},
                           [("WWW-Authenticate", 'Bearer realm="connections"')])
        if closing:
            if environ.get("REQUEST_METHOD") != "POST":
                return _answer(start_response, "405 Method Not Allowed", {"error": "POST only"}, [("Allow", "POST")])
            return self._close(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", {"error": "GET only"}, [("Allow", "GET, HEAD")])
        if self._cluster is not None:
            return self._inspect(self._cluster, start_response)
        records = [record.as_json() for record in self._connections()]
        return _answer(start_response, "200 OK", {"connections": records})

    def _inspect(self, cluster: Cluster, start_response: Callable[..., Any]) -> list[bytes]:
        """Every process's answer, or 503 when Redis fails or two inspections already run."""
        if not self._running.acquire(blocking=False):
            return _answer(start_response, "503 Service Unavailable", {"error": "inspections already running"},
                           [("Retry-After", "1")])
        try:
            view = cluster.inspect(self.timeout)
        except Exception as exc:  # Redis unreachable or silent: say so, never a 500 with a traceback
            log.warning("inspection failed: %s: %s", type(exc).__name__, escape_for_log(str(exc)))
            return _answer(start_response, "503 Service Unavailable", {"error": "the backplane did not answer"})
        finally:
            self._running.release()
        return _answer(start_response, "200 OK", view)

    def _close(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """``POST path/close``: a checked order, sent; 202 with what was sent, 400 for a bad order."""
        assert self._cluster is not None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "-1")
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            return _answer(start_response, "400 Bad Request",
                           {"error": f"a JSON body of 1-{MAX_BODY} bytes (with its Content-Length) is required"})
        try:
            order = close_order(environ["wsgi.input"].read(length))
        except (ValueError, TypeError) as exc:
            return _answer(start_response, "400 Bad Request", {"error": str(exc).splitlines()[0]})
        try:
            if "user_id" in order:
                self._cluster.disconnect(order["user_id"], order["code"], order["reason"])
                answer: dict[str, Any] = {"sent": order}
            else:
                heard = self._cluster.close_connection(order["process"], order["id"], order["code"], order["reason"])
                answer = {"sent": order, "heard_by": heard}
        except Exception as exc:  # Redis unreachable: nothing was sent
            log.warning("inspection close failed: %s: %s", type(exc).__name__, escape_for_log(str(exc)))
            return _answer(start_response, "503 Service Unavailable", {"error": "the backplane did not take it"})
        return _answer(start_response, "202 Accepted", answer)

    def _allowed(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self._allow)


def _answer(
    start_response: Callable[..., Any], status: str, body: dict[str, Any], headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    """A JSON answer, never cached.

    Example:
        >>> _answer(lambda status, headers: None, "404 Not Found", {"error": "not found"})
        [b'{"error":"not found"}']
    """
    data = json.dumps(body, separators=(",", ":")).encode()
    start_response(status, [
        ("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store"),
        *(headers or []),
    ])
    return [data]
