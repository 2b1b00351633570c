"""middleware.py's guards on a real server: OriginCheck(allow_missing=False), RateLimit keyed by
user or by a function of the connection; and the server's ``max_request_head`` (431)."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from ignitia_sync import (
    AuthInfo,
    AuthMiddleware,
    KeyedLimiter,
    Message,
    OriginCheck,
    RateLimit,
    Router,
    SlidingWindow,
)
from tests.conftest import url
from tests.wire import Peer, handshake_bytes

REPLY = "Rate limit exceeded. Please slow down."


def echo(ws: Any) -> None:
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


def refusal(address: str, **options: Any) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as refused:
        connect(address, **options)
    return refused.value.response.status_code, refused.value.response.body


def test_origin_check_without_allow_missing_requires_an_origin(serve):
    router = Router().websocket("/strict", echo, middleware=[OriginCheck(["https://Example.com/"], allow_missing=False)])
    router.websocket("/lenient", echo, middleware=[OriginCheck(["https://example.com"])])
    server = serve(router)
    assert refusal(url(server, "/strict")) == (403, b"an Origin header is required\n")
    assert refusal(url(server, "/strict"), origin="https://evil.example") == (
        403, b"origin https://evil.example is not allowed\n")
    with connect(url(server, "/strict"), origin="https://EXAMPLE.com") as ws:  # case-insensitive
        ws.send("ok")
        assert ws.recv(timeout=5) == "ok"
    with connect(url(server, "/lenient")) as ws:  # allow_missing=True (the default): no Origin is let in
        ws.send("ok")
        assert ws.recv(timeout=5) == "ok"
    assert server.stats()["refused"] == {403: 2}


def users(token: str) -> AuthInfo | None:
    return AuthInfo(token.removeprefix("token-")) if token.startswith("token-") else None


def exchange(ws: Any, count: int) -> list[str]:
    """Send ``count`` messages; the ``count`` answers (an echo, or the limit's reply)."""
    for n in range(count):
        ws.send(f"m{n}")
    return [ws.recv(timeout=5) for _ in range(count)]


def test_rate_limit_keyed_by_user_shares_a_budget_across_one_users_connections_only(serve):
    limit = RateLimit(per_key=KeyedLimiter(lambda: SlidingWindow(2, 3600.0)), key="user")
    server = serve(Router().websocket("/chat", echo, middleware=[AuthMiddleware(users)], rate_limit=limit))
    bearer = {"alice": [("Authorization", "Bearer token-alice")], "bob": [("Authorization", "Bearer token-bob")]}
    with connect(url(server, "/chat"), additional_headers=bearer["alice"]) as alice1, \
            connect(url(server, "/chat"), additional_headers=bearer["alice"]) as alice2, \
            connect(url(server, "/chat"), additional_headers=bearer["bob"]) as bob:
        assert exchange(alice1, 1) == ["m0"]
        assert exchange(alice2, 2) == ["m0", REPLY]  # alice's second connection shares her budget of 2
        assert exchange(alice1, 1) == [REPLY]
        assert exchange(bob, 3) == ["m0", "m1", REPLY]  # same IP, another user: a budget of his own


def test_rate_limit_key_user_without_auth_info_counts_per_ip(serve):
    limit = RateLimit(per_key=KeyedLimiter(lambda: SlidingWindow(2, 3600.0)), key="user")
    server = serve(Router().websocket("/open", echo, rate_limit=limit))
    with connect(url(server, "/open")) as first, connect(url(server, "/open")) as second:
        assert exchange(first, 1) == ["m0"]
        assert exchange(second, 2) == ["m0", REPLY]  # both from 127.0.0.1


def test_rate_limit_with_a_callable_key_and_the_close_action(serve):
    limit = RateLimit(per_key=KeyedLimiter(lambda: SlidingWindow(1, 3600.0)),
                      key=lambda ws: ws.request.query.get("room", "?"), action="close")
    server = serve(Router().websocket("/room", echo, rate_limit=limit))
    with connect(url(server, "/room?room=a")) as a1, connect(url(server, "/room?room=a")) as a2, \
            connect(url(server, "/room?room=b")) as b:
        assert exchange(a1, 1) == ["m0"]
        assert exchange(b, 1) == ["m0"]  # room b has its own budget
        a2.send("over")  # room a's one message is spent: closed with 1008
        with pytest.raises(ConnectionClosedError):  # the message was dropped, then the Close
            a2.recv(timeout=5)
        assert (a2.close_code, a2.close_reason) == (1008, "rate limit exceeded")
        assert a1.close_code is None and b.close_code is None  # only the connection over the limit


def test_a_small_max_request_head_refuses_a_longer_head_with_431(serve):
    server = serve(Router().websocket("/echo", echo), max_request_head=256)
    fits = handshake_bytes("/echo")
    assert len(fits) < 256
    peer = Peer(server.address)
    peer.upgrade("/echo")
    peer.close()
    big = Peer(server.address)
    big.send(handshake_bytes("/echo", extra="X-Padding: " + "p" * 200 + "\r\n"))
    status, head = big.read_head()
    body = big.read_body()
    assert status == 431 and head.startswith("HTTP/1.1 431 Request Header Fields Too Large")
    assert body == b"request head too large\n"
    big.close()
    assert server.stats()["refused"] == {431: 1}
