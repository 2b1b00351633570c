"""Routes from URL paths to WebSocket handlers, with path parameters and per-route options.

Patterns are made of ``/``-separated segments: literal text, ``:name`` or ``{name}`` (one
segment), and a final ``*rest`` (everything left, slashes included, possibly empty).

Example:
    >>> app = Router()
    >>> @app.websocket("/chat/:user_id")
    ... def chat(ws, user_id):
    ...     ws.send_text(f"hello {user_id}")
    >>> route, params = app.match("/chat/alice")
    >>> params
    {'user_id': 'alice'}
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from .handlers import Handler, as_handler
from .middleware import Middleware, RateLimit
from .settings import CONNECTION_OPTIONS, ConnectionSettings

__all__ = ["ROUTE_OPTIONS", "Route", "RouteOptions", "Router"]

F = TypeVar("F", bound=Callable[..., Any])

#: Server settings a route may override for its own connections: every field of
#: :class:`~ignitia_sync.settings.ConnectionSettings`.
ROUTE_OPTIONS = CONNECTION_OPTIONS
_PARAM = re.compile(r"^(?::(\w+)|\{(\w+)\})$")


@dataclass(frozen=True)
class Route:
    """One registered WebSocket route.

    Attributes:
        pattern: the path pattern as written, such as ``"/chat/:user_id"``.
        handler: the adapted handler.
        options: per-route overrides of server settings (see :data:`ROUTE_OPTIONS`).
    """

    pattern: str
    handler: Handler
    options: Mapping[str, Any] = field(default_factory=dict)
    regex: re.Pattern[str] | None = None
    middleware: tuple[Middleware, ...] = ()
    rate_limit: RateLimit | None = None

    def match(self, path: str) -> dict[str, str] | None:
        """The parameters if ``path`` matches this route, else None."""
        if self.regex is None:
            return {} if path == self.pattern else None
        found = self.regex.fullmatch(path)
        return found.groupdict() if found else None


def _compile(pattern: str) -> re.Pattern[str] | None:
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern must start with '/': {pattern!r}")
    segments = pattern.split("/")[1:]
    parts: list[str] = []
    names: set[str] = set()
    dynamic = False
    for index, segment in enumerate(segments):
        name: str | None
        if segment.startswith("*"):
            name = segment[1:]
            if index != len(segments) - 1 or not name.isidentifier():
                raise ValueError(f"'*name' must be the last segment of {pattern!r}")
            regex = f"(?P<{name}>.*)"
        elif found := _PARAM.match(segment):
            name = found.group(1) or found.group(2)
            regex = f"(?P<{name}>[^/]+)"
        else:
            name = None
            regex = re.escape(segment)
        if name is not None:
            if name in names or not name.isidentifier():
                raise ValueError(f"bad or repeated parameter {name!r} in {pattern!r}")
            names.add(name)
            dynamic = True
        parts.append(regex)
    return re.compile("/" + "/".join(parts)) if dynamic else None


@dataclass(frozen=True)
class RouteOptions:
    """A route's own options, parsed one way for every way to declare a route.

    :meth:`Router.websocket`, Flask's ``@sock.route`` and Django's ``websocket_view`` all
    take the same options: any :class:`~ignitia_sync.settings.ConnectionSettings` field,
    ``middleware`` (run before the upgrade, after the router's) and ``rate_limit``.

    Example:
        >>> options, rest = RouteOptions.parse({"max_message_size": 4096, "endpoint": "chat"}, others=True)
        >>> dict(options.overrides), rest
        ({'max_message_size': 4096}, {'endpoint': 'chat'})
    """

    overrides: Mapping[str, Any] = field(default_factory=dict)
    middleware: tuple[Middleware, ...] = ()
    rate_limit: RateLimit | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any], *, others: bool = False) -> tuple[RouteOptions, dict[str, Any]]:
        """Take this library's options out of ``options``; returns them and what is left.

        Args:
            others: what is left belongs to someone else (Flask's own route options);
                otherwise anything left is an error.

        Raises:
            TypeError: an unknown option (without ``others``), or middleware that is not callable.
            ValueError: a bad value, found now rather than at every upgrade.
        """
        rest = dict(options)
        middleware = tuple(rest.pop("middleware", ()))
        rate_limit = rest.pop("rate_limit", None)
        overrides = {name: rest.pop(name) for name in list(rest) if name in ROUTE_OPTIONS}
        if rest and not others:
            raise TypeError(f"unknown route options: {sorted(rest)}")
        for each in middleware:
            if not callable(each):
                raise TypeError(f"middleware must be callable, not {each!r}")
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise TypeError(f"rate_limit must be a RateLimit, not {type(rate_limit).__name__}")
        ConnectionSettings(**overrides)  # bad values fail here, when the route is declared
        return cls(overrides, middleware, rate_limit), rest

    def settings(self, base: ConnectionSettings) -> ConnectionSettings:
        """``base`` with this route's overrides."""
        return dataclasses.replace(base, **self.overrides) if self.overrides else base


class Router:
    """The application: a set of WebSocket routes.

    Example:
        >>> from ignitia_sync import Message
        >>> def echo(ws):
        ...     for message in ws:
        ...         if isinstance(message, (Message.Text, Message.Binary)):
        ...             ws.send(message)
        >>> app = Router().websocket("/echo", echo).websocket("/other", echo, max_message_size=4096)
        >>> [route.pattern for route in app.routes]
        ['/echo', '/other']
    """

    def __init__(self) -> None:
        self._static: dict[str, Route] = {}
        self._dynamic: list[Route] = []
        self._routes: list[Route] = []
        self._middleware: list[Middleware] = []

    def middleware(self, middleware: Middleware) -> Router:
        """Run ``middleware(request)`` on every upgrade request, before the route's own.

        Returns the router so calls chain: ``Router().middleware(AuthMiddleware("t"))``.
        """
        if not callable(middleware):
            raise TypeError(f"middleware must be callable, not {middleware!r}")
        self._middleware.append(middleware)
        return self

    @property
    def global_middleware(self) -> tuple[Middleware, ...]:
        """The middleware run for every route, in order."""
        return tuple(self._middleware)

    @overload
    def websocket(self, path: str, handler: Callable[..., Any], **options: Any) -> Router: ...

    @overload
    def websocket(self, path: str, handler: None = None, **options: Any) -> Callable[[F], F]: ...

    def websocket(
        self, path: str, handler: Callable[..., Any] | None = None, **options: Any
    ) -> Router | Callable[[F], F]:
        """Register ``handler`` for ``path``; returns the router so calls chain.

        Without a handler it is a decorator that registers the function and returns it.

        Args:
            path: the pattern (``/echo``, ``/chat/:user_id``, ``/files/*rest``).
            handler: a function ``f(ws, **params)`` or a handler from
                :mod:`ignitia_sync.handlers`.
            **options: per-route settings (see :data:`ROUTE_OPTIONS`), plus
                ``middleware`` (a list run after the router's) and ``rate_limit``
                (a :class:`~ignitia_sync.middleware.RateLimit`).

        Raises:
            ValueError: a malformed pattern, a path registered twice, or a bad option value.
            TypeError: an unknown option.
        """
        if handler is None:

            def register(func: F) -> F:
                self.websocket(path, func, **options)
                return func

            return register
        parsed, _ = RouteOptions.parse(options)
        if any(route.pattern == path for route in self._routes):
            raise ValueError(f"route {path!r} is already registered")
        regex = _compile(path)
        adapted = as_handler(handler)
        adapted.check(path, regex.groupindex if regex is not None else ())  # now, not at the first upgrade
        route = Route(path, adapted, dict(parsed.overrides), regex, parsed.middleware, parsed.rate_limit)
        self._routes.append(route)
        if route.regex is None:
            self._static[path] = route
        else:
            self._dynamic.append(route)
        return self

    def websocket_fn(self, path: str, handler: Callable[..., Any], **options: Any) -> Router:
        """The same as :meth:`websocket`, kept for parity with the guide's ``websocket_fn``."""
        return self.websocket(path, handler, **options)

    def match(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """Find the route for ``path``: literal routes first, then patterns in order."""
        route = self._static.get(path)
        if route is not None:
            return route, {}
        for route in self._dynamic:
            params = route.match(path)
            if params is not None:
                return route, params
        return None

    @property
    def routes(self) -> list[Route]:
        """The registered routes, in order."""
        return list(self._routes)
