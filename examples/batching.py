"""The guide's high-throughput batching loop, written by hand with ``recv_timeout``.

Messages are buffered until BATCH_SIZE arrive or BATCH_TIMEOUT passes, then all text is
upper-cased and the replies go out with one ``send_batch`` (one system call).

Run: python examples/batching.py [--port N]   or   ignitia-sync examples.batching:app
"""

from gevent import monkey

monkey.patch_all()

import time  # noqa: E402

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402

BATCH_SIZE = 100
BATCH_TIMEOUT = 0.050


def process_single_message(message: Message) -> Message | None:
    if isinstance(message, Message.Text):
        return Message.text(message.data.upper())
    return None  # unsupported message type


def process_message_batch(ws: WebSocketConnection, buffer: list[Message]) -> None:
    replies = [reply for reply in map(process_single_message, buffer) if reply is not None]
    buffer.clear()
    if replies:
        ws.send_batch(replies)


def high_throughput_websocket(ws: WebSocketConnection) -> None:
    buffer: list[Message] = []
    deadline = time.monotonic() + BATCH_TIMEOUT
    while True:
        message = ws.recv_timeout(max(0.0, deadline - time.monotonic()))
        if message is not None:
            if isinstance(message, Message.Close):
                break
            buffer.append(message)
            if len(buffer) >= BATCH_SIZE:
                process_message_batch(ws, buffer)
                deadline = time.monotonic() + BATCH_TIMEOUT
        elif ws.closed:
            break
        else:  # the timeout passed: flush what has accumulated
            process_message_batch(ws, buffer)
            deadline = time.monotonic() + BATCH_TIMEOUT


app = Router().websocket("/batch", high_throughput_websocket)

if __name__ == "__main__":
    run(app)
