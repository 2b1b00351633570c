"""The three handler kinds of the guide, as adapters around plain blocking functions.

* :func:`websocket_handler` — ``f(ws, **params)`` owns the connection.
* :func:`websocket_message_handler` — ``f(ws, message, **params)`` once per message.
* :func:`websocket_batch_handler` — ``f(ws, messages, **params)`` per batch.

A bare function given to ``Router.websocket`` is a plain handler.

Example:
    >>> def shout(ws, message):
    ...     if isinstance(message, Message.Text):
    ...         ws.send_text(message.data.upper())
    >>> handler = websocket_message_handler(shout)
    >>> from ignitia_sync import Router
    >>> from ignitia_sync.testing import TestClient
    >>> with TestClient(Router().websocket("/shout", handler)) as client:
    ...     ws = client.connect("/shout")
    ...     ws.send_text("hi")
    ...     ws.recv(timeout=5)
    Text(data='HI')
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._support.deadline import Deadline
from .message import Binary, Close, Message, Text

if TYPE_CHECKING:
    from .connection.connection import WebSocketConnection

__all__ = [
    "BatchHandler",
    "Handler",
    "MessageHandler",
    "as_handler",
    "websocket_batch_handler",
    "websocket_handler",
    "websocket_message_handler",
]


class Handler:
    """A plain handler: ``func(ws, **path_params)`` runs for the connection's lifetime.

    When it returns the connection closes with 1000; when it raises, with 1011.

    Example:
        >>> def greet(ws):
        ...     ws.send_text("Welcome to the chat!")
        >>> Handler(greet).func is greet
        True
    """

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        if not callable(func):
            raise TypeError(f"a handler must be callable, not {func!r}")
        self.func = func

    #: The positional arguments ``func`` takes before the path parameters.
    leading: tuple[str, ...] = ("ws",)
    #: False where the path parameters are known only per request (Django's URLconf): then
    #: only the leading arguments are checked.
    params_known = True

    def __call__(self, ws: WebSocketConnection, **params: str) -> None:
        """Run the handler on one connection."""
        self.func(ws, **params)

    def check(self, route: str, params: Iterable[str]) -> None:
        """Refuse, when the route is registered, a function that could not take its arguments.

        Raises:
            TypeError: one line naming the route, the function and the signature to write.

        Example:
            >>> Handler(lambda ws: None).check("/rooms/:room", ["room"])
            Traceback (most recent call last):
            ...
            TypeError: route '/rooms/:room': the handler <lambda>(ws) cannot take the path parameter 'room'; write it as def <lambda>(ws, room): ...
        """
        names = list(params)
        try:
            signature = inspect.signature(self.func)
        except (TypeError, ValueError):  # no signature to read (a builtin, a C function)
            return
        try:
            bind = signature.bind if self.params_known else signature.bind_partial
            bind(*self.leading, **dict.fromkeys(names))
        except TypeError as exc:
            name = getattr(self.func, "__name__", type(self.func).__name__)
            wanted = ", ".join([*self.leading, *names])
            missing = [param for param in names if param not in signature.parameters]
            kinds = {p.kind for p in signature.parameters.values()}
            if missing and inspect.Parameter.VAR_KEYWORD not in kinds:
                problem = f"cannot take the path parameter{'s' if len(missing) > 1 else ''} " + ", ".join(
                    repr(param) for param in missing
                )
            else:
                problem = f"cannot be called as {name}({wanted}): {exc}"
            raise TypeError(
                f"route {route!r}: the handler {name}{signature} {problem}; write it as def {name}({wanted}): ..."
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self.func, '__qualname__', self.func)!r})"


class MessageHandler(Handler):
    """Calls ``func(ws, message, **path_params)`` for every message until the peer closes.

    Every kind of message is passed, Close included; after the Close the handler ends.
    """

    __slots__ = ()
    leading = ("ws", "message")

    def __call__(self, ws: WebSocketConnection, **params: str) -> None:
        """Run ``func`` once per received message."""
        func = self.func
        for message in ws:
            func(ws, message, **params)
            if type(message) is Close:
                return


class BatchHandler(Handler):
    """Calls ``func(ws, messages, **path_params)`` with up to ``batch_size`` data messages.

    A batch is delivered when it is full or ``timeout_ms`` after its first message
    arrived. When the peer closes mid-batch, the partial batch is still delivered.
    Pings and pongs are answered automatically and not batched.
    """

    __slots__ = ("batch_size", "timeout")
    leading = ("ws", "messages")

    def __init__(self, func: Callable[..., Any], batch_size: int = 50, timeout_ms: float = 100) -> None:
        super().__init__(func)
        if batch_size < 1 or timeout_ms < 0:
            raise ValueError("batch_size must be >= 1 and timeout_ms >= 0")
        self.batch_size = batch_size
        self.timeout = timeout_ms / 1000.0

    def __call__(self, ws: WebSocketConnection, **params: str) -> None:
        """Collect batches and hand them to ``func`` until the connection closes."""
        batch: list[Message] = []
        open_ = True
        while open_:
            message = ws.recv()
            if message is None or type(message) is Close:
                break
            if type(message) is not Text and type(message) is not Binary:
                continue
            batch.append(message)
            deadline = Deadline(self.timeout)
            while len(batch) < self.batch_size and not deadline.expired:
                message = ws.recv_timeout(deadline.left() or 0.0)
                if message is None:
                    open_ = not ws.closed
                    break
                kind = type(message)
                if kind is Close:
                    open_ = False
                    break
                if kind is Text or kind is Binary:
                    batch.append(message)
            self.func(ws, batch, **params)
            batch = []
        if batch:
            self.func(ws, batch, **params)


def websocket_handler(func: Callable[..., Any]) -> Handler:
    """Wrap ``func(ws, **path_params)`` as a plain handler.

    Example:
        >>> def simple(ws):
        ...     for message in ws:
        ...         ws.send_text("Acknowledged")
        >>> from ignitia_sync import Router
        >>> app = Router().websocket("/simple", websocket_handler(simple))
        >>> from ignitia_sync.testing import TestClient
        >>> with TestClient(app) as client:
        ...     ws = client.connect("/simple")
        ...     ws.send_text("anything")
        ...     ws.recv(timeout=5)
        Text(data='Acknowledged')
    """
    return Handler(func)


def websocket_message_handler(func: Callable[..., Any]) -> MessageHandler:
    """Wrap ``func(ws, message, **path_params)``, called once per message.

    Example:
        >>> handler = websocket_message_handler(lambda ws, message: ws.send(message))
        >>> from ignitia_sync import Router
        >>> from ignitia_sync.testing import TestClient
        >>> with TestClient(Router().websocket("/echo", handler)) as client:
        ...     ws = client.connect("/echo")
        ...     ws.send_bytes(b"raw")
        ...     ws.recv(timeout=5)
        Binary(data=b'raw')
    """
    return MessageHandler(func)


def websocket_batch_handler(
    func: Callable[..., Any], batch_size: int = 50, timeout_ms: float = 100
) -> BatchHandler:
    """Wrap ``func(ws, messages, **path_params)``, called per batch of data messages.

    Args:
        func: receives the connection and a non-empty list of Text/Binary messages.
        batch_size: the most messages in one batch.
        timeout_ms: how long a started batch waits to fill up.

    Example:
        >>> def upper(ws, messages):
        ...     ws.send_batch([Message.text(m.data.upper()) for m in messages])
        >>> handler = websocket_batch_handler(upper, 50, 100)
        >>> from ignitia_sync import Router
        >>> from ignitia_sync.testing import TestClient
        >>> with TestClient(Router().websocket("/upper", handler)) as client:
        ...     ws = client.connect("/upper")
        ...     ws.send_text("a")
        ...     ws.send_text("b")
        ...     [ws.recv(timeout=5).data for _ in range(2)]  # in one batch or two: in order
        ['A', 'B']
    """
    return BatchHandler(func, batch_size, timeout_ms)


def as_handler(handler: Callable[..., Any]) -> Handler:
    """Return ``handler`` if it is already a :class:`Handler`, else wrap it as a plain one."""
    return handler if isinstance(handler, Handler) else Handler(handler)
