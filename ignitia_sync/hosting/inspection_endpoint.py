"""An opt-in HTTP endpoint listing a host's connections as JSON, behind a token and an address check.

A WSGI application: give it to the standalone server as ``wsgi_app`` (or mount it in your
own WSGI app). ``GET /connections`` (the ``path``) answers the records of
``host.inspect_connections()`` as JSON, only to a peer in ``allow`` (loopback by default,
else 403, before any token is looked at) that sends ``Authorization: Bearer TOKEN`` (else
401). Every other path goes to ``app`` (404 without one).

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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .inspection import ConnectionInfo

__all__ = ["ConnectionsEndpoint"]

#: Who may ask by default: this machine only.
LOOPBACK = ("127.0.0.0/8", "::1/128")
#: The shortest token taken: a guessable one would be worse than none.
MIN_TOKEN_LENGTH = 16


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

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer ``path``; hand every other request to ``app``."""
        if environ.get("PATH_INFO") != self.path:
            if self._app is not None:
                return self._app(environ, start_response)  # type: ignore[no-any-return]
            return _answer(start_response, "404 Not Found", {"error": "not found"})
        if not self._allowed(environ.get("REMOTE_ADDR", "")):
            return _answer(start_response, "403 Forbidden", {"error": "not from this address"})
        sent = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if not hmac.compare_digest(sent, self._expected):
            return _answer(start_response, "401 Unauthorized", {"error": "a valid bearer token is required"},
                           [("WWW-Authenticate", 'Bearer realm="connections"')])
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", {"error": "GET only"}, [("Allow", "GET, HEAD")])
        records = [record.as_json() for record in self._connections()]
        return _answer(start_response, "200 OK", {"connections": records})

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
