"""Upgrade-time middleware (auth, origin check, connection limits) and rate limiters.

A middleware is a callable ``mw(request)`` run on the upgrade request before the 101. It
returns None to let the request through, a mapping of extensions for the handler
(``ws.extensions``), or a :class:`~ignitia_sync.sansio.http.Response` to refuse. A middleware
that raises gives 500 and a log line.

Example:
    >>> from ignitia_sync import Router
    >>> app = Router().middleware(AuthMiddleware("secret-token", user_id="admin"))
    >>> @app.websocket("/secure-chat")
    ... def chat(ws):
    ...     ws.send_text(f"hello {ws.extension(AuthInfo).user_id}")
    >>> from ignitia_sync.testing import TestClient
    >>> with TestClient(app) as client:
    ...     client.connect("/secure-chat?token=secret-token").recv(timeout=5)
    Text(data='hello admin')
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from .exceptions import ConnectionClosed, HandshakeError
from .sansio.http import Request, Response, escape_for_log

log = logging.getLogger("ignitia_sync.connection")

__all__ = [
    "AuthInfo",
    "AuthMiddleware",
    "KeyedLimiter",
    "Limiter",
    "Middleware",
    "OriginCheck",
    "RateLimit",
    "SlidingWindow",
    "TokenBucket",
]

MiddlewareResult = Response | Mapping[Any, Any] | None
#: What a static token without ``user_id=`` stands for: a valid token, no identity.
_NOBODY = object()
Middleware = Callable[[Request], MiddlewareResult]


@dataclass(frozen=True)
class AuthInfo:
    """Who the client is, as the guide's ``Extension<AuthInfo>``: ``ws.extension(AuthInfo)``.

    Example:
        >>> AuthInfo("alice", ("chat:write",)).user_id
        'alice'
    """

    user_id: str
    permissions: tuple[str, ...] = ()


class AuthMiddleware:
    """Refuse upgrades without a valid token (401); give the handler an :class:`AuthInfo`.

    The token is taken from ``Authorization: Bearer TOKEN``, else from the query parameter
    ``query_param`` (browsers cannot set headers on a WebSocket), else, only when ``cookie``
    is given, from that cookie. Tokens are compared in constant time.

    Cookie authentication is off by default: a browser attaches cookies to a WebSocket that
    *any* page opens (cross-site WebSocket hijacking). With ``cookie=...``, an upgrade
    authenticated by the cookie is refused with 403 unless its ``Origin`` is one of
    ``allowed_origins`` (by default: the request's own ``Host``, same-origin only).

    A static token proves that the client knows a shared secret, not who it is: every client
    holding it looks the same. So ``AuthMiddleware("secret")`` lets them in *without* an
    :class:`AuthInfo` (``ws.extensions`` gets none; ``RateLimit(key="user")`` then counts
    per IP address); ``AuthMiddleware("secret", user_id="admin")`` names the one identity
    the token stands for, and the handler gets ``AuthInfo("admin")``. To tell users apart,
    pass ``verify(token)``.

    Args:
        token_or_verify: a static token, or ``verify(token)`` returning an :class:`AuthInfo`
            (or any object, kept as ``ws.extensions["auth"]``) for a valid token, None for
            an invalid one. Any false value (``False``, ``0``, ``""``) is taken as invalid
            too: a ``verify`` written as a boolean check fails closed, never open.
        user_id: with a static token only: the identity it stands for (``AuthInfo(user_id)``
            for the handler); None, the default: no AuthInfo at all.
        query_param: the query parameter that may carry the token (None to disable).
        cookie: the cookie that may carry the token (None, the default: never).
        allowed_origins: origins (``"https://example.com"``) whose pages may use cookie
            authentication; empty means the request's own host only.

    Example:
        >>> auth = AuthMiddleware(lambda token: AuthInfo("alice") if token == "t0k" else None)
        >>> from ignitia_sync.sansio.http import Headers, Request
        >>> request = Request("GET", "/", {}, Headers([("Authorization", "Bearer s3cret")]))
        >>> AuthMiddleware("s3cret", user_id="admin")(request)["auth"]
        AuthInfo(user_id='admin', permissions=())
        >>> AuthMiddleware("s3cret")(request)
        {}
    """

    def __init__(
        self,
        token_or_verify: str | Callable[[str], Any],
        *,
        user_id: str | None = None,
        query_param: str | None = "token",
        cookie: str | None = None,
        allowed_origins: Iterable[str] = (),
    ) -> None:
        if isinstance(token_or_verify, str):
            if not token_or_verify:
                raise ValueError("the static token must not be empty")
            expected = token_or_verify.encode()
            # no user_id: a valid token is let in with no identity
            identity: object = AuthInfo(user_id) if user_id is not None else _NOBODY

            def verify(token: str) -> object:
                return identity if hmac.compare_digest(token.encode(), expected) else None

            self._verify: Callable[[str], Any] = verify
        else:
            if user_id is not None:
                raise TypeError("user_id= goes with a static token; verify(token) returns the AuthInfo itself")
            self._verify = token_or_verify
        self._query_param = query_param
        self._cookie = cookie
        self._allowed_origins = frozenset(origin.lower().rstrip("/") for origin in allowed_origins)

    def token(self, request: Request) -> str | None:
        """The token the request carries, from header, query or cookie."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if self._query_param:
            token = _raw_query_value(request.target, self._query_param)
            if token:
                return token
        if self._cookie:
            return request.cookie(self._cookie)
        return None

    def _cookie_origin_allowed(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:  # not a browser: nobody else's page is involved
            return True
        origin = origin.lower().rstrip("/")
        if self._allowed_origins:
            return origin in self._allowed_origins
        host = request.headers.get("host", "").lower()
        return bool(host) and origin.partition("://")[2] == host

    def __call__(self, request: Request) -> MiddlewareResult:
        """Check the request's token."""
        token = self.token(request)
        if token and self._cookie and token == request.cookie(self._cookie) and not self._cookie_origin_allowed(request):
            return Response(403, "cookie authentication from this origin is not allowed")
        info = self._verify(token) if token else None
        if not info:  # None, or False from a verify written as a check: refused, never let in
            return Response(401, "missing or invalid token", (("WWW-Authenticate", 'Bearer realm="websocket"'),))
        if info is _NOBODY:  # a static token without user_id=: in, but nobody in particular
            return {}
        extensions: dict[Any, Any] = {"auth": info, type(info): info}
        return extensions


def _raw_query_value(target: str, name: str) -> str | None:
    """A query parameter percent-decoded but with ``+`` kept: tokens are not form text."""
    _, _, query = target.partition("?")
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if unquote(key) == name:
            return unquote(value)
    return None


class OriginCheck:
    """Refuse upgrades from pages of other sites (403): cross-site WebSocket hijacking.

    Args:
        allowed: origins such as ``"https://example.com"``; compared case-insensitively.
        allow_missing: let through requests without an ``Origin`` header (non-browser
            clients send none; browsers always do).

    Example:
        >>> check = OriginCheck(["https://example.com"])
        >>> from ignitia_sync.sansio.http import Headers, Request
        >>> check(Request("GET", "/", {}, Headers([("Origin", "https://evil.example")]))).status
        403
        >>> check(Request("GET", "/", {}, Headers([("Origin", "https://example.com")]))) is None
        True
    """

    def __init__(self, allowed: Iterable[str], *, allow_missing: bool = True) -> None:
        self._allowed = frozenset(origin.lower().rstrip("/") for origin in allowed)
        self._allow_missing = allow_missing

    def __call__(self, request: Request) -> MiddlewareResult:
        """Check the request's Origin header."""
        origin = request.headers.get("origin")
        if origin is None:
            return None if self._allow_missing else Response(403, "an Origin header is required")
        if origin.lower().rstrip("/") not in self._allowed:
            return Response(403, f"origin {origin} is not allowed")
        return None


class Limiter(Protocol):
    """Anything that can say whether an event of some cost is allowed now."""

    def allow(self, cost: float = 1.0) -> bool:
        """Record the event and return True, or return False if it is over the limit."""


class SlidingWindow:
    """At most ``max_events`` (or total cost) in any ``window`` seconds: the guide's RateLimiter.

    Example:
        >>> limiter = SlidingWindow(2, 60.0)
        >>> [limiter.allow(), limiter.allow(), limiter.allow()]
        [True, True, False]
    """

    def __init__(self, max_events: float, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_events <= 0 or window <= 0:
            raise ValueError("max_events and window must be positive")
        self.max_events = max_events
        self.window = window
        self._clock = clock
        self._events: deque[tuple[float, float]] = deque()
        self._total = 0.0

    def allow(self, cost: float = 1.0) -> bool:
        """Count an event of ``cost`` if it fits in the window."""
        now = self._clock()
        events = self._events
        while events and now - events[0][0] > self.window:
            self._total -= events.popleft()[1]
        if self._total + cost > self.max_events:
            return False
        events.append((now, cost))
        self._total += cost
        return True


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; each event spends its cost.

    Example:
        >>> bucket = TokenBucket(rate=1.0, burst=2)
        >>> [bucket.allow(), bucket.allow(), bucket.allow()]
        [True, True, False]
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def allow(self, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < cost:
            return False
        self._tokens -= cost
        return True


class KeyedLimiter:
    """One limiter per key (client IP, user id, ...), made by ``factory``; old keys are forgotten.

    Example:
        >>> per_ip = KeyedLimiter(lambda: TokenBucket(5, 10))
        >>> per_ip.allow("10.0.0.1")
        True
    """

    def __init__(self, factory: Callable[[], Limiter], max_keys: int = 100_000) -> None:
        self._factory = factory
        self._max_keys = max_keys
        self._limiters: OrderedDict[str, Limiter] = OrderedDict()

    def allow(self, key: str, cost: float = 1.0) -> bool:
        """Ask the limiter of ``key``."""
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = self._factory()
            if len(self._limiters) > self._max_keys:
                self._limiters.popitem(last=False)
        else:
            self._limiters.move_to_end(key)
        return limiter.allow(cost)


@dataclass(frozen=True)
class RateLimit:
    """A route's message rate limit: ``Router().websocket(path, f, rate_limit=RateLimit(...))``.

    Each received text or binary message is checked against a limiter made per connection
    (``per_connection``), and against limiters shared by key (``per_key``, keyed by
    ``key``: ``"ip"``, ``"user"`` — the AuthInfo user id — or a function of the
    connection). ``cost`` is ``"messages"`` (1 per message) or ``"bytes"`` (payload size).
    Over the limit, ``action="reply"`` answers with ``reply`` and drops the message, as the
    guide does; ``action="close"`` closes with 1008.

    Example:
        >>> limit = RateLimit(per_connection=lambda: SlidingWindow(2, 60.0), action="reply")
        >>> window = limit.per_connection()  # each connection gets its own
        >>> [window.allow(1.0) for _ in range(3)]
        [True, True, False]
    """

    per_connection: Callable[[], Limiter] | None = None
    per_key: KeyedLimiter | None = None
    key: Literal["ip", "user"] | Callable[[Any], str] = "ip"
    cost: Literal["messages", "bytes"] = "messages"
    action: Literal["reply", "close"] = "reply"
    reply: str = "Rate limit exceeded. Please slow down."


def run_middleware(chain: Iterable[Middleware], request: Request) -> dict[Any, Any]:
    """Run upgrade middleware in order; the extensions they attach, or HandshakeError.

    A middleware refuses with a :class:`~ignitia_sync.sansio.http.Response` (returned) or a
    :class:`~ignitia_sync.exceptions.HandshakeError` (raised), each checked against
    response splitting; one that raises anything else, or returns something other than
    None, a mapping or a Response, gives 500 and a log line.

    Example:
        >>> from ignitia_sync.sansio.http import Headers
        >>> request = Request("GET", "/t", {"tenant": "a"}, Headers([]))
        >>> run_middleware([lambda request: {"tenant": request.query["tenant"]}], request)
        {'tenant': 'a'}
    """
    extensions: dict[Any, Any] = {}
    for middleware in chain:
        result: Any
        try:
            result = middleware(request)
        except HandshakeError as exc:  # a middleware may refuse by raising, with its own status
            result = exc
        except Exception:
            log.exception("middleware %r failed on %s", middleware, escape_for_log(request.path))
            raise HandshakeError(500, "internal error") from None
        if isinstance(result, HandshakeError):
            try:  # the same checks as a returned Response: no response splitting
                result = Response(result.status, result.body, result.headers)
            except ValueError as exc:
                log.error("middleware %r refused with a bad answer: %s", middleware, exc)
                raise HandshakeError(500, "internal error") from None
        if isinstance(result, Response):
            raise HandshakeError(result.status, result.body or "refused", result.headers)
        if isinstance(result, Mapping):
            extensions.update(result)
        elif result is not None:
            log.error("middleware %r returned %r: expected None, a mapping or a Response", middleware, type(result))
            raise HandshakeError(500, "internal error")
    return extensions


def message_filter(limit: RateLimit, ws: Any) -> Callable[[Any], Any]:
    """The filter a host installs on a connection: it returns the data message to let it through.

    Over the limit it answers as ``limit.action`` says (a reply, or a 1008 close) and
    returns None; the connection then drops the message.
    """
    own = limit.per_connection() if limit.per_connection else None
    shared = limit.per_key
    if shared is not None:
        if callable(limit.key):
            key = limit.key(ws)
        elif limit.key == "user":
            info = ws.extensions.get(AuthInfo)
            key = info.user_id if info is not None else ws.request.client_ip
        else:
            key = ws.request.client_ip
    by_bytes = limit.cost == "bytes"

    def allowed(message: Any) -> bool:
        cost = float(len(message.data)) if by_bytes else 1.0
        if own is not None and not own.allow(cost):
            return False
        return shared is None or shared.allow(key, cost)

    def check(message: Any) -> Any:
        if allowed(message):
            return message
        if limit.action == "close":
            log.info("closing %r: rate limit exceeded", ws)
            ws.close(1008, "rate limit exceeded")
        else:
            try:
                ws.send_text(limit.reply)
            except ConnectionClosed:
                pass
        return None

    return check
