"""Upgrade middleware (auth, origin, errors, connection limits) and message rate limits."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from ignitia_sync import (
    AuthInfo,
    AuthMiddleware,
    KeyedLimiter,
    Message,
    OriginCheck,
    RateLimit,
    Response,
    Router,
    Server,
    SlidingWindow,
    TokenBucket,
)
from tests.conftest import url
from tests.wire import Peer, handshake_bytes


def whoami(ws):
    info = ws.extension(AuthInfo)
    ws.send_text(f"{info.user_id} {','.join(info.permissions)}")


def status_of(server, path: str, extra: str = "") -> tuple[int, str]:
    peer = Peer(server.address)
    peer.send(handshake_bytes(path, extra))
    status, head = peer.read_head()
    peer.close()
    return status, head


def test_static_token_from_header_query_or_cookie_else_401(serve):
    server = serve(Router().middleware(AuthMiddleware("secret-token", user_id="token")).websocket("/secure", whoami))
    status, head = status_of(server, "/secure")
    assert status == 401 and "WWW-Authenticate: Bearer" in head
    assert status_of(server, "/secure", "Authorization: Bearer wrong\r\n")[0] == 401
    with connect(url(server, "/secure"), additional_headers={"Authorization": "Bearer secret-token"}) as ws:
        assert ws.recv() == "token "
    with connect(url(server, "/secure?token=secret-token")) as ws:
        assert ws.recv() == "token "
    # Cookies are not read unless asked for (S5: any page may open a WebSocket with them).
    assert status_of(server, "/secure", "Cookie: a=b; token=secret-token\r\n")[0] == 401


def test_cookie_auth_is_opt_in_and_refuses_other_sites_pages(serve):
    auth = AuthMiddleware("secret-token", user_id="token", cookie="token", allowed_origins=["https://app.example"])
    server = serve(Router().middleware(auth).websocket("/secure", whoami))
    cookie = "Cookie: a=b; token=secret-token\r\n"
    with connect(url(server, "/secure"), additional_headers={"Cookie": "token=secret-token"}) as ws:
        assert ws.recv() == "token "  # no Origin: not a browser, so no other site's page
    with connect(url(server, "/secure"), origin="https://app.example",
                 additional_headers={"Cookie": "token=secret-token"}) as ws:
        assert ws.recv() == "token "
    assert status_of(server, "/secure", cookie + "Origin: https://evil.example\r\n")[0] == 403
    # A token in the header is not a browser's ambient credential: the Origin does not matter.
    assert status_of(server, "/secure", "Authorization: Bearer secret-token\r\nOrigin: https://evil.example\r\n")[0] == 101
    same_site = serve(Router().middleware(AuthMiddleware("secret-token", user_id="token", cookie="token")).websocket("/s", whoami))
    assert status_of(same_site, "/s", cookie + "Origin: http://127.0.0.1\r\n")[0] == 101  # Host is 127.0.0.1
    assert status_of(same_site, "/s", cookie + "Origin: http://127.0.0.1.evil\r\n")[0] == 403


def test_verify_function_gives_the_handler_its_auth_info(serve):
    users = {"t-alice": AuthInfo("alice", ("read", "write"))}
    server = serve(Router().websocket("/me", whoami, middleware=[AuthMiddleware(users.get)]))
    with connect(url(server, "/me?token=t-alice")) as ws:
        assert ws.recv() == "alice read,write"
    with pytest.raises(InvalidStatus) as info:
        connect(url(server, "/me?token=t-bob"))
    assert info.value.response.status_code == 401


def test_origin_check_refuses_other_sites_with_403(serve):
    app = Router().middleware(OriginCheck(["https://example.com"])).websocket("/o", lambda ws: ws.send_text("ok"))
    server = serve(app)
    assert status_of(server, "/o", "Origin: https://evil.example\r\n")[0] == 403
    with connect(url(server, "/o"), origin="https://example.com") as ws:
        assert ws.recv() == "ok"
    with connect(url(server, "/o")) as ws:  # no Origin: not a browser
        assert ws.recv() == "ok"


@pytest.mark.expect_errors  # the test makes it raise
def test_middleware_can_refuse_attach_and_a_crash_gives_500(serve, caplog):
    def tenant(request):
        if "tenant" not in request.query:
            return Response(400, "tenant missing")
        return {"tenant": request.query["tenant"]}

    def broken(request):
        raise RuntimeError("middleware bug")

    app = (
        Router()
        .websocket("/t", lambda ws: ws.send_text(ws.extensions["tenant"]), middleware=[tenant])
        .websocket("/broken", lambda ws: None, middleware=[broken])
    )
    server = serve(app)
    assert status_of(server, "/t")[0] == 400
    with connect(url(server, "/t?tenant=acme")) as ws:
        assert ws.recv() == "acme"
    assert status_of(server, "/broken")[0] == 500
    assert any("middleware" in r.getMessage() and r.exc_info for r in caplog.records)


def hold(ws):
    ws.send_text("in")
    for _ in ws:
        pass


def test_connection_limits_total_and_per_ip_give_503(serve):
    server = serve(Router().websocket("/h", hold), max_connections=2)
    with connect(url(server, "/h")) as a, connect(url(server, "/h")) as b:
        a.recv()
        b.recv()
        status, head = status_of(server, "/h")
        assert status == 503 and "Retry-After" in head
    server = serve(Router().websocket("/h", hold), max_connections_per_ip=1)
    with connect(url(server, "/h")) as a:
        a.recv()
        assert status_of(server, "/h")[0] == 503
    with connect(url(server, "/h")) as again:  # the first one left: room again
        assert again.recv() == "in"
    assert server.stats()["refused"] == {503: 1}


def echo_text(ws):
    for message in ws:
        if isinstance(message, Message.Text):
            ws.send_text(f"Processed: {message.data}")


def test_rate_limit_reply_drops_the_message_and_answers(serve):
    limit = RateLimit(per_connection=lambda: SlidingWindow(3, 60.0), action="reply")
    server = serve(Router().websocket("/r", echo_text, rate_limit=limit))
    with connect(url(server, "/r")) as ws:
        for i in range(5):
            ws.send(f"m{i}")
        got = [ws.recv(timeout=5) for _ in range(5)]
    assert got == ["Processed: m0", "Processed: m1", "Processed: m2"] + ["Rate limit exceeded. Please slow down."] * 2


def test_rate_limit_close_gives_1008_and_per_ip_limits_are_shared(serve):
    limit = RateLimit(per_key=KeyedLimiter(lambda: SlidingWindow(4, 60.0)), key="ip", action="close")
    server = serve(Router().websocket("/r", echo_text, rate_limit=limit))
    with connect(url(server, "/r")) as first:
        for i in range(3):
            first.send(f"a{i}")
            first.recv(timeout=5)
    with connect(url(server, "/r")) as second:  # same IP: one message left
        second.send("b0")
        assert second.recv(timeout=5) == "Processed: b0"
        second.send("b1")
        with pytest.raises(ConnectionClosed):
            second.recv(timeout=5)
        assert second.protocol.close_rcvd.code == 1008


def test_rate_limit_on_bytes(serve):
    limit = RateLimit(per_connection=lambda: TokenBucket(rate=1, burst=100), cost="bytes", action="reply", reply="too much")
    server = serve(Router().websocket("/r", echo_text, rate_limit=limit))
    with connect(url(server, "/r")) as ws:
        ws.send("x" * 60)
        assert ws.recv(timeout=5) == "Processed: " + "x" * 60
        ws.send("y" * 60)
        assert ws.recv(timeout=5) == "too much"


def test_limiters_by_themselves():
    now = [0.0]
    window = SlidingWindow(2, 10.0, clock=lambda: now[0])
    assert [window.allow(), window.allow(), window.allow()] == [True, True, False]
    now[0] = 10.5
    assert window.allow()
    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0])
    assert [bucket.allow(), bucket.allow(), bucket.allow()] == [True, True, False]
    now[0] += 0.5
    assert bucket.allow() and not bucket.allow()
    keyed = KeyedLimiter(lambda: SlidingWindow(1, 60.0), max_keys=2)
    assert keyed.allow("a") and not keyed.allow("a") and keyed.allow("b") and keyed.allow("c")
    assert keyed.allow("a")  # "a" was forgotten when "c" came: bounded memory


def test_trusted_proxy_header_sets_client_ip(serve):
    def ip(ws):
        ws.send_text(ws.request.client_ip)

    headers = {"X-Forwarded-For": "203.0.113.7, 198.51.100.2"}
    server = serve(Router().websocket("/ip", ip), trust_forwarded=True)
    with connect(url(server, "/ip"), additional_headers=headers) as ws:
        assert ws.recv() == "198.51.100.2"
    server = serve(Router().websocket("/ip", ip))
    with connect(url(server, "/ip"), additional_headers=headers) as ws:
        assert ws.recv() == "127.0.0.1"


def test_forwarded_headers_count_only_from_trusted_proxies_and_only_as_addresses(serve):
    def ip(ws):
        ws.send_text(ws.request.client_ip)

    app = Router().websocket("/ip", ip)
    trusting = serve(app, trust_forwarded=True)  # 127.0.0.1, the test's peer, is trusted
    for headers, expected in [
        ({"Forwarded": 'for=192.0.2.60;proto=https, for="[2001:db8:cafe::17]:4711"'}, "2001:db8:cafe::17"),
        ({"X-Forwarded-For": "203.0.113.7, 127.0.0.1"}, "203.0.113.7"),  # the trusted hop is skipped
        ({"X-Forwarded-For": "203.0.113.7:5555"}, "203.0.113.7"),
        ({"X-Forwarded-For": "not-an-ip"}, "127.0.0.1"),
        ({"X-Forwarded-For": "<script>, 198.51.100.2"}, "198.51.100.2"),
    ]:
        with connect(url(trusting, "/ip"), additional_headers=headers) as ws:
            assert ws.recv() == expected, headers
    elsewhere = serve(app, trust_forwarded=True, forwarded_allow_ips=["10.0.0.0/8"])  # we are not that proxy
    with connect(url(elsewhere, "/ip"), additional_headers={"X-Forwarded-For": "203.0.113.7"}) as ws:
        assert ws.recv() == "127.0.0.1"
    with pytest.raises(ValueError):
        Server(app, ("127.0.0.1", 0), forwarded_allow_ips=["10.0.0.300"])


def test_a_plus_in_a_query_token_stays_a_plus(serve):
    server = serve(Router().middleware(AuthMiddleware("a+b/c=", user_id="token")).websocket("/secure", whoami))
    with connect(url(server, "/secure?token=a+b%2Fc%3D")) as ws:
        assert ws.recv() == "token "
