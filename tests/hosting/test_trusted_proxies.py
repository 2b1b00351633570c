"""WebSocketMiddleware(trusted_proxies=...): forwarding headers are read only from a trusted peer.

The middleware wraps a plain WSGI app and is served for real: our ``Server`` hands every
request that is not one of its own routes to pywsgi, which calls the middleware, which takes
the socket over. The peer is always 127.0.0.1; whether that address is trusted is what varies.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ignitia_sync import Router
from ignitia_sync.wsgi import WebSocketMiddleware
from tests.waiting import wait_for


def page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"page"]


def who(ws: Any) -> None:
    ws.send_text(ws.request.client_ip)


XFF = [("X-Forwarded-For", "203.0.113.7, 10.0.0.2")]


@pytest.mark.parametrize(("trusted", "headers", "expected"), [
    ((), XFF, "127.0.0.1"),  # no trusted proxies: the peer's address, whatever it claims
    (("10.0.0.0/8",), XFF, "127.0.0.1"),  # the peer is not among them: its headers are ignored
    (("127.0.0.1",), XFF, "10.0.0.2"),  # trusted peer; the next hop (10.0.0.2) is not trusted: it is the client
    (("127.0.0.1", "10.0.0.0/8"), XFF, "203.0.113.7"),  # both proxies trusted: the first untrusted hop
    (("127.0.0.1",), [("Forwarded", 'for="198.51.100.9"'), *XFF], "198.51.100.9"),  # Forwarded wins
    (("127.0.0.1",), [("X-Forwarded-For", "not-an-ip, 203.0.113.7")], "203.0.113.7"),
    (("127.0.0.1",), [("X-Forwarded-For", "203.0.113.7, not-an-ip")], "127.0.0.1"),  # a bad hop ends the walk
])
def test_the_client_ip_comes_from_forwarding_headers_only_through_trusted_proxies(serve, caplog, trusted, headers,
                                                                                  expected):
    wrapped = WebSocketMiddleware(page, Router().websocket("/who", who), trusted_proxies=trusted)
    server = serve(Router(), wsgi_app=wrapped)
    host, port = server.address
    with connect(f"ws://{host}:{port}/who", additional_headers=headers) as ws:
        assert ws.recv(timeout=5) == expected
    wait_for(lambda: any(record.name == "ignitia_sync.access" for record in caplog.records), "the access line")
    line = next(record.getMessage() for record in caplog.records if record.name == "ignitia_sync.access")
    assert line.startswith(f'{expected} "GET /who" 101 ')


def test_the_per_ip_limit_counts_the_forwarded_client_not_the_proxy(serve):
    def hold(ws: Any) -> None:
        ws.send_text("in")
        ws.recv()

    wrapped = WebSocketMiddleware(page, Router().websocket("/hold", hold), trusted_proxies=["127.0.0.1"],
                                  max_connections_per_ip=1)
    server = serve(Router(), wsgi_app=wrapped)
    host, port = server.address
    target = f"ws://{host}:{port}/hold"
    with connect(target, additional_headers=[("X-Forwarded-For", "203.0.113.7")]) as first:
        assert first.recv(timeout=5) == "in"
        with connect(target, additional_headers=[("X-Forwarded-For", "203.0.113.8")]) as other:  # another client
            assert other.recv(timeout=5) == "in"
        with pytest.raises(InvalidStatus) as refused:
            connect(target, additional_headers=[("X-Forwarded-For", "203.0.113.7")])
        assert refused.value.response.status_code == 503
        assert refused.value.response.body == b"too many connections from your address\n"
    assert wrapped.stats()["refused"] == {503: 1}
