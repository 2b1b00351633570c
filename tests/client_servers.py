"""A server the client tests stop and start again: ``python -m ignitia_sync tests.client_servers:router``."""

from __future__ import annotations

from ignitia_sync import Message, Router, WebSocketConnection
from ignitia_sync.sansio.http import Response


def feed(ws: WebSocketConnection) -> None:
    for message in ws:
        if isinstance(message, Message.Text):
            ws.send_text(f"feed: {message.data}")


def never(ws: WebSocketConnection) -> None:
    raise AssertionError("the middleware refuses every upgrade here")


router = Router()
router.websocket("/feed", feed)
router.websocket("/forbidden", never, middleware=[lambda request: Response(403, "not for you")])


def ticks(ws: WebSocketConnection) -> None:
    """After a subscription message, a tick every 0.1 s: ``tick 1``, ``tick 2``..."""
    if ws.recv_json() != {"subscribe": "ticks"}:
        ws.close(1008, "subscribe first")
        return
    count = 0
    while not ws.closed:
        count += 1
        ws.send_text(f"tick {count}")
        if ws.recv_timeout(0.1) is None and ws.closed:
            return


router.websocket("/ticks", ticks)
