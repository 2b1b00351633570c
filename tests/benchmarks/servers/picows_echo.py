"""picows on uvloop, an anchor: a WebSocket library written in Cython, on libuv's event loop.

Not a peer in kind (callbacks per frame, no blocking API), but a measure of how little a
Python process can spend per message. /echo answers a text as a text, decoded as UTF-8
first (an invalid one is closed with 1007, as ours does) and a binary as bytes; /broadcast
forwards a text to every other /broadcast connection: checked once, the same bytes to each.
Every message the load generator sends is one frame, so frames are not reassembled.
"""

import argparse

import uvloop
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

#: The open /broadcast connections.
receivers: set[WSTransport] = set()


def text_of(transport: WSTransport, frame: WSFrame) -> str | None:
    """The frame's payload as a str, or None after closing with 1007 (not UTF-8)."""
    try:
        return frame.get_payload_as_utf8_text()
    except UnicodeDecodeError:
        transport.send_close(WSCloseCode.INVALID_TEXT)
        transport.disconnect()
        return None


def closing(transport: WSTransport, frame: WSFrame) -> None:
    """Answer a close frame with its code (1000 for one without), and hang up."""
    code = frame.get_close_code()
    transport.send_close(WSCloseCode.OK if code == WSCloseCode.NO_INFO else code, frame.get_close_message())
    transport.disconnect()


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            text = text_of(transport, frame)
            if text is not None:
                transport.send(WSMsgType.TEXT, text)
        elif kind == WSMsgType.BINARY:
            transport.send(WSMsgType.BINARY, frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            closing(transport, frame)


class Broadcast(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        receivers.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        receivers.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            if text_of(transport, frame) is None:
                return
            payload = frame.get_payload_as_bytes()
            for receiver in receivers:
                if receiver is not transport:
                    receiver.send(WSMsgType.TEXT, payload)
        elif kind == WSMsgType.CLOSE:
            closing(transport, frame)


def route(request: WSUpgradeRequest) -> WSListener | None:
    """A listener per path; None answers 404."""
    if request.path == b"/echo":
        return Echo()
    if request.path == b"/broadcast":
        return Broadcast()
    return None


async def main(port: int) -> None:
    server = await ws_create_server(route, "127.0.0.1", port)  # no compression: picows has none
    print(f"listening on ws://127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
